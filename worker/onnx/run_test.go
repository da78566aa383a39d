package onnx_test

import (
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/onnxfile"
	"sluice.dev/sluice/functions/train"
	"sluice.dev/sluice/worker/onnx"
)

// ONNX's TensorProto.DataType values, for the "to" attribute of a Cast.
const (
	onnxFloat   = 1
	onnxFloat16 = 10
)

// singleNodeModel writes a model of one node from x to y.
func singleNodeModel(t *testing.T, node onnxfile.Node, input, output onnxfile.ValueInfo) ([]byte, oip.Signature) {
	t.Helper()
	node.Inputs, node.Outputs = []string{input.Name}, []string{output.Name}
	model, err := onnxfile.Model{Graph: onnxfile.Graph{
		Nodes:   []onnxfile.Node{node},
		Inputs:  []onnxfile.ValueInfo{input},
		Outputs: []onnxfile.ValueInfo{output},
	}}.Marshal()
	require.NoError(t, err)
	signature, err := onnxfile.ReadSignature(model)
	require.NoError(t, err)
	return model, signature
}

// TestDatatypesRoundTrip sends each datatype through an Identity node and
// back, as a matrix, a scalar, a tensor with no elements and a scalar the
// model gives as an output of unknown rank: what comes out must be what went in.
func TestDatatypesRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		datatype oip.Datatype
		data     any
	}{
		{name: "FP32", datatype: oip.FP32, data: []float32{0, -1.5, math.MaxFloat32, math.SmallestNonzeroFloat32, float32(math.Inf(-1)), 3.25}},
		{name: "FP64", datatype: oip.FP64, data: []float64{0, -1.5, math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), 1e-300}},
		{name: "FP16", datatype: oip.FP16, data: []float16.Float16{float16.Fromfloat32(1.5), float16.Fromfloat32(-65504), float16.Fromfloat32(6e-8), float16.Inf(1), float16.Fromfloat32(0), float16.Fromfloat32(0.1)}},
		{name: "INT64", datatype: oip.Int64, data: []int64{0, -1, math.MaxInt64, math.MinInt64, 42, 1 << 53}},
		{name: "INT32", datatype: oip.Int32, data: []int32{0, -1, math.MaxInt32, math.MinInt32, 42, 7}},
		{name: "INT16", datatype: oip.Int16, data: []int16{0, -1, math.MaxInt16, math.MinInt16, 42, 7}},
		{name: "INT8", datatype: oip.Int8, data: []int8{0, -1, math.MaxInt8, math.MinInt8, 42, 7}},
		{name: "UINT64", datatype: oip.Uint64, data: []uint64{0, 1, math.MaxUint64, 1 << 63, 42, 7}},
		{name: "UINT32", datatype: oip.Uint32, data: []uint32{0, 1, math.MaxUint32, 1 << 31, 42, 7}},
		{name: "UINT16", datatype: oip.Uint16, data: []uint16{0, 1, math.MaxUint16, 1 << 15, 42, 7}},
		{name: "UINT8", datatype: oip.Uint8, data: []uint8{0, 1, math.MaxUint8, 1 << 7, 42, 7}},
		{name: "BOOL", datatype: oip.Bool, data: []bool{true, false, false, true, true, false}},
		{name: "BYTES", datatype: oip.Bytes, data: []string{"", "a", "héllo", "tab\there", "\xff\xfe not UTF-8", "long " + fmt.Sprint(math.Pi)}},
	}
	shapes := []struct {
		name                    string
		declaredIn, declaredOut []int64
		given                   []int64
	}{
		{name: "matrix", declaredIn: []int64{-1, 3}, declaredOut: []int64{-1, 3}, given: []int64{2, 3}},
		{name: "no elements", declaredIn: []int64{-1, 3}, declaredOut: []int64{-1, 3}, given: []int64{0, 3}},
		{name: "scalar", declaredIn: []int64{}, declaredOut: []int64{}, given: []int64{}},
		{name: "scalar out of unknown rank", declaredIn: []int64{}, declaredOut: nil, given: []int64{}},
		{name: "matrix out of unknown rank", declaredIn: []int64{-1, 3}, declaredOut: nil, given: []int64{2, 3}},
	}
	for _, test := range tests {
		for _, shape := range shapes {
			t.Run(test.name+"/"+shape.name, func(t *testing.T) {
				model, signature := singleNodeModel(t, onnxfile.Node{OpType: "Identity", Name: "same"},
					onnxfile.ValueInfo{Name: "x", Datatype: test.datatype, Shape: shape.declaredIn},
					onnxfile.ValueInfo{Name: "y", Datatype: test.datatype, Shape: shape.declaredOut})
				session := loadSession(t, model, signature)
				elements := 1
				for _, d := range shape.given {
					elements *= int(d)
				}
				data := reflect.ValueOf(test.data).Slice(0, elements).Interface()
				input, err := oip.NewTensor("x", shape.given, data)
				require.NoError(t, err)
				require.Equal(t, test.datatype, input.Datatype)

				outputs, err := session.Run([]oip.Tensor{input})
				require.NoError(t, err)
				require.Len(t, outputs, 1)
				want, err := oip.NewTensor("y", shape.given, data)
				require.NoError(t, err)
				require.Equal(t, want, outputs[0])
			})
		}
	}
}

