package onnxfile

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"
	"google.golang.org/protobuf/encoding/protowire"

	"sluice.dev/sluice/events/oip"
)

// packed is a packed repeated varint field.
func packed(number protowire.Number, values ...int64) []byte {
	var payload []byte
	for _, value := range values {
		payload = protowire.AppendVarint(payload, uint64(value))
	}
	return appendBytesField(nil, number, payload)
}

func TestReadTensor(t *testing.T) {
	raw := func(values ...float32) []byte {
		var out []byte
		for _, value := range values {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(value))
		}
		return out
	}
	half := float16.Fromfloat32(1.5)
	tests := []struct {
		name    string
		message []byte
		want    oip.Tensor
	}{
		{
			name:    "FP32 in raw_data, dims unpacked",
			message: slices.Concat(varintField(tensorDims, 2), varintField(tensorDims, 1), varintField(tensorDataType, int64(elementFloat)), stringField(tensorName, "x"), appendBytesField(nil, tensorRawData, raw(1.5, -2))),
			want:    oip.Tensor{Name: "x", Shape: []int64{2, 1}, Datatype: oip.FP32, Data: []float32{1.5, -2}},
		},
		{
			name:    "FP32 in float_data, dims packed",
			message: slices.Concat(packed(tensorDims, 1, 2), varintField(tensorDataType, int64(elementFloat)), appendBytesField(nil, tensorFloatData, raw(3, 4))),
			want:    oip.Tensor{Shape: []int64{1, 2}, Datatype: oip.FP32, Data: []float32{3, 4}},
		},
		{
			name:    "INT8 in int32_data",
			message: slices.Concat(packed(tensorDims, 3), varintField(tensorDataType, int64(elementInt8)), packed(tensorInt32Data, -1, 127, -128)),
			want:    oip.Tensor{Shape: []int64{3}, Datatype: oip.Int8, Data: []int8{-1, 127, -128}},
		},
		{
			name:    "FLOAT16 bits in int32_data",
			message: slices.Concat(packed(tensorDims, 1), varintField(tensorDataType, int64(elementFloat16)), packed(tensorInt32Data, int64(half))),
			want:    oip.Tensor{Shape: []int64{1}, Datatype: oip.FP16, Data: []float16.Float16{half}},
		},
		{
			name:    "UINT64 in uint64_data",
			message: slices.Concat(packed(tensorDims, 1), varintField(tensorDataType, int64(elementUint64)), packed(tensorUint64Data, -1)),
			want:    oip.Tensor{Shape: []int64{1}, Datatype: oip.Uint64, Data: []uint64{math.MaxUint64}},
		},
		{
			name:    "a scalar BOOL in raw_data",
			message: slices.Concat(varintField(tensorDataType, int64(elementBool)), appendBytesField(nil, tensorRawData, []byte{1})),
			want:    oip.Tensor{Shape: []int64{}, Datatype: oip.Bool, Data: []bool{true}},
		},
		{
			name:    "STRING",
			message: slices.Concat(packed(tensorDims, 2), varintField(tensorDataType, int64(elementString)), stringField(tensorStringData, "a"), stringField(tensorStringData, "")),
			want:    oip.Tensor{Shape: []int64{2}, Datatype: oip.Bytes, Data: []string{"a", ""}},
		},
		{
			name:    "no elements",
			message: slices.Concat(packed(tensorDims, 0, 3), varintField(tensorDataType, int64(elementString))),
			want:    oip.Tensor{Shape: []int64{0, 3}, Datatype: oip.Bytes, Data: []string{}},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got, err := ReadTensor(test.message)
			require.NoError(t, err)
			require.Equal(t, test.want, got)
		})
	}
}

func TestReadTensorErrors(t *testing.T) {
	tests := []struct {
		name    string
		message []byte
		is      error
		want    string
	}{
		{"raw_data too short", slices.Concat(packed(tensorDims, 2), varintField(tensorDataType, int64(elementFloat)), appendBytesField(nil, tensorRawData, []byte{1, 2, 3, 4})), ErrMalformed, "raw_data holds 4 bytes, 2 elements of FP32 take 8"},
		{"too few values", slices.Concat(packed(tensorDims, 2), varintField(tensorDataType, int64(elementInt64)), packed(tensorInt64Data, 1)), ErrMalformed, "1 values for 2 elements"},
		{"external data", slices.Concat(varintField(tensorDataType, int64(elementFloat)), varintField(tensorDataLocation, 1)), ErrUnsupported, "external file"},
		{"bfloat16", slices.Concat(varintField(tensorDataType, int64(elementBfloat16))), ErrUnsupported, "BFLOAT16"},
		{"negative dimension", slices.Concat(packed(tensorDims, -1), varintField(tensorDataType, int64(elementFloat))), ErrMalformed, "dims [-1]"},
		{"not protobuf", []byte{0xff}, ErrMalformed, "read tensor"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, err := ReadTensor(test.message)
			require.ErrorIs(t, err, test.is)
			require.ErrorContains(t, err, test.want)
		})
	}
}
