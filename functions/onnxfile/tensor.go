package onnxfile

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"
	"google.golang.org/protobuf/encoding/protowire"

	"sluice.dev/sluice/events/oip"
)

// Field numbers of TensorProto that only ReadTensor needs.
const (
	tensorFloatData    protowire.Number = 4
	tensorInt32Data    protowire.Number = 5
	tensorStringData   protowire.Number = 6
	tensorInt64Data    protowire.Number = 7
	tensorDoubleData   protowire.Number = 10
	tensorUint64Data   protowire.Number = 11
	tensorDataLocation protowire.Number = 14
)

// tensorFields are the parts of a TensorProto that ReadTensor reads. The
// typed fields hold every element as its widest wire form; numbers that come
// packed and unpacked are both collected.
type tensorFields struct {
	name     string
	dims     []int64
	element  elementType
	raw      []byte
	hasRaw   bool
	floats   []float32
	doubles  []float64
	varints  []uint64 // int32_data, int64_data and uint64_data
	strings  []string
	external bool
}

// ReadTensor reads a serialized TensorProto, such as the input_0.pb and
// output_0.pb files of the ONNX backend test data, as a Tensor named as the
// TensorProto is (which may be no name). Its data may be in raw_data or in the typed fields.
// Element types without an Open Inference Protocol datatype give an error
// wrapping ErrUnsupported, as do tensors whose data is stored outside the file.
func ReadTensor(message []byte) (oip.Tensor, error) {
	var fields tensorFields
	err := walk(message, fields.visit)
	if err != nil {
		return oip.Tensor{}, fmt.Errorf("read tensor: %w", err)
	}
	if fields.external {
		return oip.Tensor{}, fmt.Errorf("%w: tensor %q keeps its data in an external file", ErrUnsupported, fields.name)
	}
	datatype, ok := datatypeOfElement[fields.element]
	if !ok {
		return oip.Tensor{}, fmt.Errorf("%w: tensor %q has element type %v", ErrUnsupported, fields.name, fields.element)
	}
	elements := int64(1)
	for _, size := range fields.dims {
		if size < 0 || (size > 0 && elements > math.MaxInt32/size) {
			return oip.Tensor{}, fmt.Errorf("%w: tensor %q has dims %v", ErrMalformed, fields.name, fields.dims)
		}
		elements *= size
	}
	data, err := fields.data(datatype, int(elements))
	if err != nil {
		return oip.Tensor{}, fmt.Errorf("tensor %q: %w", fields.name, err)
	}
	if fields.dims == nil {
		fields.dims = []int64{}
	}
	return oip.Tensor{Name: fields.name, Shape: fields.dims, Datatype: datatype, Data: data}, nil
}

// visit collects one field of a TensorProto.
func (t *tensorFields) visit(current field) error {
	switch current.number {
	case tensorDims:
		values, err := current.varints("dims")
		for _, value := range values {
			t.dims = append(t.dims, int64(value))
		}
		return err
	case tensorDataType:
		if err := current.expect(protowire.VarintType, "data_type"); err != nil {
			return err
		}
		t.element = elementType(int32(current.varint))
	case tensorName:
		if err := current.expect(protowire.BytesType, "name"); err != nil {
			return err
		}
		t.name = string(current.bytes)
	case tensorRawData:
		if err := current.expect(protowire.BytesType, "raw_data"); err != nil {
			return err
		}
		t.raw, t.hasRaw = current.bytes, true
	case tensorFloatData:
		values, err := current.fixed(4, "float_data")
		for _, bits := range values {
			t.floats = append(t.floats, math.Float32frombits(uint32(bits)))
		}
		return err
	case tensorDoubleData:
		values, err := current.fixed(8, "double_data")
		for _, bits := range values {
			t.doubles = append(t.doubles, math.Float64frombits(bits))
		}
		return err
	case tensorInt32Data, tensorInt64Data, tensorUint64Data:
		values, err := current.varints("integer data")
		t.varints = append(t.varints, values...)
		return err
	case tensorStringData:
		if err := current.expect(protowire.BytesType, "string_data"); err != nil {
			return err
		}
		t.strings = append(t.strings, string(current.bytes))
	case tensorDataLocation:
		t.external = current.wireType == protowire.VarintType && current.varint == 1
	}
	return nil
}

// varints returns the values of a repeated integer field, packed or not.
func (current field) varints(what string) ([]uint64, error) {
	if current.wireType == protowire.VarintType {
		return []uint64{current.varint}, nil
	}
	if err := current.expect(protowire.BytesType, what); err != nil {
		return nil, err
	}
	var values []uint64
	for packed := current.bytes; len(packed) > 0; {
		value, length := protowire.ConsumeVarint(packed)
		if length < 0 {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, protowire.ParseError(length))
		}
		values, packed = append(values, value), packed[length:]
	}
	return values, nil
}

