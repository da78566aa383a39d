package oip

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/x448/float16"
)

// AppendInferenceResponse appends r to dst as an Open Inference Protocol v2
// REST infer response, with every tensor's data flat, and returns the
// extended buffer. It validates each output first; a tensor that is not
// well-formed fails with a *FieldError naming it, and dst comes back as it
// was. A NaN or an infinity, which JSON numbers cannot hold, is written as
// the string "NaN", "Infinity" or "-Infinity", as the protobuf JSON mapping
// does, and read back so. Parameters are written with encoding/json.
func AppendInferenceResponse(dst []byte, r *InferenceResponse) ([]byte, error) {
	start := len(dst)
	dst, err := appendResponseHead(dst, r)
	if err != nil {
		return dst[:start], err
	}
	if dst, err = appendTensors(dst, "outputs", r.Outputs); err != nil {
		return dst[:start], err
	}
	return append(dst, '}'), nil
}

// appendResponseHead writes r up to and including `"outputs":`. On error
// the caller cuts dst back.
func appendResponseHead(dst []byte, r *InferenceResponse) ([]byte, error) {
	if r == nil {
		return dst, &FieldError{Field: "response", Problem: "nil"}
	}
	dst = append(dst, `{"model_name":`...)
	dst = AppendString(dst, r.ModelName)
	if r.ModelVersion != "" {
		dst = append(dst, `,"model_version":`...)
		dst = AppendString(dst, r.ModelVersion)
	}
	if r.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = AppendString(dst, r.ID)
	}
	if r.Parameters != nil {
		var err error
		dst = append(dst, `,"parameters":`...)
		if dst, err = appendParameters(dst, fieldPath{list: "parameters", index: -1}, r.Parameters); err != nil {
			return dst, err
		}
	}
	return append(dst, `,"outputs":`...), nil
}

// AppendInferenceRequest appends r to dst as an Open Inference Protocol v2
// REST infer request, as AppendInferenceResponse does for a response.
func AppendInferenceRequest(dst []byte, r *InferenceRequest) ([]byte, error) {
	if r == nil {
		return dst, &FieldError{Field: "request", Problem: "nil"}
	}
	start := len(dst)
	dst, err := appendRequestHead(dst, r)
	if err != nil {
		return dst[:start], err
	}
	if dst, err = appendTensors(dst, "inputs", r.Inputs); err != nil {
		return dst[:start], err
	}
	if dst, err = appendRequestedOutputs(dst, r.Outputs); err != nil {
		return dst[:start], err
	}
	return append(dst, '}'), nil
}

// appendRequestHead writes r up to and including `"inputs":`. On error the
// caller cuts dst back.
func appendRequestHead(dst []byte, r *InferenceRequest) ([]byte, error) {
	dst = append(dst, '{')
	if r.ID != "" {
		dst = append(dst, `"id":`...)
		dst = AppendString(dst, r.ID)
		dst = append(dst, ',')
	}
	if r.Parameters != nil {
		var err error
		dst = append(dst, `"parameters":`...)
		if dst, err = appendParameters(dst, fieldPath{list: "parameters", index: -1}, r.Parameters); err != nil {
			return dst, err
		}
		dst = append(dst, ',')
	}
	return append(dst, `"inputs":`...), nil
}

// appendRequestedOutputs writes `,"outputs":[…]`, or nothing when there are none.
func appendRequestedOutputs(dst []byte, outputs []RequestedOutput) ([]byte, error) {
	if len(outputs) == 0 {
		return dst, nil
	}
	dst = append(dst, `,"outputs":[`...)
	for i, output := range outputs {
		var err error
		if dst, err = appendRequestedOutput(dst, fieldPath{list: "outputs", index: i}, output); err != nil {
			return dst, err
		}
	}
	dst[len(dst)-1] = ']' // the last element's ','
	return dst, nil
}

// appendRequestedOutput writes output followed by a ','.
func appendRequestedOutput(dst []byte, path fieldPath, output RequestedOutput) ([]byte, error) {
	if output.Name == "" {
		return dst, &FieldError{Field: path.with("name").String(), Problem: "empty"}
	}
	dst = append(dst, `{"name":`...)
	dst = AppendString(dst, output.Name)
	if output.Parameters != nil {
		var err error
		dst = append(dst, `,"parameters":`...)
		if dst, err = appendParameters(dst, path.with("parameters"), output.Parameters); err != nil {
			return dst, err
		}
	}
	return append(dst, "},"...), nil
}

