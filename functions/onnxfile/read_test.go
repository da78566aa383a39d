package onnxfile

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"sluice.dev/sluice/events/oip"
)

// The helpers below build onnx.proto messages by hand, so that tests can
// make models the writer refuses to make.

func varintField(number protowire.Number, value int64) []byte {
	return appendVarintField(nil, number, uint64(value))
}

func stringField(number protowire.Number, value string) []byte {
	return appendStringField(nil, number, value)
}

func messageField(number protowire.Number, fields ...[]byte) []byte {
	return appendBytesField(nil, number, slices.Concat(fields...))
}

// dimension is a TensorShapeProto.Dimension: an int64 is a dim_value, a
// string a dim_param, and nil neither.
func dimension(size any) []byte {
	switch size := size.(type) {
	case int64:
		return messageField(shapeDim, varintField(dimensionValue, size))
	case string:
		return messageField(shapeDim, stringField(dimensionParam, size))
	}
	return messageField(shapeDim)
}

// tensorValue is a ValueInfoProto (graph field role) of a tensor.
func tensorValue(role protowire.Number, name string, element elementType, sizes ...any) []byte {
	var dimensions [][]byte
	for _, size := range sizes {
		dimensions = append(dimensions, dimension(size))
	}
	tensor := slices.Concat(
		varintField(tensorTypeElemType, int64(element)),
		messageField(tensorTypeShape, dimensions...),
	)
	return messageField(role,
		stringField(valueInfoName, name),
		messageField(valueInfoType, appendBytesField(nil, typeTensor, tensor)))
}

// modelOf is a ModelProto holding a graph made of the given fields.
func modelOf(graphFields ...[]byte) []byte {
	return slices.Concat(varintField(modelIRVersion, 8), messageField(modelGraph, graphFields...))
}

var outputY = tensorValue(graphOutput, "y", elementFloat, "N", int64(1))

func TestReadSignatureCrafted(t *testing.T) {
	outputs := []oip.TensorSpec{{Name: "y", Datatype: oip.FP32, Shape: []int64{-1, 1}}}
	tests := []struct {
		name  string
		model []byte
		want  oip.Signature
	}{
		{
			name:  "dim_param, missing and negative dims are dynamic",
			model: modelOf(tensorValue(graphInput, "x", elementFloat, "batch", nil, int64(-5), int64(3)), outputY),
			want: oip.Signature{
				Inputs:  []oip.TensorSpec{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, -1, -1, 3}}},
				Outputs: outputs,
			},
		},
		{
			name: "dense and sparse initializers listed as inputs are left out",
			model: modelOf(
				tensorValue(graphInput, "W", elementFloat, int64(3), int64(1)),
				tensorValue(graphInput, "x", elementDouble, "N", int64(3)),
				tensorValue(graphInput, "S", elementFloat, int64(3)),
				outputY,
				messageField(graphInitializer, varintField(tensorDims, 3), stringField(tensorName, "W")),
				messageField(graphSparseInitializer, messageField(sparseTensorValues, stringField(tensorName, "S"))),
			),
			want: oip.Signature{
				Inputs:  []oip.TensorSpec{{Name: "x", Datatype: oip.FP64, Shape: []int64{-1, 3}}},
				Outputs: outputs,
			},
		},
		{
			name: "a graph sent in two parts is merged",
			model: slices.Concat(
				messageField(modelGraph, tensorValue(graphInput, "x", elementString, int64(2))),
				messageField(modelGraph, outputY),
			),
			want: oip.Signature{
				Inputs:  []oip.TensorSpec{{Name: "x", Datatype: oip.Bytes, Shape: []int64{2}}},
				Outputs: outputs,
			},
		},
		{
			name: "unknown fields of every wire type are skipped",
			model: slices.Concat(
				protowire.AppendFixed32(protowire.AppendTag(nil, 99, protowire.Fixed32Type), 7),
				protowire.AppendFixed64(protowire.AppendTag(nil, 98, protowire.Fixed64Type), 7),
				protowire.AppendGroup(protowire.AppendTag(nil, 97, protowire.StartGroupType), 97, varintField(1, 1)),
				modelOf(outputY, stringField(graphName, "g"), varintField(40, 1)),
			),
			want: oip.Signature{Inputs: []oip.TensorSpec{}, Outputs: outputs},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			signature, err := ReadSignature(test.model)
			require.NoError(t, err)
			require.Equal(t, test.want, signature)
		})
	}
}

