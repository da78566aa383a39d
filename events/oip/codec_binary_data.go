package oip

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"
	"unsafe"

	"github.com/x448/float16"
)

// This file lays out the elements of each datatype as the binary tensor data
// extension does: little-endian, row-major, no padding; a BOOL is one byte, 0
// or 1; a BYTES element is a 4-byte little-endian length and that many bytes.
// It reads into, and writes from, the same typed slices as the JSON codec.

// binaryKind is what the binary tensor data extension does with the elements
// of one datatype; fixedKind[T] implements it for the datatypes of fixed
// size, bytesKind for BYTES.
type binaryKind interface {
	// checkSize returns a problem, or "", with a binary_data_size of size
	// bytes for a tensor of shape, which holds elements elements of dt.
	checkSize(size int64, shape []int64, elements int64, dt Datatype) string
	// decode reads the elements of raw, whose length checkSize has passed.
	decode(raw []byte, elements int64, path fieldPath) (any, error)
	// byteSize returns the bytes data takes in binary; validate has checked
	// that data is this kind's slice.
	byteSize(data any, path fieldPath) (int64, *FieldError)
	// appendBinary writes data, which byteSize has passed.
	appendBinary(dst []byte, data any) []byte
	// elementSize is the bytes one element takes, 0 when they vary.
	elementSize() int
}

// fixedKind is the binaryKind of a datatype whose elements take size bytes.
// get reads one element and reports false for bytes that are not one (only
// a BOOL can be invalid: a byte other than 0 and 1); put writes one.
type fixedKind[T any] struct {
	size int
	get  func(b []byte) (T, bool)
	put  func(dst []byte, v T) []byte
}

var (
	boolBinary   = &fixedKind[bool]{1, getBool, putBool}
	uint8Binary  = &fixedKind[uint8]{1, get8[uint8], put8[uint8]}
	uint16Binary = &fixedKind[uint16]{2, get16[uint16], put16[uint16]}
	uint32Binary = &fixedKind[uint32]{4, get32[uint32], put32[uint32]}
	uint64Binary = &fixedKind[uint64]{8, get64[uint64], put64[uint64]}
	int8Binary   = &fixedKind[int8]{1, get8[int8], put8[int8]}
	int16Binary  = &fixedKind[int16]{2, get16[int16], put16[int16]}
	int32Binary  = &fixedKind[int32]{4, get32[int32], put32[int32]}
	int64Binary  = &fixedKind[int64]{8, get64[int64], put64[int64]}
	fp16Binary   = &fixedKind[float16.Float16]{2, get16[float16.Float16], put16[float16.Float16]}
	fp32Binary   = &fixedKind[float32]{4, getFP32, putFP32}
	fp64Binary   = &fixedKind[float64]{8, getFP64, putFP64}
)

// binaryKindOf returns the binaryKind of dt, or nil when dt is unknown.
func binaryKindOf(dt Datatype) binaryKind {
	switch dt {
	case Bool:
		return boolBinary
	case Uint8:
		return uint8Binary
	case Uint16:
		return uint16Binary
	case Uint32:
		return uint32Binary
	case Uint64:
		return uint64Binary
	case Int8:
		return int8Binary
	case Int16:
		return int16Binary
	case Int32:
		return int32Binary
	case Int64:
		return int64Binary
	case FP16:
		return fp16Binary
	case FP32:
		return fp32Binary
	case FP64:
		return fp64Binary
	case Bytes:
		return bytesKind{}
	}
	return nil
}

func (k *fixedKind[T]) checkSize(size int64, shape []int64, elements int64, dt Datatype) string {
	width := int64(k.size)
	if size%width == 0 && size/width == elements {
		return ""
	}
	want := "more than 2^63 bytes"
	if elements <= math.MaxInt64/width {
		want = fmt.Sprintf("%d bytes", elements*width)
	}
	return fmt.Sprintf("says %d bytes, but shape %s of %s takes %s (%d elements of %d bytes)", size, FormatShape(shape), dt, want, elements, width)
}

func (k *fixedKind[T]) decode(raw []byte, elements int64, path fieldPath) (any, error) {
	out := make([]T, elements)
	if k.inMemoryForm() {
		copy(memoryOf(out, k.size), raw) // checkSize has made them the same length
		return out, nil
	}
	for i := range out {
		v, ok := k.get(raw[i*k.size:])
		if !ok {
			return nil, &FieldError{Field: fmt.Sprintf("%s[%d]", path.with("data"), i), Problem: fmt.Sprintf("byte %d is not a BOOL: want 0 for false or 1 for true", raw[i*k.size])}
		}
		out[i] = v
	}
	return out, nil
}

func (k *fixedKind[T]) elementSize() int { return k.size }

func (k *fixedKind[T]) byteSize(data any, _ fieldPath) (int64, *FieldError) {
	return int64(len(data.([]T))) * int64(k.size), nil
}

func (k *fixedKind[T]) appendBinary(dst []byte, data any) []byte {
	values := data.([]T)
	if k.inMemoryForm() {
		return append(dst, memoryOf(values, k.size)...)
	}
	dst = slices.Grow(dst, len(values)*k.size)
	for _, v := range values {
		dst = k.put(dst, v)
	}
	return dst
}

