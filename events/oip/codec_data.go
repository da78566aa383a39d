package oip

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/x448/float16"
)

// This file reads the data array of a tensor straight from the body bytes,
// into the typed slice of its datatype, once its shape has passed Limits.
// Each element parser skips the whitespace before its element itself.

// elementProblem is what is wrong with one data element; the walk puts the
// element's path in front of it to make a *FieldError.
type elementProblem string

func (p elementProblem) Error() string { return string(p) }

// dataWalk reads one tensor's data array, flat or nested, into out. index
// holds the position of the element being read in nested data, for errors.
type dataWalk[T any] struct {
	scan     *scanner
	path     fieldPath
	shape    []int64
	elements int64
	parse    func(*scanner) (T, error)
	out      []T
	index    []int64
}

// decode reads the data array at the scanner's position for a tensor whose
// shape holds elements elements, already checked against Limits. It never
// allocates room for more elements than the rest of the body could hold.
func (k *typedKind[T]) decode(s *scanner, path fieldPath, shape []int64, elements int64) (any, error) {
	if s.peek() != '[' {
		return nil, s.typeError(path.with("data"), "an array")
	}
	room := int64(len(s.buf)-s.pos)/2 + 1 // each element takes at least two bytes
	w := dataWalk[T]{scan: s, path: path, shape: shape, elements: elements, parse: k.parse}
	w.out = make([]T, 0, min(elements, room))
	var err error
	if len(shape) >= 2 && w.holdsArrays() {
		w.index = make([]int64, len(shape))
		err = w.nested(0)
	} else {
		err = w.flat()
	}
	if err != nil {
		return nil, err
	}
	return w.out, nil
}

// holdsArrays reports whether the array at pos starts with an array.
func (w *dataWalk[T]) holdsArrays() bool {
	at := w.scan.pos
	w.scan.pos++
	first := w.scan.peek()
	w.scan.pos = at
	return first == '['
}

// flat reads a flat array, counting elements beyond the shape's product
// without keeping them so the error can say how many came.
func (w *dataWalk[T]) flat() error {
	s := w.scan
	s.pos++
	count := int64(0)
	more := s.peek() != ']'
	if !more {
		s.pos++ // an empty array
	}
	for ; more; count++ {
		v, err := w.parse(s)
		if err != nil {
			return w.elementError(err, []int64{count})
		}
		if count < w.elements {
			w.out = append(w.out, v)
		}
		if more, err = s.arrayNext(); err != nil {
			return err
		}
	}
	if count != w.elements {
		return &FieldError{Field: w.path.with("shape").String(), Problem: fmt.Sprintf("product %d does not match %d data elements", w.elements, count)}
	}
	return nil
}

// nested reads the array at pos as dimension depth of the shape: it must
// hold exactly shape[depth] arrays, or elements at the last dimension.
func (w *dataWalk[T]) nested(depth int) error {
	s := w.scan
	if depth >= maxNesting {
		return s.syntaxError(fmt.Sprintf("nested more than %d deep", maxNesting))
	}
	s.pos++
	dim, leaf := w.shape[depth], depth == len(w.shape)-1
	count := int64(0)
	more := s.peek() != ']'
	if !more {
		s.pos++ // an empty array
	}
	for ; more; count++ {
		w.index[depth] = count
		if count >= dim {
			return w.dimensionError(depth, fmt.Sprintf("more than %d", dim))
		}
		var err error
		switch {
		case leaf:
			err = w.element(depth)
		case s.peek() != '[':
			return &FieldError{Field: w.dataField(w.index[:depth+1]), Problem: fmt.Sprintf("want an array for dimension %d of shape %s, got %s", depth+1, FormatShape(w.shape), valueType(s.peek()))}
		default:
			err = w.nested(depth + 1)
		}
		if err != nil {
			return err
		}
		if more, err = s.arrayNext(); err != nil {
			return err
		}
	}
	if count != dim {
		return w.dimensionError(depth, strconv.FormatInt(count, 10))
	}
	return nil
}

// element reads one element of nested data at the last dimension.
func (w *dataWalk[T]) element(depth int) error {
	v, err := w.parse(w.scan)
	if err != nil {
		return w.elementError(err, w.index[:depth+1])
	}
	w.out = append(w.out, v)
	return nil
}

func (w *dataWalk[T]) dimensionError(depth int, count string) error {
	return &FieldError{Field: w.dataField(w.index[:depth]), Problem: fmt.Sprintf("holds %s elements, but dimension %d of shape %s is %d", count, depth, FormatShape(w.shape), w.shape[depth])}
}

// elementError puts the element's path in front of an elementProblem; other
// errors (malformed JSON) pass unchanged.
func (w *dataWalk[T]) elementError(err error, index []int64) error {
	if problem, ok := err.(elementProblem); ok {
		return &FieldError{Field: w.dataField(index), Problem: string(problem)}
	}
	return err
}

// dataField names an element or sub-array of the data: inputs[0].data[1][2].
func (w *dataWalk[T]) dataField(index []int64) string {
	var field strings.Builder
	field.WriteString(w.path.with("data").String())
	for _, i := range index {
		fmt.Fprintf(&field, "[%d]", i)
	}
	return field.String()
}

