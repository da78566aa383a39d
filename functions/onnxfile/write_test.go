package onnxfile_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/onnxfile"
)

// linearModel is a one-node model: output = Gemm(input, W, b).
func linearModel() onnxfile.Model {
	return onnxfile.Model{
		ProducerName: "sluice-test",
		Metadata:     map[string]string{"classes": `["a","b"]`, "author": "test"},
		Graph: onnxfile.Graph{
			Name: "linear",
			Nodes: []onnxfile.Node{{
				OpType:  "Gemm",
				Name:    "dense",
				Inputs:  []string{"input", "W", "b"},
				Outputs: []string{"output"},
				Attributes: []onnxfile.Attribute{
					onnxfile.IntAttribute("transB", 1),
					onnxfile.FloatAttribute("alpha", 1),
				},
			}},
			Initializers: []onnxfile.Initializer{
				{Name: "W", Dims: []int64{2, 3}, Values: []float32{1, 2, 3, 4, 5, 6}},
				{Name: "b", Dims: []int64{2}, Values: []float32{0.5, -0.5}},
			},
			Inputs:  []onnxfile.ValueInfo{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 3}}},
			Outputs: []onnxfile.ValueInfo{{Name: "output", Datatype: oip.FP32, Shape: []int64{-1, 2}}},
		},
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(model *onnxfile.Model)
		inputs []oip.TensorSpec
	}{
		{
			name:   "dynamic batch",
			edit:   func(*onnxfile.Model) {},
			inputs: []oip.TensorSpec{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 3}}},
		},
		{
			name: "initializers listed as inputs are left out",
			edit: func(model *onnxfile.Model) {
				model.Graph.Inputs = append(model.Graph.Inputs,
					onnxfile.ValueInfo{Name: "W", Datatype: oip.FP32, Shape: []int64{2, 3}},
					onnxfile.ValueInfo{Name: "b", Datatype: oip.FP32, Shape: []int64{2}})
			},
			inputs: []oip.TensorSpec{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 3}}},
		},
		{
			name: "every datatype, scalar and unknown rank",
			edit: func(model *onnxfile.Model) {
				model.Graph.Inputs = nil
				for _, spec := range everyDatatype([]int64{-1, 0, 7, -1}) {
					model.Graph.Inputs = append(model.Graph.Inputs,
						onnxfile.ValueInfo{Name: spec.Name, Datatype: spec.Datatype, Shape: spec.Shape})
				}
				model.Graph.Inputs = append(model.Graph.Inputs,
					onnxfile.ValueInfo{Name: "scalar", Datatype: oip.Int64, Shape: []int64{}},
					onnxfile.ValueInfo{Name: "any rank", Datatype: oip.FP32})
			},
			inputs: append(everyDatatype([]int64{-1, 0, 7, -1}),
				oip.TensorSpec{Name: "scalar", Datatype: oip.Int64, Shape: []int64{}},
				oip.TensorSpec{Name: "any rank", Datatype: oip.FP32}),
		},
		{
			name:   "no inputs",
			edit:   func(model *onnxfile.Model) { model.Graph.Inputs = nil },
			inputs: []oip.TensorSpec{},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			model := linearModel()
			test.edit(&model)
			encoded, err := model.Marshal()
			require.NoError(t, err)

			signature, err := onnxfile.ReadSignature(encoded)
			require.NoError(t, err)
			require.Equal(t, oip.Signature{
				Inputs:  test.inputs,
				Outputs: []oip.TensorSpec{{Name: "output", Datatype: oip.FP32, Shape: []int64{-1, 2}}},
			}, signature)

			metadata, err := onnxfile.ReadMetadata(encoded)
			require.NoError(t, err)
			require.Equal(t, model.Metadata, metadata)
		})
	}
}

