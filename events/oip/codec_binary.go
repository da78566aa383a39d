package oip

import (
	"fmt"
	"math"
)

// This file reads infer requests in the binary tensor data extension of the
// Open Inference Protocol v2 REST API (Triton's and KServe's
// extension_binary_data): the body is a JSON inference header followed by the
// raw bytes of the inputs whose parameters carry binary_data_size, in the
// order of inputs. The JSON header is read by the same decoder as a plain
// request; a tensor with binary_data_size takes its bytes from the decoder's
// tail instead of from data (finishBinary). The layout of the elements is in
// codec_binary_data.go; the response side is in codec_binary_encode.go.

// HeaderInferenceHeaderContentLength is the HTTP header that gives the length
// of the JSON inference header when binary tensor data follows it, in a
// request or a response.
const HeaderInferenceHeaderContentLength = "Inference-Header-Content-Length"

// The parameters of the binary tensor data extension.
const (
	// paramBinaryDataSize on an input or output says its data is binary, of
	// this many bytes.
	paramBinaryDataSize = "binary_data_size"
	// paramBinaryData on a requested output asks for it in binary.
	paramBinaryData = "binary_data"
	// paramBinaryDataOutput on a request asks for every output in binary,
	// unless the output's own binary_data says otherwise.
	paramBinaryDataOutput = "binary_data_output"
)

// DecodeInferenceRequestBinary reads an Open Inference Protocol v2 REST infer
// request in the binary tensor data extension: the first headerLength bytes
// of body are the JSON inference header (the value of the
// Inference-Header-Content-Length HTTP header), and the rest is the binary
// data of the inputs that carry parameters.binary_data_size, one after the
// other in the order of inputs. Other inputs carry their data in the JSON, as
// DecodeInferenceRequest reads it; so a request whose header covers the whole
// body is plain JSON.
//
// Binary data is little-endian and row-major; a BOOL is one byte, 0 or 1; a
// BYTES element is a 4-byte little-endian length followed by that many
// bytes, which must be UTF-8 text because Sluice carries BYTES elements as
// JSON strings. Each input's binary_data_size is checked against its shape ×
// the size of its datatype, and its shape against limits, before anything is
// allocated for it; bytes left over after the last binary input are an error.
// The decoded inputs hold their data as if it had come as JSON, and their
// binary_data_size parameter is removed, so AppendInferenceRequest writes
// the same request as plain JSON.
//
// A headerLength of 0, which Triton takes as a raw binary request (the whole
// body as the one input of the model), is refused. Every error is a
// *FieldError, naming e.g. inputs[1].parameters.binary_data_size, or the
// header Inference-Header-Content-Length.
func DecodeInferenceRequestBinary(body []byte, headerLength int64, limits Limits) (*InferenceRequest, error) {
	return decodeBinary(body, headerLength, limits, "inputs", (*decoder).request)
}

// CheckInferenceRequestBinary reads a request as DecodeInferenceRequestBinary
// does, and checks every size, shape and limit the same way, but leaves the
// Data of its binary inputs of fixed-size datatypes nil: the elements are not
// read, so a BOOL byte other than 0 or 1 goes unnoticed. It is for a caller
// that checks a request against a model's signature and passes the body on
// as it came, to a decoder that reads the elements.
func CheckInferenceRequestBinary(body []byte, headerLength int64, limits Limits) (*InferenceRequest, error) {
	return decodeBinary(body, headerLength, limits, "inputs", func(d *decoder) (*InferenceRequest, error) {
		d.tail.headerOnly = true
		return d.request()
	})
}

// DecodeInferenceResponseBinary reads an infer response in the binary
// tensor data extension, as AppendInferenceResponseBinary writes it: the
// first headerLength bytes of body are the JSON inference header, the rest
// the binary data of the outputs that carry parameters.binary_data_size. It
// checks what DecodeInferenceRequestBinary checks.
func DecodeInferenceResponseBinary(body []byte, headerLength int64, limits Limits) (*InferenceResponse, error) {
	return decodeBinary(body, headerLength, limits, "outputs", (*decoder).response)
}