func TestReadSignatureErrors(t *testing.T) {
	valid := modelOf(tensorValue(graphInput, "x", elementFloat, "N", int64(3)), outputY)
	tests := []struct {
		name  string
		model []byte
		is    error
		want  string
	}{
		{name: "empty", model: nil, is: ErrMalformed, want: "empty file"},
		{name: "text", model: []byte("hello, world\n"), is: ErrMalformed},
		{name: "png", model: []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), is: ErrMalformed},
		{name: "json", model: []byte(`{"graph": {}}`), is: ErrMalformed},
		{name: "truncated", model: valid[:len(valid)-3], is: ErrMalformed},
		{name: "no graph", model: varintField(modelIRVersion, 8), is: ErrMalformed, want: "the model has no graph"},
		{name: "graph of the wrong wire type", model: varintField(modelGraph, 1), is: ErrMalformed, want: "graph has wire type 0, want 2"},
		{
			name:  "no outputs",
			model: modelOf(tensorValue(graphInput, "x", elementFloat, int64(1))),
			is:    ErrMalformed, want: "the graph has no outputs",
		},
		{
			name:  "bfloat16 input",
			model: modelOf(tensorValue(graphInput, "x", elementBfloat16, int64(1)), outputY),
			is:    ErrUnsupported, want: `input "x": onnxfile: unsupported: element type BFLOAT16 (16)`,
		},
		{
			name:  "complex output",
			model: modelOf(tensorValue(graphOutput, "z", elementComplex64, int64(1))),
			is:    ErrUnsupported, want: `output "z": onnxfile: unsupported: element type COMPLEX64 (14)`,
		},
		{
			name:  "undefined element type",
			model: modelOf(tensorValue(graphInput, "x", 0, int64(1)), outputY),
			is:    ErrUnsupported, want: `input "x": onnxfile: unsupported: element type UNDEFINED (0)`,
		},
		{
			name:  "unknown element type",
			model: modelOf(tensorValue(graphInput, "x", 99, int64(1)), outputY),
			is:    ErrUnsupported, want: "unknown element type 99",
		},
		{
			name: "sequence output",
			model: modelOf(messageField(graphOutput,
				stringField(valueInfoName, "s"),
				messageField(valueInfoType, messageField(typeSequence)))),
			is: ErrUnsupported, want: `output "s": onnxfile: unsupported: a sequence, not a tensor`,
		},
		{
			name: "map input",
			model: modelOf(outputY, messageField(graphInput,
				stringField(valueInfoName, "m"),
				messageField(valueInfoType, messageField(typeMap)))),
			is: ErrUnsupported, want: `input "m": onnxfile: unsupported: a map`,
		},
		{
			name:  "input without a type",
			model: modelOf(outputY, messageField(graphInput, stringField(valueInfoName, "x"))),
			is:    ErrMalformed, want: `input "x" has no type`,
		},
		{
			name:  "input with an empty type",
			model: modelOf(outputY, messageField(graphInput, stringField(valueInfoName, "x"), messageField(valueInfoType))),
			is:    ErrMalformed, want: `input "x": onnxfile: malformed model: the type is empty`,
		},
		{
			name:  "input without a name",
			model: modelOf(outputY, messageField(graphInput)),
			is:    ErrMalformed, want: "input 0 has no name",
		},
		{
			name: "dim_value of the wrong wire type",
			model: modelOf(messageField(graphOutput,
				stringField(valueInfoName, "y"),
				messageField(valueInfoType, messageField(typeTensor,
					varintField(tensorTypeElemType, int64(elementFloat)),
					messageField(tensorTypeShape, messageField(shapeDim, stringField(dimensionValue, "7"))))))),
			is: ErrMalformed, want: "dim_value has wire type 2, want 0",
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, err := ReadSignature(test.model)
			require.ErrorIs(t, err, test.is)
			require.ErrorContains(t, err, test.want)
		})
	}
}

func TestReadSignatureOfEveryPrefixDoesNotPanic(t *testing.T) {
	model, err := Model{Graph: Graph{
		Inputs:  []ValueInfo{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 3}}},
		Outputs: []ValueInfo{{Name: "y", Datatype: oip.Int64, Shape: []int64{-1}}},
		Nodes:   []Node{{OpType: "ArgMax", Inputs: []string{"x"}, Outputs: []string{"y"}, Attributes: []Attribute{IntAttribute("axis", 1)}}},
	}}.Marshal()
	require.NoError(t, err)
	full, err := ReadSignature(model)
	require.NoError(t, err)
	for length := range len(model) {
		// A prefix that ends after the graph is a model without its opset,
		// which ReadSignature does not need; any other prefix is malformed.
		signature, err := ReadSignature(model[:length])
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed, "prefix of %d bytes", length)
			continue
		}
		require.Equal(t, full, signature, "prefix of %d bytes", length)
	}
}

func TestReadMetadata(t *testing.T) {
	tests := []struct {
		name  string
		model []byte
		want  map[string]string
	}{
		{name: "none", model: modelOf(outputY), want: map[string]string{}},
		{
			name: "last value of a key counts",
			model: slices.Concat(modelOf(outputY),
				messageField(modelMetadataProps, stringField(entryKey, "classes"), stringField(entryValue, `["a"]`)),
				messageField(modelMetadataProps, stringField(entryKey, "classes"), stringField(entryValue, `["b"]`)),
				messageField(modelMetadataProps, stringField(entryKey, "empty"))),
			want: map[string]string{"classes": `["b"]`, "empty": ""},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			metadata, err := ReadMetadata(test.model)
			require.NoError(t, err)
			require.Equal(t, test.want, metadata)
		})
	}
}

func TestReadMetadataErrors(t *testing.T) {
	tests := []struct {
		name  string
		model []byte
	}{
		{name: "empty", model: nil},
		{name: "text", model: []byte("not a model")},
		{name: "no graph", model: varintField(modelIRVersion, 8)},
		{name: "entry of the wrong wire type", model: slices.Concat(modelOf(outputY), varintField(modelMetadataProps, 1))},
		{name: "key of the wrong wire type", model: slices.Concat(modelOf(outputY), messageField(modelMetadataProps, varintField(entryKey, 1)))},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, err := ReadMetadata(test.model)
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
}