// TestModelWithoutInputs runs a model whose one node is a Constant.
func TestModelWithoutInputs(t *testing.T) {
	model, err := onnxfile.Model{Graph: onnxfile.Graph{
		Nodes:   []onnxfile.Node{{OpType: "Constant", Outputs: []string{"y"}, Attributes: []onnxfile.Attribute{onnxfile.FloatAttribute("value_float", 2.5)}}},
		Outputs: []onnxfile.ValueInfo{{Name: "y", Datatype: oip.FP32, Shape: []int64{}}},
	}}.Marshal()
	require.NoError(t, err)
	signature, err := onnxfile.ReadSignature(model)
	require.NoError(t, err)
	require.Empty(t, signature.Inputs)
	session := loadSession(t, model, signature)
	for range 2 {
		outputs, err := session.Run(nil)
		require.NoError(t, err)
		want, err := oip.NewTensor("y", []int64{}, []float32{2.5})
		require.NoError(t, err)
		require.Equal(t, []oip.Tensor{want}, outputs)
	}
}

// TestFP16Input converts FP16 inputs, which ONNX Runtime takes as raw
// bytes, through a Cast to FP32 whose output the adapter can read.
func TestFP16Input(t *testing.T) {
	model, signature := singleNodeModel(t,
		onnxfile.Node{OpType: "Cast", Name: "widen", Attributes: []onnxfile.Attribute{onnxfile.IntAttribute("to", onnxFloat)}},
		onnxfile.ValueInfo{Name: "x", Datatype: oip.FP16, Shape: []int64{-1, 3}},
		onnxfile.ValueInfo{Name: "y", Datatype: oip.FP32, Shape: []int64{-1, 3}})
	session := loadSession(t, model, signature)
	values := []float32{0, -1.5, 65504, 0.000061035156, 3.140625, -2}
	halves := make([]float16.Float16, len(values))
	for i, value := range values {
		halves[i] = float16.Fromfloat32(value)
	}
	input, err := oip.NewTensor("x", []int64{2, 3}, halves)
	require.NoError(t, err)
	require.Equal(t, oip.FP16, input.Datatype)

	outputs, err := session.Run([]oip.Tensor{input})
	require.NoError(t, err)
	want, err := oip.NewTensor("y", []int64{2, 3}, values)
	require.NoError(t, err)
	require.Equal(t, []oip.Tensor{want}, outputs)
}

func TestBytesWithNULIsRefused(t *testing.T) {
	model, signature := singleNodeModel(t, onnxfile.Node{OpType: "Identity", Name: "same"},
		onnxfile.ValueInfo{Name: "x", Datatype: oip.Bytes, Shape: []int64{-1}},
		onnxfile.ValueInfo{Name: "y", Datatype: oip.Bytes, Shape: []int64{-1}})
	session := loadSession(t, model, signature)
	input, err := oip.NewTensor("x", []int64{2}, []string{"fine", "cut\x00short"})
	require.NoError(t, err)

	outputs, err := session.Run([]oip.Tensor{input})
	require.Nil(t, outputs)
	var field *oip.FieldError
	require.ErrorAs(t, err, &field, "bad input, so the worker answers 400")
	require.Equal(t, "x.data[1]", field.Field)
	require.ErrorContains(t, err, "NUL byte")
}

func TestFP16Outputs(t *testing.T) {
	initRuntime(t)
	t.Run("given back exactly", func(t *testing.T) {
		model, signature := singleNodeModel(t, onnxfile.Node{OpType: "Identity", Name: "same"},
			onnxfile.ValueInfo{Name: "x", Datatype: oip.FP16, Shape: []int64{-1, 3}},
			onnxfile.ValueInfo{Name: "y", Datatype: oip.FP16, Shape: []int64{-1, 3}})
		session := loadSession(t, model, signature)
		halves := []float16.Float16{float16.Fromfloat32(1.5), float16.Fromfloat32(-65504), float16.Fromfloat32(6e-8), float16.Inf(1), float16.Fromfloat32(0), float16.Fromfloat32(0.1)}
		input, err := oip.NewTensor("x", []int64{2, 3}, halves)
		require.NoError(t, err)
		outputs, err := session.Run([]oip.Tensor{input})
		require.NoError(t, err)
		want, err := oip.NewTensor("y", []int64{2, 3}, halves)
		require.NoError(t, err)
		require.Equal(t, []oip.Tensor{want}, outputs)
	})
	t.Run("a signature that is not the model's is refused at load", func(t *testing.T) {
		model, _ := singleNodeModel(t,
			onnxfile.Node{OpType: "Cast", Name: "narrow", Attributes: []onnxfile.Attribute{onnxfile.IntAttribute("to", onnxFloat16)}},
			onnxfile.ValueInfo{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 3}},
			onnxfile.ValueInfo{Name: "y", Datatype: oip.FP16, Shape: []int64{-1, 3}})
		signature := oip.Signature{
			Inputs:  []oip.TensorSpec{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 3}}},
			Outputs: []oip.TensorSpec{{Name: "y", Datatype: oip.FP32, Shape: []int64{-1, 3}}},
		}
		session, err := onnx.Load(model, signature, onnx.DefaultSessionConfig())
		require.ErrorContains(t, err, "outputs[0] is y FP16 [-1,3] in the model, y FP32 [-1,3] in the signature")
		require.Nil(t, session)
	})
}

// BenchmarkSessionRun scores iris rows in batches of 1, 32 and 256 on one
// single-threaded session, as one worker session does.
func BenchmarkSessionRun(b *testing.B) {
	fixture := irisFixture(b)
	session := loadSession(b, fixture.model, fixture.signature)
	for _, batch := range []int{1, 32, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			rows := make([][]float32, batch)
			for i := range rows {
				rows[i] = fixture.rows[i%len(fixture.rows)]
			}
			inputs := []oip.Tensor{irisInput(b, rows)}
			b.ReportAllocs()
			for b.Loop() {
				outputs, err := session.Run(inputs)
				if err != nil {
					b.Fatal(err)
				}
				if len(outputs) != len(fixture.signature.Outputs) || outputs[0].Name != train.ProbabilitiesName {
					b.Fatalf("unexpected outputs %v", outputs)
				}
			}
			b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
