package oip

import (
	"fmt"
	"maps"
	"math"
	"slices"
)

// This file joins the tensors of several requests into one batch along
// dimension 0, and splits a batched result back, for the worker's dynamic
// batcher.

// CanBatch reports whether a and b can be joined along dimension 0: the same
// name and datatype, rank 1 or more, and the same dimensions after the first.
// It looks at the metadata only, not at Data.
func CanBatch(a, b Tensor) bool {
	return a.Name == b.Name && a.Datatype == b.Datatype &&
		len(a.Shape) >= 1 && len(b.Shape) >= 1 && slices.Equal(a.Shape[1:], b.Shape[1:])
}

// ConcatRows joins parts along dimension 0 into one tensor with fresh Data;
// it takes Parameters (copied) from the first part. Every part must be valid
// and batch with the first (see CanBatch); otherwise the *FieldError names
// the part, as parts[2], and says why.
func ConcatRows(parts []Tensor) (Tensor, error) {
	if len(parts) == 0 {
		return Tensor{}, &FieldError{Field: "parts", Problem: "empty"}
	}
	first := parts[0]
	var rows int64
	for i, part := range parts {
		field := fmt.Sprintf("parts[%d]", i)
		if _, err := part.validate(field); err != nil {
			return Tensor{}, err
		}
		if err := batchMismatch(field, first, part); err != nil {
			return Tensor{}, err
		}
		if part.Shape[0] > math.MaxInt64-rows {
			return Tensor{}, &FieldError{Field: field + ".shape", Problem: "dimension 0 of the batch overflows int64"}
		}
		rows += part.Shape[0]
	}
	return Tensor{
		Name:       first.Name,
		Shape:      append([]int64{rows}, first.Shape[1:]...),
		Datatype:   first.Datatype,
		Parameters: maps.Clone(first.Parameters),
		Data:       kindOf(first.Datatype).concat(parts),
	}, nil
}

// batchMismatch says why part cannot be batched with first.
func batchMismatch(field string, first, part Tensor) *FieldError {
	switch {
	case len(part.Shape) == 0:
		return &FieldError{Field: field + ".shape", Problem: "rank 0 has no dimension 0 to batch along"}
	case part.Name != first.Name:
		return &FieldError{Field: field + ".name", Problem: fmt.Sprintf("%q differs from %q of parts[0]", part.Name, first.Name)}
	case part.Datatype != first.Datatype:
		return &FieldError{Field: field + ".datatype", Problem: fmt.Sprintf("%s differs from %s of parts[0]", part.Datatype, first.Datatype)}
	case !CanBatch(first, part):
		return &FieldError{Field: field + ".shape", Problem: fmt.Sprintf("%s differs from %s of parts[0] after dimension 0", FormatShape(part.Shape), FormatShape(first.Shape))}
	}
	return nil
}

// SplitRows cuts t along dimension 0 into consecutive parts of rows[i] rows;
// the counts must add up to dimension 0. The parts share t's Data (each
// capped, so appending to one cannot overwrite the next) and get copies of
// its Parameters.
func SplitRows(t Tensor, rows []int64) ([]Tensor, error) {
	kind, fieldErr := t.validate("tensor")
	if fieldErr != nil {
		return nil, fieldErr
	}
	if len(t.Shape) == 0 {
		return nil, &FieldError{Field: "tensor.shape", Problem: "rank 0 has no dimension 0 to split"}
	}
	var sum int64
	for i, count := range rows {
		if count < 0 {
			return nil, &FieldError{Field: fmt.Sprintf("rows[%d]", i), Problem: fmt.Sprintf("%d is negative", count)}
		}
		if count > t.Shape[0]-sum {
			return nil, &FieldError{Field: "rows", Problem: fmt.Sprintf("add up to more than dimension 0 of %s", FormatShape(t.Shape))}
		}
		sum += count
	}
	if sum != t.Shape[0] {
		return nil, &FieldError{Field: "rows", Problem: fmt.Sprintf("add up to %d, not dimension 0 of %s", sum, FormatShape(t.Shape))}
	}
	rowLength := 0 // elements in one row; every part is empty when dimension 0 is
	if t.Shape[0] > 0 {
		rowLength = t.Len() / int(t.Shape[0])
	}
	lengths := make([]int, len(rows))
	for i, count := range rows {
		lengths[i] = int(count) * rowLength
	}
	data := kind.split(t.Data, lengths)
	parts := make([]Tensor, len(rows))
	for i, count := range rows {
		parts[i] = Tensor{
			Name:       t.Name,
			Shape:      append([]int64{count}, t.Shape[1:]...),
			Datatype:   t.Datatype,
			Parameters: maps.Clone(t.Parameters),
			Data:       data[i],
		}
	}
	return parts, nil
}

func (k *typedKind[T]) concat(parts []Tensor) any {
	total := 0
	for _, part := range parts {
		total += len(part.Data.([]T))
	}
	joined := make([]T, 0, total)
	for _, part := range parts {
		joined = append(joined, part.Data.([]T)...)
	}
	return joined
}

func (k *typedKind[T]) split(data any, lengths []int) []any {
	values := data.([]T)
	pieces := make([]any, len(lengths))
	at := 0
	for i, length := range lengths {
		pieces[i] = values[at : at+length : at+length]
		at += length
	}
	return pieces
}

// RowWriter writes the rows of one tensor as JSON, one row at a time: row i
// is the elements under index i of the first dimension. It is how a client
// turns a batched answer into one line per input row without splitting it.
type RowWriter struct {
	name  string
	kind  elementKind
	data  any
	rows  int
	width int  // elements a row
	bare  bool // rank 1: a row is one element, written without brackets
}

// NewRowWriter checks t, which must have rank 1 or more, and returns its writer.
func NewRowWriter(t Tensor) (*RowWriter, error) {
	kind, fieldErr := t.validate("")
	if fieldErr != nil {
		return nil, fieldErr.under(fmt.Sprintf("tensor %q: ", t.Name))
	}
	if len(t.Shape) == 0 {
		return nil, &FieldError{Field: "shape", Problem: fmt.Sprintf("tensor %q is a scalar: it has no rows", t.Name)}
	}
	length, _ := kind.length(t.Data)
	w := &RowWriter{name: t.Name, kind: kind, data: t.Data, rows: int(t.Shape[0]), bare: len(t.Shape) == 1}
	if w.rows > 0 {
		w.width = length / w.rows
	}
	return w, nil
}

// Rows is the length of the tensor's first dimension.
func (w *RowWriter) Rows() int { return w.rows }

// AppendRow writes row i (0 ≤ i < Rows) as a flat JSON array of its
// elements, or as the element alone when the tensor has rank 1; NaN and
// infinities as the strings "NaN", "Infinity" and "-Infinity".
func (w *RowWriter) AppendRow(dst []byte, i int) ([]byte, error) {
	if i < 0 || i >= w.rows {
		return dst, fmt.Errorf("tensor %q has %d rows, no row %d", w.name, w.rows, i)
	}
	return w.kind.appendElements(dst, w.data, i*w.width, (i+1)*w.width, w.bare), nil
}
