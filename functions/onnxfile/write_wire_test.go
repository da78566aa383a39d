package onnxfile

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"sluice.dev/sluice/events/oip"
)

// The reader only reads what serving needs, so these tests check what the
// writer puts on the wire for the rest: opset imports, node domains and
// STRINGS attributes.

// fieldsOf returns the fields of message with the given number, in wire
// order.
func fieldsOf(t *testing.T, message []byte, number protowire.Number) []field {
	t.Helper()
	var found []field
	require.NoError(t, walk(message, func(current field) error {
		if current.number == number {
			found = append(found, current)
		}
		return nil
	}))
	return found
}

// onlyField returns the one field of message with the given number.
func onlyField(t *testing.T, message []byte, number protowire.Number) field {
	t.Helper()
	found := fieldsOf(t, message, number)
	require.Len(t, found, 1, "field %d", number)
	return found[0]
}

// labelModel maps an INT64 label to a class name with ai.onnx.ml's
// LabelEncoder.
func labelModel() Model {
	return Model{
		ExtraOpsets: []Opset{{Domain: MLDomain, Version: 2}},
		Graph: Graph{
			Nodes: []Node{{
				OpType: "LabelEncoder", Domain: MLDomain, Name: "names",
				Inputs: []string{"label"}, Outputs: []string{"class"},
				Attributes: []Attribute{
					IntsAttribute("keys_int64s", 0, 1, 2),
					StringsAttribute("values_strings", "setosa", "", "virginica"),
					StringAttribute("default_string", ""),
				},
			}},
			Inputs:  []ValueInfo{{Name: "label", Datatype: oip.Int64, Shape: []int64{-1}}},
			Outputs: []ValueInfo{{Name: "class", Datatype: oip.Bytes, Shape: []int64{-1}}},
		},
	}
}

func TestMarshalOpsetImports(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(model *Model)
		want  []Opset
		label bool
	}{
		{
			name: "default only",
			edit: func(model *Model) { model.ExtraOpsets, model.Graph.Nodes[0].Domain = nil, "" },
			want: []Opset{{Domain: "", Version: DefaultOpsetVersion}},
		},
		{
			name: "default first, then the extra ones in order",
			edit: func(model *Model) {
				model.OpsetVersion = 17
				model.ExtraOpsets = append(model.ExtraOpsets, Opset{Domain: "com.microsoft", Version: 1})
			},
			want: []Opset{{Domain: "", Version: 17}, {Domain: MLDomain, Version: 2}, {Domain: "com.microsoft", Version: 1}},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			model := labelModel()
			test.edit(&model)
			encoded, err := model.Marshal()
			require.NoError(t, err)
			var opsets []Opset
			for _, imported := range fieldsOf(t, encoded, modelOpsetImport) {
				opsets = append(opsets, Opset{
					Domain:  string(onlyField(t, imported.bytes, opsetIDDomain).bytes),
					Version: int64(onlyField(t, imported.bytes, opsetIDVersion).varint),
				})
			}
			require.Equal(t, test.want, opsets)
		})
	}
}

func TestMarshalNodeDomainAndStringsAttribute(t *testing.T) {
	model := labelModel()
	model.Graph.Nodes = append(model.Graph.Nodes, Node{OpType: "Identity", Inputs: []string{"class"}, Outputs: []string{"copy"}})
	encoded, err := model.Marshal()
	require.NoError(t, err)
	graph := onlyField(t, encoded, modelGraph).bytes
	nodes := fieldsOf(t, graph, graphNode)
	require.Len(t, nodes, 2)

	encoder := nodes[0].bytes
	require.Equal(t, MLDomain, string(onlyField(t, encoder, nodeDomain).bytes))
	require.Empty(t, fieldsOf(t, nodes[1].bytes, nodeDomain), "the default domain is left out")

	attributes := fieldsOf(t, encoder, nodeAttribute)
	require.Len(t, attributes, 3)
	values := attributes[1].bytes
	require.Equal(t, "values_strings", string(onlyField(t, values, attributeName).bytes))
	require.Equal(t, uint64(attributeKindStrings), onlyField(t, values, attributeType).varint)
	var strings []string
	for _, value := range fieldsOf(t, values, attributeStrings) {
		strings = append(strings, string(value.bytes))
	}
	require.Equal(t, []string{"setosa", "", "virginica"}, strings)
	defaults := attributes[2].bytes
	require.Equal(t, "default_string", string(onlyField(t, defaults, attributeName).bytes))
	require.Empty(t, onlyField(t, defaults, attributeString).bytes)
}

func TestMarshalBytesIsString(t *testing.T) {
	encoded, err := labelModel().Marshal()
	require.NoError(t, err)
	graph := onlyField(t, encoded, modelGraph).bytes
	output := onlyField(t, graph, graphOutput).bytes
	valueType := onlyField(t, output, valueInfoType).bytes
	tensor := onlyField(t, valueType, typeTensor).bytes
	require.Equal(t, uint64(elementString), onlyField(t, tensor, tensorTypeElemType).varint)

	signature, err := ReadSignature(encoded)
	require.NoError(t, err)
	require.Equal(t, oip.Signature{
		Inputs:  []oip.TensorSpec{{Name: "label", Datatype: oip.Int64, Shape: []int64{-1}}},
		Outputs: []oip.TensorSpec{{Name: "class", Datatype: oip.Bytes, Shape: []int64{-1}}},
	}, signature)
}

func TestMarshalOpsetErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(model *Model)
		want string
	}{
		{
			name: "domain not imported",
			edit: func(model *Model) { model.ExtraOpsets = nil },
			want: `node 0 (LabelEncoder "names"): domain "ai.onnx.ml" is not imported: add it to ExtraOpsets`,
		},
		{
			name: "domain imported twice",
			edit: func(model *Model) { model.ExtraOpsets = append(model.ExtraOpsets, Opset{Domain: MLDomain, Version: 3}) },
			want: `extra opset 1: domain "ai.onnx.ml" is imported twice`,
		},
		{
			name: "default domain as an extra opset",
			edit: func(model *Model) { model.ExtraOpsets = append(model.ExtraOpsets, Opset{Version: 13}) },
			want: `extra opset 1: domain "" is the default one, set OpsetVersion instead`,
		},
		{
			name: "ai.onnx as an extra opset",
			edit: func(model *Model) { model.ExtraOpsets = []Opset{{Domain: "ai.onnx", Version: 13}} },
			want: `extra opset 0: domain "ai.onnx" is the default one`,
		},
		{
			name: "version zero",
			edit: func(model *Model) { model.ExtraOpsets[0].Version = 0 },
			want: `extra opset 0 ("ai.onnx.ml"): version is 0, want 1 or more`,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			model := labelModel()
			test.edit(&model)
			_, err := model.Marshal()
			require.ErrorContains(t, err, test.want)
		})
	}
}