// hostLittleEndian says whether this machine lays numbers out in memory as
// the binary extension does.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// inMemoryForm reports whether the elements' memory on this machine is
// their binary form, so that a tensor is one copy, not a call per element
// (BenchmarkDecodeInferenceRequestBinary, rows=4096: 48–58 µs → 24–26 µs;
// BenchmarkAppendInferenceResponseBinary: 41 µs → 15 µs): on a
// little-endian machine, every kind but BOOL, whose bytes other than 0 and 1
// are refused.
func (k *fixedKind[T]) inMemoryForm() bool {
	_, isBool := any(*new(T)).(bool)
	return hostLittleEndian && !isBool
}

// memoryOf is the memory of values, each size bytes, as bytes.
func memoryOf[T any](values []T, size int) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(values))), len(values)*size)
}

func getBool(b []byte) (bool, bool) { return b[0] == 1, b[0] <= 1 }

func putBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func get8[T ~uint8 | ~int8](b []byte) (T, bool) { return T(b[0]), true }

func put8[T ~uint8 | ~int8](dst []byte, v T) []byte { return append(dst, uint8(v)) }

func get16[T ~uint16 | ~int16](b []byte) (T, bool) {
	return T(binary.LittleEndian.Uint16(b)), true
}

func put16[T ~uint16 | ~int16](dst []byte, v T) []byte {
	return binary.LittleEndian.AppendUint16(dst, uint16(v))
}

func get32[T ~uint32 | ~int32](b []byte) (T, bool) {
	return T(binary.LittleEndian.Uint32(b)), true
}

func put32[T ~uint32 | ~int32](dst []byte, v T) []byte {
	return binary.LittleEndian.AppendUint32(dst, uint32(v))
}

func get64[T ~uint64 | ~int64](b []byte) (T, bool) {
	return T(binary.LittleEndian.Uint64(b)), true
}

func put64[T ~uint64 | ~int64](dst []byte, v T) []byte {
	return binary.LittleEndian.AppendUint64(dst, uint64(v))
}

func getFP32(b []byte) (float32, bool) {
	return math.Float32frombits(binary.LittleEndian.Uint32(b)), true
}

func putFP32(dst []byte, v float32) []byte {
	return binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
}

func getFP64(b []byte) (float64, bool) {
	return math.Float64frombits(binary.LittleEndian.Uint64(b)), true
}

func putFP64(dst []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
}

// bytesKind is the binaryKind of BYTES, whose Data is []string.
type bytesKind struct{}

// lengthSize is the size of the length in front of each BYTES element.
const lengthSize = 4

func (bytesKind) checkSize(size int64, shape []int64, elements int64, _ Datatype) string {
	if size/lengthSize >= elements {
		return ""
	}
	return fmt.Sprintf("says %d bytes, too few for shape %s of BYTES: each of its %d elements takes at least %d bytes, for its length", size, FormatShape(shape), elements, lengthSize)
}

// decode reads elements strings; checkSize has made sure raw holds at least
// their lengths, so out is no larger than the body.
func (bytesKind) decode(raw []byte, elements int64, path fieldPath) (any, error) {
	out := make([]string, elements)
	// One copy of the whole data, which every element is a part of, rather
	// than a string each: a batch answer has thousands.
	text := string(raw)
	pos := 0
	element := func(i int) string { return fmt.Sprintf("%s[%d]", path.with("data"), i) }
	for i := range out {
		if len(raw)-pos < lengthSize {
			return nil, &FieldError{Field: element(i), Problem: fmt.Sprintf("its %d-byte length does not fit in the %d bytes left of binary_data_size %d", lengthSize, len(raw)-pos, len(raw))}
		}
		length := binary.LittleEndian.Uint32(raw[pos:])
		pos += lengthSize
		if uint64(length) > uint64(len(raw)-pos) {
			return nil, &FieldError{Field: element(i), Problem: fmt.Sprintf("length %d runs past the end of the tensor's binary data: %d bytes are left of binary_data_size %d", length, len(raw)-pos, len(raw))}
		}
		value := raw[pos : pos+int(length)]
		if !utf8.Valid(value) {
			return nil, &FieldError{Field: element(i), Problem: "not valid UTF-8: Sluice carries BYTES elements as JSON strings, so they must be text"}
		}
		out[i] = text[pos : pos+int(length)]
		pos += int(length)
	}
	if pos != len(raw) {
		return nil, &FieldError{Field: path.with("parameters").String() + "." + paramBinaryDataSize, Problem: fmt.Sprintf("says %d bytes, but the %d BYTES elements take %d", len(raw), elements, pos)}
	}
	return out, nil
}

func (bytesKind) elementSize() int { return 0 }

func (bytesKind) byteSize(data any, path fieldPath) (int64, *FieldError) {
	total := int64(0)
	for i, value := range data.([]string) {
		if int64(len(value)) > math.MaxUint32 {
			return 0, &FieldError{Field: fmt.Sprintf("%s[%d]", path.with("data"), i), Problem: fmt.Sprintf("%d bytes are more than the 4-byte length of a binary BYTES element can say", len(value))}
		}
		total += lengthSize + int64(len(value))
	}
	return total, nil
}

func (bytesKind) appendBinary(dst []byte, data any) []byte {
	for _, value := range data.([]string) {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(value)))
		dst = append(dst, value...)
	}
	return dst
}
