package oip

import (
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecodeInferenceRequestErrors(t *testing.T) {
	input := func(datatype, shape, data string) string { return string(requestBody(datatype, shape, data)) }
	tests := []struct {
		name    string
		body    string
		field   string
		problem string
	}{
		// The body as a whole.
		{"empty body", ``, "body", "invalid JSON at offset 0: unexpected end of body"},
		{"not an object", `[1]`, "body", "want a JSON object, got array"},
		{"malformed", `{"inputs": [}`, "body", `invalid JSON at offset 12: unexpected '}', want a value`},
		{"trailing comma", `{"inputs":[],}`, "body", `invalid JSON at offset 13: unexpected '}', want a string key`},
		{"trailing data", `{"inputs":[]} x`, "body", "invalid JSON at offset 14: data after the end"},
		{"bad escape", `{"id":"a\q"}`, "body", "invalid JSON at offset 8: invalid escape"},
		{"control character", "{\"id\":\"a\nb\"}", "body", "control character in string"},
		{"unterminated string", `{"id":"abc`, "body", "unterminated string"},
		{"bad number", `{"x":1.}`, "body", "want a digit after '.'"},
		{"deep nesting", `{"x":` + strings.Repeat("[", 10000), "body", "nested more than 512 deep"},
		{"missing inputs", `{"id":"r"}`, "inputs", "missing"},
		{"inputs not an array", `{"inputs":{}}`, "inputs", "want an array of tensors, got object"},
		{"id not a string", `{"id":5,"inputs":[]}`, "id", "want a string, got number"},
		{"parameters not an object", `{"parameters":[1],"inputs":[]}`, "parameters", "want an object, got array"},
		{"parameters out of range", `{"parameters":{"a":1e999},"inputs":[]}`, "parameters", "cannot unmarshal"},
		{"member twice", `{"inputs":[],"inputs":[]}`, "inputs", "appears twice"},
		{"requested output without name", `{"inputs":[],"outputs":[{"parameters":{}}]}`, "outputs[0].name", "missing"},
		// The members of a tensor.
		{"tensor not an object", `{"inputs":[1]}`, "inputs[0]", "want a tensor object, got number"},
		{"missing name", `{"inputs":[{"datatype":"FP32","shape":[1],"data":[1]}]}`, "inputs[0].name", "missing"},
		{"empty name", `{"inputs":[{"name":"","datatype":"FP32","shape":[1],"data":[1]}]}`, "inputs[0].name", "empty"},
		{"missing datatype", `{"inputs":[{"name":"x","shape":[1],"data":[1]}]}`, "inputs[0].datatype", "missing"},
		{"missing shape", `{"inputs":[{"name":"x","datatype":"FP32","data":[1]}]}`, "inputs[0].shape", "missing"},
		{"missing data", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1]}]}`, "inputs[0].data", "missing"},
		{"member of tensor twice", `{"inputs":[{"name":"x","name":"y"}]}`, "inputs[0].name", "appears twice"},
		{"duplicate tensor name", `{"inputs":[` + tensorJSON("x") + `,` + tensorJSON("x") + `]}`, "inputs[1].name", `"x" is also the name of inputs[0]`},
		{"unknown datatype", input("FLOAT32", "[1]", "[1]"), "inputs[0].datatype",
			`unknown "FLOAT32" (want one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES)`},
		{"unknown datatype, data first", `{"inputs":[{"data":[1],"name":"x","datatype":"fp32","shape":[1]}]}`, "inputs[0].datatype", `unknown "fp32"`},
		{"negative dimension", input("FP32", "[2,-3]", "[1]"), "inputs[0].shape[1]", "-3 is negative"},
		{"fractional dimension", input("FP32", "[2.5]", "[1]"), "inputs[0].shape[0]", "2.5 is not an int64"},
		{"huge dimension", input("FP32", "[99999999999999999999]", "[1]"), "inputs[0].shape[0]", "99999999999999999999 is not an int64"},
		{"shape of strings", input("FP32", `["2"]`, "[1]"), "inputs[0].shape", "want an array of integers, got string"},
		{"shape overflows", input("FP32", "[4294967296,4294967296]", "[1]"), "inputs[0].shape", "product of [4294967296,4294967296] overflows int64"},
		{"data not an array", input("FP32", "[1]", `{"a":1}`), "inputs[0].data", "want an array, got object"},
		// Shape against data.
		{"too few elements", `{"inputs":[` + tensorJSON("a") + `,{"name":"b","datatype":"INT8","shape":[2,4],"data":[1,2,3,4,5,6]}]}`, "inputs[1].shape", "product 8 does not match 6 data elements"},
		{"too many elements", input("INT8", "[2]", "[1,2,3]"), "inputs[0].shape", "product 2 does not match 3 data elements"},
		{"nested row too short", input("INT8", "[2,3]", "[[1,2,3],[4,5]]"), "inputs[0].data[1]", "holds 2 elements, but dimension 1 of shape [2,3] is 3"},
		{"nested row too long", input("INT8", "[2,3]", "[[1,2,3,4],[4,5,6]]"), "inputs[0].data[0]", "holds more than 3 elements"},
		{"nested too many rows", input("INT8", "[1,2]", "[[1,2],[3,4]]"), "inputs[0].data", "holds more than 1 elements, but dimension 0"},
		{"nested mixed", input("INT8", "[2,2]", "[[1,2],3,4]"), "inputs[0].data[1]", "want an array for dimension 1 of shape [2,2], got number"},
		{"nested too deep", input("INT8", "[1,2]", "[[[1],[2]]]"), "inputs[0].data[0][0]", "want a number for INT8, got array"},
		{"flat data for rank 1 holds an array", input("INT8", "[2]", "[[1],[2]]"), "inputs[0].data[0]", "want a number for INT8, got array"},
		// Elements.
		{"FP32 overflow", input("FP32", "[6]", "[0,1,2,3,4,1e39]"), "inputs[0].data[5]", "1e39 overflows FP32"},
		{"FP16 overflow", input("FP16", "[2]", "[1,70000]"), "inputs[0].data[1]", "70000 overflows FP16"},
		{"FP64 overflow", input("FP64", "[1]", "[-1e309]"), "inputs[0].data[0]", "-1e309 overflows FP64"},
		{"INT8 out of range", input("INT8", "[1]", "[128]"), "inputs[0].data[0]", "128 is out of range for INT8"},
		{"UINT8 negative", input("UINT8", "[2]", "[1,-1]"), "inputs[0].data[1]", "-1 is out of range for UINT8"},
		{"UINT64 out of range", input("UINT64", "[1]", "[18446744073709551616]"), "inputs[0].data[0]", "out of range for UINT64"},
		{"INT32 fraction", input("INT32", "[2,2]", "[[1,2],[3,1.5]]"), "inputs[0].data[1][1]", "1.5 is not an integer, as INT32 needs"},
		{"INT64 exponent", input("INT64", "[1]", "[1e3]"), "inputs[0].data[0]", "1e3 is not an integer"},
		{"long number shown short", input("INT8", "[1]", "[1"+strings.Repeat("0", 50)+"]"), "inputs[0].data[0]", "10000000000000000000000000000000… is out of range"},
		{"string for FP32", input("FP32", "[2]", `[1,"2"]`), "inputs[0].data[1]", "want a number for FP32, got string"},
		{"null element", input("FP32", "[1]", `[null]`), "inputs[0].data[0]", "want a number for FP32, got null"},
		{"number for BOOL", input("BOOL", "[1]", `[1]`), "inputs[0].data[0]", "want true or false for BOOL, got number"},
		{"number for BYTES", input("BYTES", "[1]", `[1]`), "inputs[0].data[0]", "want a string for BYTES, got number"},
		{"malformed element", input("FP32", "[2]", `[1,x]`), "body", "unexpected 'x', want a value"},
		{"missing comma", input("FP32", "[2]", `[1 2]`), "body", "want ',' or ']' after an array element"},
		{"bad literal", input("BOOL", "[1]", `[tru]`), "body", "want true"},
		// Limits.
		{"too many elements", input("FP32", "[1000000000000]", "[1]"), "inputs[0].shape", "[1000000000000] holds 1000000000000 elements, more than the limit of 16777216"},
		{"too many elements, data first", `{"inputs":[{"data":[1],"name":"x","datatype":"FP32","shape":[1000000000000]}]}`, "inputs[0].shape", "more than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeInferenceRequest([]byte(tt.body), DefaultLimits())
			require.Nil(t, req)
			requireFieldError(t, err, tt.field, tt.problem)
		})
	}
}

// tensorJSON returns a valid one-element FP32 tensor named name.
func tensorJSON(name string) string {
	return `{"name":"` + name + `","datatype":"FP32","shape":[1],"data":[1]}`
}

func TestDecodeErrorText(t *testing.T) {
	_, err := DecodeInferenceRequest(requestBody("FP32", "[6]", "[0,1,2,3,4,1e39]"), DefaultLimits())
	require.EqualError(t, err, "inputs[0].data[5]: 1e39 overflows FP32")
	var fieldErr *FieldError
	require.True(t, errors.As(err, &fieldErr))
}

func TestDecodeInferenceResponseErrors(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		field   string
		problem string
	}{
		{"missing model name", `{"outputs":[]}`, "model_name", "missing"},
		{"missing outputs", `{"model_name":"m"}`, "outputs", "missing"},
		{"model version not a string", `{"model_name":"m","model_version":1,"outputs":[]}`, "model_version", "want a string, got number"},
		{"bad output", `{"model_name":"m","outputs":[{"name":"y","datatype":"INT16","shape":[1],"data":[40000]}]}`, "outputs[0].data[0]", "40000 is out of range for INT16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := DecodeInferenceResponse([]byte(tt.body), DefaultLimits())
			require.Nil(t, resp)
			requireFieldError(t, err, tt.field, tt.problem)
		})
	}
}

func TestDecodeEnforcesLimits(t *testing.T) {
	limits := Limits{MaxElements: 4, MaxTensors: 2}
	_, err := DecodeInferenceRequest(requestBody("FP32", "[5]", "[1,2,3,4,5]"), limits)
	requireFieldError(t, err, "inputs[0].shape", "[5] holds 5 elements, more than the limit of 4")

	_, err = DecodeInferenceRequest(requestBody("FP32", "[4]", "[1,2,3,4]"), limits)
	require.NoError(t, err)

	three := `{"inputs":[` + tensorJSON("a") + "," + tensorJSON("b") + "," + tensorJSON("c") + `]}`
	_, err = DecodeInferenceRequest([]byte(three), limits)
	requireFieldError(t, err, "inputs", "more than the limit of 2 tensors")

	outputs := `{"inputs":[` + tensorJSON("a") + `],"outputs":[{"name":"a"},{"name":"b"},{"name":"c"}]}`
	_, err = DecodeInferenceRequest([]byte(outputs), limits)
	requireFieldError(t, err, "outputs", "more than the limit of 2 requested outputs")
}

// TestDecodeDoesNotAllocateForClaimedShape checks that a tiny body claiming a
// huge shape costs no more memory than the body could fill, even when the
// element limit would allow the shape.
func TestDecodeDoesNotAllocateForClaimedShape(t *testing.T) {
	body := requestBody("FP64", "[1000000000000]", "[1,2]")
	_, err := DecodeInferenceRequest(body, Limits{MaxElements: math.MaxInt64})
	requireFieldError(t, err, "inputs[0].shape", "product 1000000000000 does not match 2 data elements")

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		_, _ = DecodeInferenceRequest(body, Limits{MaxElements: math.MaxInt64})
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10))
}
