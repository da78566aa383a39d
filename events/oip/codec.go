package oip

import (
	"bytes"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"

	"github.com/x448/float16"
)

// This file holds what the Open Inference Protocol v2 REST codec shares
// between decoding (codec_decode.go, codec_data.go, codec_scan.go), encoding
// (codec_encode.go) and the row helpers of the batcher (rows.go): limits,
// FieldError, the per-datatype element kinds and the Tensor helpers.

// Limits bound what a decoder accepts. They are checked before any tensor
// data is allocated. A field that is zero or negative takes its value from
// DefaultLimits.
type Limits struct {
	// MaxElements is the most elements one tensor may hold: the product of
	// its shape.
	MaxElements int64
	// MaxTensors is the most tensors in inputs or outputs of one body, and
	// the most requested outputs.
	MaxTensors int
}

// DefaultLimits returns 16Mi elements per tensor (64 MiB of FP32) and 256
// tensors per body.
func DefaultLimits() Limits {
	return Limits{MaxElements: 1 << 24, MaxTensors: 256}
}

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	defaults := DefaultLimits()
	if l.MaxElements <= 0 {
		l.MaxElements = defaults.MaxElements
	}
	l.MaxElements = min(l.MaxElements, math.MaxInt)
	if l.MaxTensors <= 0 {
		l.MaxTensors = defaults.MaxTensors
	}
	return l
}

// FieldError is bad input: Field names where, the way a user reads the body
// (`inputs[0].data[5]`, `body`), and Problem says what was wrong. Every error
// of the codec, of Tensor.Validate and of the row helpers is a *FieldError,
// possibly wrapped, so an HTTP layer maps it to 400 Bad Request in one place
// with errors.As.
type FieldError struct {
	Field, Problem string
}

// Error returns "Field: Problem".
func (e *FieldError) Error() string {
	return e.Field + ": " + e.Problem
}

// datatypes lists every Datatype in the order of the protocol's table.
var datatypes = []Datatype{Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, FP16, FP32, FP64, Bytes}

func unknownDatatype(field string, dt Datatype) *FieldError {
	names := make([]string, len(datatypes))
	for i, known := range datatypes {
		names[i] = string(known)
	}
	return &FieldError{Field: field, Problem: fmt.Sprintf("unknown %q (want one of %s)", string(dt), strings.Join(names, ", "))}
}

// elementKind is what the codec and the row helpers do with the typed data
// slice of one datatype; typedKind[T] implements it once for every T.
type elementKind interface {
	// length returns len(data), or false when data is not this kind's slice.
	length(data any) (int, bool)
	// sliceType names the Go type Data must hold, for errors.
	sliceType() string
	// decode reads a data array at the scanner's position (codec_data.go).
	decode(s *scanner, path fieldPath, shape []int64, elements int64) (any, error)
	// appendData writes data as a flat JSON array (codec_encode.go).
	appendData(dst []byte, data any) []byte
	// appendElements writes data[from:to] as a JSON array, or, when bare,
	// the one element data[from] alone (codec_encode.go).
	appendElements(dst []byte, data any, from, to int, bare bool) []byte
	// concat joins the data of parts, which all hold this kind (rows.go).
	concat(parts []Tensor) any
	// split cuts data into consecutive slices of the given lengths (rows.go).
	split(data any, lengths []int) []any
}

// typedKind is the elementKind of datatype whose Data is []T. parse reads one
// element; appendElement writes one.
type typedKind[T any] struct {
	datatype      Datatype
	parse         func(s *scanner) (T, error)
	appendElement func(dst []byte, v T) []byte
}

var (
	boolKind    = &typedKind[bool]{Bool, parseBool, appendBool}
	uint8Kind   = &typedKind[uint8]{Uint8, parseUnsigned[uint8](Uint8, 8), appendUnsigned[uint8]}
	uint16Kind  = &typedKind[uint16]{Uint16, parseUnsigned[uint16](Uint16, 16), appendUnsigned[uint16]}
	uint32Kind  = &typedKind[uint32]{Uint32, parseUnsigned[uint32](Uint32, 32), appendUnsigned[uint32]}
	uint64Kind  = &typedKind[uint64]{Uint64, parseUnsigned[uint64](Uint64, 64), appendUnsigned[uint64]}
	int8Kind    = &typedKind[int8]{Int8, parseSigned[int8](Int8, 8), appendSigned[int8]}
	int16Kind   = &typedKind[int16]{Int16, parseSigned[int16](Int16, 16), appendSigned[int16]}
	int32Kind   = &typedKind[int32]{Int32, parseSigned[int32](Int32, 32), appendSigned[int32]}
	int64Kind   = &typedKind[int64]{Int64, parseSigned[int64](Int64, 64), appendSigned[int64]}
	fp16Kind    = &typedKind[float16.Float16]{FP16, parseFP16, appendFP16}
	fp32Kind    = &typedKind[float32]{FP32, parseFP32, appendFP32}
	fp64Kind    = &typedKind[float64]{FP64, parseFP64, appendFP64}
	stringsKind = &typedKind[string]{Bytes, parseBytes, appendBytes}
)

// kindOf returns the elementKind of dt, or nil when dt is unknown.
func kindOf(dt Datatype) elementKind {
	switch dt {
	case Bool:
		return boolKind
	case Uint8:
		return uint8Kind
	case Uint16:
		return uint16Kind
	case Uint32:
		return uint32Kind
	case Uint64:
		return uint64Kind
	case Int8:
		return int8Kind
	case Int16:
		return int16Kind
	case Int32:
		return int32Kind
	case Int64:
		return int64Kind
	case FP16:
		return fp16Kind
	case FP32:
		return fp32Kind
	case FP64:
		return fp64Kind
	case Bytes:
		return stringsKind
	}
	return nil
}