// everyDatatype is one spec of each datatype, named after it.
func everyDatatype(shape []int64) []oip.TensorSpec {
	var specs []oip.TensorSpec
	for _, datatype := range []oip.Datatype{
		oip.Bool, oip.Uint8, oip.Uint16, oip.Uint32, oip.Uint64,
		oip.Int8, oip.Int16, oip.Int32, oip.Int64,
		oip.FP16, oip.FP32, oip.FP64, oip.Bytes,
	} {
		specs = append(specs, oip.TensorSpec{Name: string(datatype), Datatype: datatype, Shape: shape})
	}
	return specs
}

func TestMarshalIsDeterministic(t *testing.T) {
	first, err := linearModel().Marshal()
	require.NoError(t, err)
	for range 5 {
		again, err := linearModel().Marshal()
		require.NoError(t, err)
		require.Equal(t, first, again)
	}
}

func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(model *onnxfile.Model)
		want string
	}{
		{
			name: "initializer size",
			edit: func(model *onnxfile.Model) { model.Graph.Initializers[0].Dims = []int64{3, 3} },
			want: `initializer 0 ("W"): dims [3 3] call for 9 values, have 6`,
		},
		{
			name: "negative initializer dimension",
			edit: func(model *onnxfile.Model) { model.Graph.Initializers[1].Dims = []int64{-2} },
			want: `initializer 1 ("b"): dimension 0 is -2`,
		},
		{
			name: "duplicate initializer",
			edit: func(model *onnxfile.Model) { model.Graph.Initializers[1].Name = "W" },
			want: `initializer 1: name "W" is used twice`,
		},
		{
			name: "unknown datatype",
			edit: func(model *onnxfile.Model) { model.Graph.Inputs[0].Datatype = "FLOAT" },
			want: `input 0 ("input"): datatype "FLOAT" is not one of the Open Inference Protocol datatypes`,
		},
		{
			name: "bad dimension",
			edit: func(model *onnxfile.Model) { model.Graph.Outputs[0].Shape = []int64{-1, -3} },
			want: `output 0 ("output"): dimension 1 is -3`,
		},
		{
			name: "unnamed output",
			edit: func(model *onnxfile.Model) { model.Graph.Outputs[0].Name = "" },
			want: `output 0 (""): no name`,
		},
		{
			name: "no outputs",
			edit: func(model *onnxfile.Model) { model.Graph.Outputs = nil },
			want: `graph "linear" has no outputs`,
		},
		{
			name: "attribute set twice",
			edit: func(model *onnxfile.Model) {
				model.Graph.Nodes[0].Attributes = append(model.Graph.Nodes[0].Attributes, onnxfile.IntsAttribute("transB", 0))
			},
			want: `node 0 (Gemm "dense"): attribute "transB" is set twice`,
		},
		{
			name: "zero attribute",
			edit: func(model *onnxfile.Model) {
				model.Graph.Nodes[0].Attributes = append(model.Graph.Nodes[0].Attributes, onnxfile.Attribute{})
			},
			want: `node 0 (Gemm "dense"): attribute 2: make attributes with`,
		},
		{
			name: "no op type",
			edit: func(model *onnxfile.Model) { model.Graph.Nodes[0].OpType = "" },
			want: `node 0 ( "dense"): no op type`,
		},
		{
			name: "negative version",
			edit: func(model *onnxfile.Model) { model.OpsetVersion = -1 },
			want: `negative version (ir 8, opset -1)`,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			model := linearModel()
			test.edit(&model)
			_, err := model.Marshal()
			require.ErrorContains(t, err, test.want)
		})
	}
}

func TestAttributeName(t *testing.T) {
	require.Equal(t, "axis", onnxfile.IntAttribute("axis", 1).Name())
	require.Equal(t, "perm", onnxfile.IntsAttribute("perm", 1, 0).Name())
	require.Equal(t, "alpha", onnxfile.FloatAttribute("alpha", 0.5).Name())
	require.Equal(t, "mode", onnxfile.StringAttribute("mode", "constant").Name())
	require.Equal(t, "values_strings", onnxfile.StringsAttribute("values_strings", "a", "b").Name())
}
