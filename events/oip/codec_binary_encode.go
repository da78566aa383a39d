package oip

import (
	"maps"
	"slices"
)

// AppendInferenceResponseBinary appends r to dst in the binary tensor data
// extension: a JSON inference header as AppendInferenceResponse writes it,
// except that each output for which binaryOutputs(name) is true carries
// parameters.binary_data_size (with its other parameters) instead of data,
// followed by the binary data of those outputs in the order of outputs,
// laid out as DecodeInferenceRequestBinary reads it.
//
// headerLength is the length of the JSON inference header at the start of
// what was appended: the value of the Inference-Header-Content-Length HTTP
// header, with Content-Type application/octet-stream. It is 0 when no output
// is written in binary (binaryOutputs is nil or false for every output): the
// body is then plain JSON, exactly what AppendInferenceResponse writes. Errors
// are *FieldError naming the output, and dst comes back as it was.
func AppendInferenceResponseBinary(dst []byte, r *InferenceResponse, binaryOutputs func(name string) bool) (body []byte, headerLength int, err error) {
	start := len(dst)
	if dst, err = appendResponseHead(dst, r); err != nil {
		return dst[:start], 0, err
	}
	dst, headerLength, err = appendTensorsBinary(dst, start, "outputs", r.Outputs, binaryOutputs, "}")
	if err != nil {
		return dst[:start], 0, err
	}
	return dst, headerLength, nil
}

// AppendInferenceRequestBinary appends r to dst in the binary tensor data
// extension, as AppendInferenceResponseBinary does for a response: each
// input for which binaryInputs(name) is true carries
// parameters.binary_data_size instead of data, and its elements follow the
// JSON inference header, which is headerLength bytes long (0 when no input
// is written in binary: the body is then what AppendInferenceRequest
// writes). DecodeInferenceRequestBinary reads it back.
func AppendInferenceRequestBinary(dst []byte, r *InferenceRequest, binaryInputs func(name string) bool) (body []byte, headerLength int, err error) {
	if r == nil {
		return dst, 0, &FieldError{Field: "request", Problem: "nil"}
	}
	start := len(dst)
	if dst, err = appendRequestHead(dst, r); err != nil {
		return dst[:start], 0, err
	}
	tail := "}"
	if len(r.Outputs) > 0 {
		var outputs []byte
		if outputs, err = appendRequestedOutputs(nil, r.Outputs); err != nil {
			return dst[:start], 0, err
		}
		tail = string(outputs) + "}"
	}
	dst, headerLength, err = appendTensorsBinary(dst, start, "inputs", r.Inputs, binaryInputs, tail)
	if err != nil {
		return dst[:start], 0, err
	}
	return dst, headerLength, nil
}

// appendTensorsBinary writes the list of tensors, those binary(name) names
// without data, then closing, which ends the JSON header, then the binary
// data; the body began at start. It returns the header's length, 0 when no
// tensor went in binary.
func appendTensorsBinary(dst []byte, start int, list string, tensors []Tensor, binary func(name string) bool, closing string) ([]byte, int, error) {
	kinds := make([]binaryKind, len(tensors)) // nil for a tensor written as JSON
	size := 0                                 // of the binary data
	dst = append(dst, '[')
	for i, t := range tensors {
		if i > 0 {
			dst = append(dst, ',')
		}
		path := fieldPath{list: list, index: i}
		var err error
		if binary == nil || !binary(t.Name) {
			dst, err = appendTensor(dst, path, t)
		} else {
			var n int
			dst, kinds[i], n, err = appendBinaryTensorHead(dst, path, t)
			size += n
		}
		if err != nil {
			return dst, 0, err
		}
	}
	dst = append(append(dst, ']'), closing...)
	headerEnd := len(dst)
	dst = slices.Grow(dst, size)
	for i, kind := range kinds {
		if kind != nil {
			dst = kind.appendBinary(dst, tensors[i].Data)
		}
	}
	if !hasBinary(kinds) {
		return dst, 0, nil
	}
	return dst, headerEnd - start, nil
}

// appendBinaryTensorHead validates t and writes it without data, with
// binary_data_size among its parameters; it returns the binaryKind that
// writes its data and that size.
func appendBinaryTensorHead(dst []byte, path fieldPath, t Tensor) ([]byte, binaryKind, int, error) {
	if _, fieldErr := t.validate(""); fieldErr != nil {
		return dst, nil, 0, fieldErr.under(path.String() + ".")
	}
	kind := binaryKindOf(t.Datatype)
	size, fieldErr := kind.byteSize(t.Data, path)
	if fieldErr != nil {
		return dst, nil, 0, fieldErr
	}
	parameters := make(map[string]any, len(t.Parameters)+1)
	maps.Copy(parameters, t.Parameters)
	parameters[paramBinaryDataSize] = size
	dst, err := appendTensorHead(dst, path, t, parameters)
	if err != nil {
		return dst, nil, 0, err
	}
	return append(dst, '}'), kind, int(size), nil
}

func hasBinary(kinds []binaryKind) bool {
	for _, kind := range kinds {
		if kind != nil {
			return true
		}
	}
	return false
}