// datatypeOf returns the Datatype whose Data is the slice type of data.
func datatypeOf(data any) (Datatype, bool) {
	for _, dt := range datatypes {
		if _, ok := kindOf(dt).length(data); ok {
			return dt, true
		}
	}
	return "", false
}

func (k *typedKind[T]) length(data any) (int, bool) {
	values, ok := data.([]T)
	return len(values), ok
}

func (k *typedKind[T]) sliceType() string {
	return fmt.Sprintf("%T", []T(nil))
}

// shapeElements returns the product of shape after checking that no
// dimension is negative, that the product fits an int64 and that it is at
// most limit. Its error's Field is relative to the shape ("" or "[1]").
func shapeElements(shape []int64, limit int64) (int64, *FieldError) {
	zero := false
	for i, dim := range shape {
		if dim < 0 {
			return 0, &FieldError{Field: fmt.Sprintf("[%d]", i), Problem: fmt.Sprintf("%d is negative", dim)}
		}
		zero = zero || dim == 0
	}
	if zero {
		return 0, nil
	}
	product := uint64(1)
	for _, dim := range shape {
		high, low := bits.Mul64(product, uint64(dim))
		if high != 0 || low > math.MaxInt64 {
			return 0, &FieldError{Problem: fmt.Sprintf("product of %s overflows int64", FormatShape(shape))}
		}
		product = low
	}
	if int64(product) > limit {
		return 0, &FieldError{Problem: fmt.Sprintf("%s holds %d elements, more than the limit of %d", FormatShape(shape), product, limit)}
	}
	return int64(product), nil
}

// under returns e with prefix put before its Field.
func (e *FieldError) under(prefix string) *FieldError {
	e.Field = prefix + e.Field
	return e
}

// member joins a field path and a member name: ("inputs[0]", "shape") gives
// "inputs[0].shape", and ("", "shape") gives "shape".
func member(field, name string) string {
	if field == "" {
		return name
	}
	return field + "." + name
}

// Len returns the number of elements in t.Data, or 0 when Data is not one of
// the typed slices.
func (t Tensor) Len() int {
	dt, ok := datatypeOf(t.Data)
	if !ok {
		return 0
	}
	n, _ := kindOf(dt).length(t.Data)
	return n
}

// Validate reports, as a *FieldError under field (such as "inputs[0]"), the
// first way t is not a well-formed tensor: an empty name, an unknown
// datatype, a negative dimension, Data of the wrong slice type, or a length
// that does not match the shape.
func (t Tensor) Validate(field string) error {
	if _, err := t.validate(field); err != nil {
		return err
	}
	return nil
}

// validate is Validate returning the tensor's elementKind.
func (t Tensor) validate(field string) (elementKind, *FieldError) {
	if t.Name == "" {
		return nil, &FieldError{Field: member(field, "name"), Problem: "empty"}
	}
	kind := kindOf(t.Datatype)
	if kind == nil {
		return nil, unknownDatatype(member(field, "datatype"), t.Datatype)
	}
	elements, err := shapeElements(t.Shape, math.MaxInt64)
	if err != nil {
		return nil, err.under(member(field, "shape"))
	}
	length, ok := kind.length(t.Data)
	if !ok {
		return nil, &FieldError{Field: member(field, "data"), Problem: fmt.Sprintf("holds %T, want %s for %s", t.Data, kind.sliceType(), t.Datatype)}
	}
	if int64(length) != elements {
		return nil, &FieldError{Field: member(field, "shape"), Problem: fmt.Sprintf("product %d does not match %d data elements", elements, length)}
	}
	return kind, nil
}

// NewTensor returns a tensor whose Datatype follows from the slice type of
// data ([]uint16 is UINT16, []string is BYTES). It copies shape but not data,
// and fails, as Validate does, when the shape does not fit data.
func NewTensor(name string, shape []int64, data any) (Tensor, error) {
	field := fmt.Sprintf("tensor %q", name)
	dt, ok := datatypeOf(data)
	if !ok {
		return Tensor{}, &FieldError{Field: member(field, "data"), Problem: fmt.Sprintf("%T is not a tensor data type", data)}
	}
	t := Tensor{Name: name, Shape: slices.Clone(shape), Datatype: dt, Data: data}
	if t.Shape == nil {
		t.Shape = []int64{}
	}
	if err := t.Validate(field); err != nil {
		return Tensor{}, err
	}
	return t, nil
}

// MarshalJSON writes t as the codec does, with its data flat. Its errors name
// the field "tensor".
func (t Tensor) MarshalJSON() ([]byte, error) {
	return appendTensor(nil, fieldPath{list: "tensor", index: -1}, t)
}

// UnmarshalJSON reads t as DecodeInferenceRequest reads one input, under
// DefaultLimits. Its errors name the field "tensor". JSON null leaves t
// unchanged, as encoding/json expects.
func (t *Tensor) UnmarshalJSON(body []byte) error {
	if string(bytes.TrimSpace(body)) == "null" {
		return nil
	}
	d := decoder{scan: scanner{buf: body}, limits: DefaultLimits()}
	decoded, err := d.tensor(fieldPath{list: "tensor", index: -1})
	if err != nil {
		return err
	}
	if err := d.scan.end(); err != nil {
		return err
	}
	*t = decoded
	return nil
}