func appendTensors(dst []byte, list string, tensors []Tensor) ([]byte, error) {
	dst = append(dst, '[')
	for i, t := range tensors {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendTensor(dst, fieldPath{list: list, index: i}, t); err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

// appendTensor validates t and writes it, naming it path in errors.
func appendTensor(dst []byte, path fieldPath, t Tensor) ([]byte, error) {
	kind, fieldErr := t.validate("")
	if fieldErr != nil {
		return dst, fieldErr.under(path.String() + ".")
	}
	dst, err := appendTensorHead(dst, path, t, t.Parameters)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `,"data":`...)
	return append(kind.appendData(dst, t.Data), '}'), nil
}

// appendTensorHead writes the members of t but its data, with parameters for
// its parameters, leaving the object open.
func appendTensorHead(dst []byte, path fieldPath, t Tensor, parameters map[string]any) ([]byte, error) {
	dst = append(dst, `{"name":`...)
	dst = AppendString(dst, t.Name)
	dst = append(dst, `,"shape":[`...)
	for i, dim := range t.Shape {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, dim, 10)
	}
	dst = append(dst, `],"datatype":"`...)
	dst = append(dst, t.Datatype...)
	dst = append(dst, '"')
	if parameters != nil {
		var err error
		dst = append(dst, `,"parameters":`...)
		if dst, err = appendParameters(dst, path.with("parameters"), parameters); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

func appendParameters(dst []byte, field fieldPath, parameters map[string]any) ([]byte, error) {
	encoded, err := json.Marshal(parameters)
	if err != nil {
		return dst, &FieldError{Field: field.String(), Problem: err.Error()}
	}
	return append(dst, encoded...), nil
}

// appendData writes data, which validate has checked is a []T, as a flat
// JSON array.
func (k *typedKind[T]) appendData(dst []byte, data any) []byte {
	return k.appendValues(dst, data.([]T), false)
}

func (k *typedKind[T]) appendElements(dst []byte, data any, from, to int, bare bool) []byte {
	return k.appendValues(dst, data.([]T)[from:to], bare)
}

// appendValues writes values as a JSON array, or its one value alone when bare.
func (k *typedKind[T]) appendValues(dst []byte, values []T, bare bool) []byte {
	if !bare {
		dst = append(dst, '[')
	}
	for i, v := range values {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = k.appendElement(dst, v)
	}
	if !bare {
		dst = append(dst, ']')
	}
	return dst
}

func appendBool(dst []byte, v bool) []byte {
	return strconv.AppendBool(dst, v)
}

func appendSigned[T int8 | int16 | int32 | int64](dst []byte, v T) []byte {
	return strconv.AppendInt(dst, int64(v), 10)
}

func appendUnsigned[T uint8 | uint16 | uint32 | uint64](dst []byte, v T) []byte {
	return strconv.AppendUint(dst, uint64(v), 10)
}

// appendFP16 writes the shortest decimal that reads back as the same FP32,
// and so as the same FP16; NaN and infinities as appendNonFinite does.
func appendFP16(dst []byte, v float16.Float16) []byte {
	if !v.IsFinite() {
		return appendNonFinite(dst, float64(v.Float32()))
	}
	return strconv.AppendFloat(dst, float64(v.Float32()), 'g', -1, 32)
}

func appendFP32(dst []byte, v float32) []byte {
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		return appendNonFinite(dst, float64(v))
	}
	return strconv.AppendFloat(dst, float64(v), 'g', -1, 32)
}

func appendFP64(dst []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return appendNonFinite(dst, v)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}

// appendNonFinite writes a NaN or an infinity, which JSON numbers cannot
// hold, as the strings of the protobuf JSON mapping: "NaN", "Infinity",
// "-Infinity". The decoder reads them back (nonFinite).
func appendNonFinite(dst []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, `"NaN"`...)
	case v > 0:
		return append(dst, `"Infinity"`...)
	}
	return append(dst, `"-Infinity"`...)
}

func appendBytes(dst []byte, v string) []byte {
	return AppendString(dst, v)
}

const hexDigits = "0123456789abcdef"

// AppendString writes s as a JSON string. Like encoding/json it writes
// invalid UTF-8 as U+FFFD and escapes U+2028 and U+2029; unlike it, it leaves
// <, > and & alone.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			dst = appendEscape(dst, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			start = i + size
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendEscape writes the escape of ASCII byte c.
func appendEscape(dst []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(dst, '\\', c)
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}

// AppendTensorData writes the data of t as a flat JSON array: what the
// "data" member of a tensor holds.
func AppendTensorData(dst []byte, t Tensor) ([]byte, error) {
	kind, fieldErr := t.validate("")
	if fieldErr != nil {
		return dst, fieldErr
	}
	return kind.appendData(dst, t.Data), nil
}