// decodeBinary reads body's JSON inference header with read, the tensors of
// list taking their binary data from the rest, which they must use up.
func decodeBinary[T any](body []byte, headerLength int64, limits Limits, list string, read func(*decoder) (*T, error)) (*T, error) {
	if err := checkHeaderLength(headerLength, len(body)); err != nil {
		return nil, err
	}
	tail := &binaryTail{buf: body[headerLength:]}
	d := decoder{scan: scanner{buf: body[:headerLength]}, limits: limits.withDefaults(), tail: tail}
	r, err := read(&d)
	if err != nil {
		return nil, err
	}
	if err := tail.finished(list); err != nil {
		return nil, err
	}
	return r, nil
}

// finished reports bytes that no tensor of list took as an error.
func (t *binaryTail) finished(list string) error {
	rest := len(t.buf) - t.pos
	if rest == 0 {
		return nil
	}
	return &FieldError{Field: "body", Problem: fmt.Sprintf(
		"%d bytes follow the binary data of the %s: of the %d bytes after the JSON inference header, the %s' binary_data_size account for %d",
		rest, list, len(t.buf), list, t.pos)}
}

// checkHeaderLength checks the value of Inference-Header-Content-Length
// against a body of bodyLength bytes.
func checkHeaderLength(headerLength int64, bodyLength int) *FieldError {
	field := HeaderInferenceHeaderContentLength
	switch {
	case headerLength < 0:
		return &FieldError{Field: field, Problem: fmt.Sprintf("%d is negative; want the length in bytes of the JSON inference header", headerLength)}
	case headerLength == 0:
		return &FieldError{Field: field, Problem: "0 asks for a raw binary request (the whole body as the model's one input), which Sluice does not take; " +
			"send the JSON inference header first and give its length"}
	case headerLength > int64(bodyLength):
		return &FieldError{Field: field, Problem: fmt.Sprintf("%d is beyond the end of the body, which has %d bytes", headerLength, bodyLength)}
	}
	return nil
}

// binaryTail is the binary data after the JSON inference header; pos is the
// offset of the first byte no input has taken yet.
type binaryTail struct {
	buf []byte
	pos int
	// headerOnly leaves the elements of fixed-size datatypes unread
	// (CheckInferenceRequestBinary).
	headerOnly bool
}

// take returns the next size bytes, or a problem when fewer remain.
func (t *binaryTail) take(size int64) ([]byte, string) {
	rest := len(t.buf) - t.pos
	if size > int64(rest) {
		return nil, fmt.Sprintf("says %d bytes, but only %d bytes of binary data are left after the JSON inference header and the binary inputs before this one", size, rest)
	}
	raw := t.buf[t.pos : t.pos+int(size)]
	t.pos += int(size)
	return raw, ""
}

// binary reports whether the tensor's parameters say its data is binary.
func (td *tensorDecoder) binary() bool {
	_, ok := td.tensor.Parameters[paramBinaryDataSize]
	return ok
}

// missing reports that member is missing from the tensor; it says how to
// send binary data when that is what the caller must have meant.
func (td *tensorDecoder) missing(member string) *FieldError {
	problem := "missing"
	if member == "data" && td.binary() {
		problem = "missing; parameters.binary_data_size says the data follows the JSON in binary, " +
			"which needs the HTTP header " + HeaderInferenceHeaderContentLength + " to give the length of the JSON"
	}
	return &FieldError{Field: td.path.with(member).String(), Problem: problem}
}