// wrongElement reports an element that is valid JSON of the wrong type, or
// malformed JSON.
func wrongElement(s *scanner, want string, dt Datatype) error {
	got := valueType(s.peek())
	if got == "" {
		return s.unexpected("want a value")
	}
	return elementProblem(fmt.Sprintf("want %s for %s, got %s", want, dt, got))
}

// shown returns a number token for an error, cut short if it is long.
func shown(token []byte) string {
	const most = 32
	if len(token) > most {
		return string(token[:most]) + "…"
	}
	return string(token)
}

// number reads a number element for dt.
func number(s *scanner, dt Datatype) (token []byte, integer bool, err error) {
	if c := s.peek(); c != '-' && (c < '0' || c > '9') {
		return nil, false, wrongElement(s, "a number", dt)
	}
	return s.scanNumber()
}

func parseBool(s *scanner) (bool, error) {
	switch s.peek() {
	case 't':
		return true, s.literal("true")
	case 'f':
		return false, s.literal("false")
	}
	return false, wrongElement(s, "true or false", Bool)
}

// integerToken reads a number that must be an integer, for datatype dt.
func integerToken(s *scanner, dt Datatype) ([]byte, error) {
	token, integer, err := number(s, dt)
	if err != nil {
		return nil, err
	}
	if !integer {
		return nil, elementProblem(fmt.Sprintf("%s is not an integer, as %s needs", shown(token), dt))
	}
	return token, nil
}

// parseSigned returns the parser of a signed integer datatype of bitSize bits.
func parseSigned[T int8 | int16 | int32 | int64](dt Datatype, bitSize int) func(*scanner) (T, error) {
	return func(s *scanner) (T, error) {
		token, err := integerToken(s, dt)
		if err != nil {
			return 0, err
		}
		v, err := strconv.ParseInt(string(token), 10, bitSize)
		if err != nil {
			return 0, elementProblem(fmt.Sprintf("%s is out of range for %s", shown(token), dt))
		}
		return T(v), nil
	}
}

// parseUnsigned returns the parser of an unsigned integer datatype of
// bitSize bits. It takes -0 as 0.
func parseUnsigned[T uint8 | uint16 | uint32 | uint64](dt Datatype, bitSize int) func(*scanner) (T, error) {
	return func(s *scanner) (T, error) {
		token, err := integerToken(s, dt)
		if err != nil {
			return 0, err
		}
		if string(token) == "-0" {
			return 0, nil
		}
		v, err := strconv.ParseUint(string(token), 10, bitSize)
		if err != nil {
			return 0, elementProblem(fmt.Sprintf("%s is out of range for %s", shown(token), dt))
		}
		return T(v), nil
	}
}

func overflows(token []byte, dt Datatype) error {
	return elementProblem(fmt.Sprintf("%s overflows %s", shown(token), dt))
}

// parseFP16 rounds to FP32 first, as strconv has no 16-bit parser, then to
// the nearest FP16.
func parseFP16(s *scanner) (float16.Float16, error) {
	if s.peek() == '"' {
		v, err := nonFinite(s, FP16)
		return float16.Fromfloat32(float32(v)), err
	}
	token, _, err := number(s, FP16)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(string(token), 32)
	half := float16.Fromfloat32(float32(v))
	if err != nil || half.IsInf(0) {
		return 0, overflows(token, FP16)
	}
	return half, nil
}

func parseFP32(s *scanner) (float32, error) {
	if s.peek() == '"' {
		v, err := nonFinite(s, FP32)
		return float32(v), err
	}
	token, _, err := number(s, FP32)
	if err != nil {
		return 0, err
	}
	if v, ok := exactFloat(token, maxFraction32, below32); ok {
		return float32(v), nil
	}
	v, err := strconv.ParseFloat(string(token), 32)
	if err != nil {
		return 0, overflows(token, FP32)
	}
	return float32(v), nil
}

func parseFP64(s *scanner) (float64, error) {
	if s.peek() == '"' {
		return nonFinite(s, FP64)
	}
	token, _, err := number(s, FP64)
	if err != nil {
		return 0, err
	}
	if v, ok := exactFloat(token, maxFraction64, below64); ok {
		return v, nil
	}
	v, err := strconv.ParseFloat(string(token), 64)
	if err != nil {
		return 0, overflows(token, FP64)
	}
	return v, nil
}

// nonFinite reads the strings "NaN", "Infinity" and "-Infinity", which stand
// for the floating-point values JSON numbers cannot hold, as in the protobuf
// JSON mapping; any other string is the wrong element.
func nonFinite(s *scanner, dt Datatype) (float64, error) {
	value, err := parseBytes(s)
	if err != nil {
		return 0, err
	}
	switch value {
	case "NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	return 0, elementProblem(fmt.Sprintf("want a number for %s, got string %q (NaN and infinities are written \"NaN\", \"Infinity\" and \"-Infinity\")", dt, value))
}

func parseBytes(s *scanner) (string, error) {
	if s.peek() != '"' {
		return "", wrongElement(s, "a string", Bytes)
	}
	return s.stringValue(bodyPath)
}
