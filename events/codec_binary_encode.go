package events

import (
	"maps"
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
// body is then plain JSON, exactly what AppendInferenceResponse writes. An
// output in binary may hold NaN and infinities, which JSON cannot. Errors
// are *FieldError naming the output, and dst comes back as it was.
func AppendInferenceResponseBinary(dst []byte, r *InferenceResponse, binaryOutputs func(name string) bool) (body []byte, headerLength int, err error) {
	start := len(dst)
	if dst, err = appendResponseHead(dst, r); err != nil {
		return dst[:start], 0, err
	}
	binary := make([]binaryKind, len(r.Outputs)) // nil for an output written as JSON
	dst = append(dst, '[')
	for i, t := range r.Outputs {
		if i > 0 {
			dst = append(dst, ',')
		}
		path := fieldPath{list: "outputs", index: i}
		if binaryOutputs == nil || !binaryOutputs(t.Name) {
			dst, err = appendTensor(dst, path, t)
		} else {
			dst, binary[i], err = appendBinaryTensorHead(dst, path, t)
		}
		if err != nil {
			return dst[:start], 0, err
		}
	}
	dst = append(dst, "]}"...)
	headerEnd := len(dst)
	for i, kind := range binary {
		if kind != nil {
			dst = kind.appendBinary(dst, r.Outputs[i].Data)
		}
	}
	if !hasBinary(binary) {
		return dst, 0, nil
	}
	return dst, headerEnd - start, nil
}

// appendBinaryTensorHead validates t and writes it without data, with
// binary_data_size among its parameters; it returns the binaryKind that
// writes its data.
func appendBinaryTensorHead(dst []byte, path fieldPath, t Tensor) ([]byte, binaryKind, error) {
	if _, fieldErr := t.validate(""); fieldErr != nil {
		return dst, nil, fieldErr.under(path.String() + ".")
	}
	kind := binaryKindOf(t.Datatype)
	size, fieldErr := kind.byteSize(t.Data, path)
	if fieldErr != nil {
		return dst, nil, fieldErr
	}
	parameters := make(map[string]any, len(t.Parameters)+1)
	maps.Copy(parameters, t.Parameters)
	parameters[paramBinaryDataSize] = size
	dst, err := appendTensorHead(dst, path, t, parameters)
	if err != nil {
		return dst, nil, err
	}
	return append(dst, '}'), kind, nil
}

func hasBinary(kinds []binaryKind) bool {
	for _, kind := range kinds {
		if kind != nil {
			return true
		}
	}
	return false
}