// finishBinary checks a tensor whose parameters carry binary_data_size and
// reads its data from the decoder's tail: size, shape and limits first, then
// the elements.
func (td *tensorDecoder) finishBinary() (Tensor, error) {
	for _, required := range []string{"name", "datatype", "shape"} {
		if !td.seen.has(required) {
			return Tensor{}, td.missing(required)
		}
	}
	if td.tensor.Name == "" {
		return Tensor{}, &FieldError{Field: td.path.with("name").String(), Problem: "empty"}
	}
	sizeField := td.path.with("parameters").String() + "." + paramBinaryDataSize
	if td.seen.has("data") {
		return Tensor{}, &FieldError{Field: sizeField, Problem: "given with data: an input's elements come either in data or in binary after the JSON, not both"}
	}
	size, problem := byteCount(td.tensor.Parameters[paramBinaryDataSize])
	if problem != "" {
		return Tensor{}, &FieldError{Field: sizeField, Problem: problem}
	}
	kind := binaryKindOf(td.tensor.Datatype)
	if kind == nil {
		return Tensor{}, unknownDatatype(td.path.with("datatype").String(), td.tensor.Datatype)
	}
	elements, fieldErr := shapeElements(td.tensor.Shape, td.d.limits.MaxElements)
	if fieldErr != nil {
		return Tensor{}, fieldErr.under(td.path.with("shape").String())
	}
	if problem := kind.checkSize(size, td.tensor.Shape, elements, td.tensor.Datatype); problem != "" {
		return Tensor{}, &FieldError{Field: sizeField, Problem: problem}
	}
	raw, problem := td.d.tail.take(size)
	if problem != "" {
		return Tensor{}, &FieldError{Field: sizeField, Problem: problem}
	}
	if !td.d.tail.headerOnly || kind.elementSize() == 0 {
		data, err := kind.decode(raw, elements, td.path)
		if err != nil {
			return Tensor{}, err
		}
		td.tensor.Data = data
	}
	delete(td.tensor.Parameters, paramBinaryDataSize)
	if len(td.tensor.Parameters) == 0 {
		td.tensor.Parameters = nil
	}
	return td.tensor, nil
}

// byteCount reads the value of binary_data_size, which encoding/json has
// decoded as a float64.
func byteCount(value any) (int64, string) {
	number, ok := value.(float64)
	if !ok {
		return 0, fmt.Sprintf("want a number of bytes, got %s", jsonType(value))
	}
	if number < 0 || number != math.Trunc(number) || number >= math.MaxInt64 {
		return 0, fmt.Sprintf("want a non-negative integer number of bytes, got %v", number)
	}
	return int64(number), ""
}

// jsonType names the JSON type of a value decoded by encoding/json.
func jsonType(value any) string {
	switch value.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "number"
}

// BinaryOutputs reports which outputs r asks to get back in binary, by the
// rules of the binary tensor data extension: a requested output's
// parameters.binary_data when it has one, otherwise the request's
// parameters.binary_data_output. It returns nil when no output is asked for
// in binary, so the answer is plain JSON. A parameter that is not a boolean
// is a *FieldError.
func (r *InferenceRequest) BinaryOutputs() (func(name string) bool, error) {
	all, err := boolParameter(r.Parameters, "parameters", paramBinaryDataOutput)
	if err != nil {
		return nil, err
	}
	asked := all
	var explicit map[string]bool // made only when an output says
	for i, output := range r.Outputs {
		field := fmt.Sprintf("outputs[%d].parameters", i)
		if _, ok := output.Parameters[paramBinaryData]; !ok {
			continue
		}
		binary, err := boolParameter(output.Parameters, field, paramBinaryData)
		if err != nil {
			return nil, err
		}
		if explicit == nil {
			explicit = map[string]bool{}
		}
		explicit[output.Name] = binary
		asked = asked || binary
	}
	if !asked {
		return nil, nil
	}
	return func(name string) bool {
		if binary, ok := explicit[name]; ok {
			return binary
		}
		return all
	}, nil
}

// boolParameter reads parameters[name], false when it is absent.
func boolParameter(parameters map[string]any, field, name string) (bool, error) {
	value, ok := parameters[name]
	if !ok {
		return false, nil
	}
	b, ok := value.(bool)
	if !ok {
		return false, &FieldError{Field: field + "." + name, Problem: fmt.Sprintf("want true or false, got %s", jsonType(value))}
	}
	return b, nil
}