// fixed returns the values of a repeated float or double field (size 4 or
// 8 bytes each), which onnx.proto declares packed.
func (current field) fixed(size int, what string) ([]uint64, error) {
	if err := current.expect(protowire.BytesType, what); err != nil {
		return nil, err
	}
	if len(current.bytes)%size != 0 {
		return nil, fmt.Errorf("%w: %s holds %d bytes, not a multiple of %d", ErrMalformed, what, len(current.bytes), size)
	}
	values := make([]uint64, 0, len(current.bytes)/size)
	for packed := current.bytes; len(packed) > 0; packed = packed[size:] {
		if size == 4 {
			values = append(values, uint64(binary.LittleEndian.Uint32(packed)))
		} else {
			values = append(values, binary.LittleEndian.Uint64(packed))
		}
	}
	return values, nil
}

// data returns the tensor's elements as the typed slice of datatype.
func (t *tensorFields) data(datatype oip.Datatype, elements int) (any, error) {
	if datatype == oip.Bytes {
		return counted(t.strings, elements)
	}
	if t.hasRaw {
		if size := datatype.Size(); len(t.raw) != size*elements {
			return nil, fmt.Errorf("%w: raw_data holds %d bytes, %d elements of %s take %d", ErrMalformed, len(t.raw), elements, datatype, size*elements)
		}
		return fromRaw(datatype, t.raw), nil
	}
	switch datatype {
	case oip.FP32:
		return counted(t.floats, elements)
	case oip.FP64:
		return counted(t.doubles, elements)
	}
	values, err := counted(t.varints, elements)
	if err != nil {
		return nil, err
	}
	return fromVarints(datatype, values), nil
}

// counted checks that values holds one value per element.
func counted[T any](values []T, elements int) ([]T, error) {
	if len(values) != elements {
		return nil, fmt.Errorf("%w: %d values for %d elements", ErrMalformed, len(values), elements)
	}
	if values == nil {
		values = []T{}
	}
	return values, nil
}

// fromRaw reads little-endian raw_data as datatype's slice; its length has
// been checked.
func fromRaw(datatype oip.Datatype, raw []byte) any {
	size := datatype.Size()
	values := make([]uint64, len(raw)/size)
	for i := range values {
		element := raw[i*size : (i+1)*size]
		switch size {
		case 1:
			values[i] = uint64(element[0])
		case 2:
			values[i] = uint64(binary.LittleEndian.Uint16(element))
		case 4:
			values[i] = uint64(binary.LittleEndian.Uint32(element))
		case 8:
			values[i] = binary.LittleEndian.Uint64(element)
		}
	}
	switch datatype {
	case oip.FP32:
		return convert(values, func(v uint64) float32 { return math.Float32frombits(uint32(v)) })
	case oip.FP64:
		return convert(values, math.Float64frombits)
	}
	return fromVarints(datatype, values)
}

// fromVarints converts integers as TensorProto's int32_data, int64_data and
// uint64_data hold them (and raw bits of the same width) to datatype's slice.
// FLOAT16 elements are their bits, as in int32_data.
func fromVarints(datatype oip.Datatype, values []uint64) any {
	switch datatype {
	case oip.Bool:
		return convert(values, func(v uint64) bool { return v != 0 })
	case oip.Uint8:
		return convert(values, func(v uint64) uint8 { return uint8(v) })
	case oip.Uint16:
		return convert(values, func(v uint64) uint16 { return uint16(v) })
	case oip.Uint32:
		return convert(values, func(v uint64) uint32 { return uint32(v) })
	case oip.Uint64:
		return values
	case oip.Int8:
		return convert(values, func(v uint64) int8 { return int8(v) })
	case oip.Int16:
		return convert(values, func(v uint64) int16 { return int16(v) })
	case oip.Int32:
		return convert(values, func(v uint64) int32 { return int32(v) })
	case oip.Int64:
		return convert(values, func(v uint64) int64 { return int64(v) })
	case oip.FP16:
		return convert(values, func(v uint64) float16.Float16 { return float16.Float16(uint16(v)) })
	}
	panic("onnxfile: no integer form for " + datatype)
}

func convert[T any](values []uint64, to func(uint64) T) []T {
	out := make([]T, len(values))
	for i, v := range values {
		out[i] = to(v)
	}
	return out
}
