package oip

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"
)

// binaryRequest returns a body of the binary tensor data extension, the JSON
// header followed by tail, and the length of the header.
func binaryRequest(header string, tail ...[]byte) ([]byte, int64) {
	return append([]byte(header), bytes.Join(tail, nil)...), int64(len(header))
}

// le lays values out as the extension does: little-endian, BOOL as one byte.
func le(values any) []byte {
	out, err := binary.Append(nil, binary.LittleEndian, values)
	if err != nil {
		panic(err)
	}
	return out
}

// strs lays BYTES elements out: each a 4-byte little-endian length, then the bytes.
func strs(elements ...string) []byte {
	var out []byte
	for _, e := range elements {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(e)))
		out = append(out, e...)
	}
	return out
}

// binaryInput is the JSON of input x of datatype and shape, whose size bytes follow the header.
func binaryInput(name, datatype, shape string, size int) string {
	return fmt.Sprintf(`{"name":%q,"shape":%s,"datatype":%q,"parameters":{"binary_data_size":%d}}`, name, shape, datatype, size)
}

// decodeResponseBinary reads a body written by AppendInferenceResponseBinary
// back, as a client of the extension does.
func decodeResponseBinary(t *testing.T, body []byte, headerLength int) *InferenceResponse {
	t.Helper()
	r, err := DecodeInferenceResponseBinary(body, int64(headerLength), Limits{MaxElements: math.MaxInt64})
	require.NoError(t, err, "header: %s", body[:headerLength])
	return r
}

func allOutputs(string) bool { return true }

func TestBinaryEveryDatatypeRoundTrips(t *testing.T) {
	tests := []struct {
		name     string
		datatype Datatype
		shape    string
		raw      []byte
		want     any
	}{
		{"bool", Bool, "[3]", []byte{1, 0, 1}, []bool{true, false, true}},
		{"uint8", Uint8, "[3]", []byte{0, 7, 255}, []uint8{0, 7, 255}},
		{"uint16", Uint16, "[3]", []byte{0, 0, 1, 0, 0xff, 0xff}, []uint16{0, 1, math.MaxUint16}},
		{"uint32", Uint32, "[2,2]", le([]uint32{0, 1, 1 << 31, math.MaxUint32}), []uint32{0, 1, 1 << 31, math.MaxUint32}},
		{"uint64", Uint64, "[3]", le([]uint64{0, 1, math.MaxUint64}), []uint64{0, 1, math.MaxUint64}},
		{"int8", Int8, "[3]", []byte{0x80, 0, 0x7f}, []int8{math.MinInt8, 0, math.MaxInt8}},
		{"int16", Int16, "[3]", le([]int16{math.MinInt16, -1, math.MaxInt16}), []int16{math.MinInt16, -1, math.MaxInt16}},
		{"int32", Int32, "[3]", le([]int32{math.MinInt32, -1, math.MaxInt32}), []int32{math.MinInt32, -1, math.MaxInt32}},
		{"int64", Int64, "[1,3]", le([]int64{math.MinInt64, -1, math.MaxInt64}), []int64{math.MinInt64, -1, math.MaxInt64}},
		{"fp16", FP16, "[4]", []byte{0x00, 0x38, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00}, []float16.Float16{0x3800, 0xc000, 0x7bff, 0x0001}},
		{"fp32", FP32, "[3]", le([]float32{0.1, -1.5e-45, math.MaxFloat32}), []float32{0.1, -1.5e-45, math.MaxFloat32}},
		{"fp64", FP64, "[3]", le([]float64{0.1, 5e-324, -math.MaxFloat64}), []float64{0.1, 5e-324, -math.MaxFloat64}},
		{"bytes", Bytes, "[3]", strs("a", "", "é \"q\"\n"), []string{"a", "", "é \"q\"\n"}},
		{"empty", FP32, "[0,4]", nil, []float32{}},
		{"scalar", Int16, "[]", []byte{0xfe, 0xff}, []int16{-2}},
	}
	require.Zero(t, Datatype("FP8").Size(), "not a datatype")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := `{"inputs":[` + binaryInput("x", string(tt.datatype), tt.shape, len(tt.raw)) + `]}`
			body, headerLength := binaryRequest(header, tt.raw)
			req, err := DecodeInferenceRequestBinary(body, headerLength, DefaultLimits())
			require.NoError(t, err)
			input := req.Inputs[0]
			require.Equal(t, tt.want, input.Data)
			if tt.datatype == Bytes {
				require.Zero(t, tt.datatype.Size(), "BYTES elements vary")
			} else {
				require.Equal(t, len(tt.raw), reflect.ValueOf(tt.want).Len()*tt.datatype.Size(), "Size")
			}
			require.Nil(t, input.Parameters, "binary_data_size is removed once the data is in")
			require.NoError(t, input.Validate("inputs[0]"))
			requireRoundTrip(t, req) // and on as plain JSON

			// The same tensor as a binary output gives the same bytes back.
			resp := &InferenceResponse{ModelName: "m", Outputs: req.Inputs}
			out, outHeader, err := AppendInferenceResponseBinary([]byte("prefix"), resp, allOutputs)
			require.NoError(t, err)
			out = out[len("prefix"):]
			require.Equal(t, len(out)-len(tt.raw), outHeader)
			require.Equal(t, tt.raw, nonNil(out[outHeader:]))
			var jsonHeader struct {
				Outputs []map[string]any `json:"outputs"`
			}
			require.NoError(t, json.Unmarshal(out[:outHeader], &jsonHeader))
			require.Equal(t, map[string]any{"binary_data_size": float64(len(tt.raw))}, jsonHeader.Outputs[0]["parameters"])
			require.NotContains(t, jsonHeader.Outputs[0], "data")
			require.Equal(t, resp, decodeResponseBinary(t, out, outHeader))
		})
	}
}

// nonNil makes an empty slice comparable with a nil one.
func nonNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func TestDecodeBinaryMixesJSONAndBinaryInputs(t *testing.T) {
	header := `{"id":"r-7","parameters":{"binary_data_output":true},"inputs":[` +
		`{"name":"a","shape":[2],"datatype":"FP32","data":[1.5,2]},` +
		`{"name":"b","shape":[2,2],"datatype":"INT32","parameters":{"binary_data_size":16,"unit":"m"}},` +
		`{"name":"c","shape":[1],"datatype":"BYTES","data":["json"]},` +
		binaryInput("d", "BOOL", "[0]", 0) + `,` +
		binaryInput("e", "BYTES", "[2]", 11) +
		`],"outputs":[{"name":"y","parameters":{"binary_data":false}}]}`
	body, headerLength := binaryRequest(header, le([]int32{1, -2, 3, -4}), strs("bin", ""))
	req, err := DecodeInferenceRequestBinary(body, headerLength, DefaultLimits())
	require.NoError(t, err)
	require.Equal(t, &InferenceRequest{
		ID:         "r-7",
		Parameters: map[string]any{"binary_data_output": true},
		Inputs: []Tensor{
			{Name: "a", Shape: []int64{2}, Datatype: FP32, Data: []float32{1.5, 2}},
			{Name: "b", Shape: []int64{2, 2}, Datatype: Int32, Parameters: map[string]any{"unit": "m"}, Data: []int32{1, -2, 3, -4}},
			{Name: "c", Shape: []int64{1}, Datatype: Bytes, Data: []string{"json"}},
			{Name: "d", Shape: []int64{0}, Datatype: Bool, Data: []bool{}},
			{Name: "e", Shape: []int64{2}, Datatype: Bytes, Data: []string{"bin", ""}},
		},
		Outputs: []RequestedOutput{{Name: "y", Parameters: map[string]any{"binary_data": false}}},
	}, req)

	// What the worker gets: the same request, all JSON.
	plain, err := AppendInferenceRequest(nil, req)
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"r-7","parameters":{"binary_data_output":true},"inputs":[`+
		`{"name":"a","shape":[2],"datatype":"FP32","data":[1.5,2]},`+
		`{"name":"b","shape":[2,2],"datatype":"INT32","parameters":{"unit":"m"},"data":[1,-2,3,-4]},`+
		`{"name":"c","shape":[1],"datatype":"BYTES","data":["json"]},`+
		`{"name":"d","shape":[0],"datatype":"BOOL","data":[]},`+
		`{"name":"e","shape":[2],"datatype":"BYTES","data":["bin",""]}],`+
		`"outputs":[{"name":"y","parameters":{"binary_data":false}}]}`, string(plain))
	again, err := DecodeInferenceRequest(plain, DefaultLimits())
	require.NoError(t, err)
	require.Equal(t, req, again)
}

func TestDecodeBinaryHeaderCoveringTheBodyIsPlainJSON(t *testing.T) {
	body := requestBody("FP32", "[2]", "[1,2]")
	want, err := DecodeInferenceRequest(body, DefaultLimits())
	require.NoError(t, err)
	got, err := DecodeInferenceRequestBinary(body, int64(len(body)), DefaultLimits())
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func TestDecodeInferenceRequestBinaryErrors(t *testing.T) {
	fp32 := binaryInput("x", "FP32", "[2,2]", 16)
	one := func(input string) string { return `{"inputs":[` + input + `]}` }
	tests := []struct {
		name    string
		header  string
		tail    []byte
		length  int64 // of the header, when not len(header)
		field   string
		problem string
	}{
		// The header length.
		{"negative header length", one(fp32), make([]byte, 16), -1, "Inference-Header-Content-Length", "-1 is negative"},
		{"zero header length", one(fp32), make([]byte, 16), 0, "Inference-Header-Content-Length", "raw binary request"},
		{"header length beyond the body", one(fp32), make([]byte, 16), 1000, "Inference-Header-Content-Length", "1000 is beyond the end of the body, which has"},
		{"header length cuts the JSON", one(fp32), make([]byte, 16), 20, "body", "invalid JSON at offset 20: unterminated string"},
		{"header length takes binary bytes", one(fp32), []byte("  xxxxxxxxxxxxxx"), int64(len(one(fp32))) + 2, "inputs[0].parameters.binary_data_size", "only 14 bytes of binary data are left"},
		// Sizes against shapes and the body.
		{"size does not match the shape", one(binaryInput("x", "FP32", "[2,2]", 12)), make([]byte, 12), -2, "inputs[0].parameters.binary_data_size",
			"says 12 bytes, but shape [2,2] of FP32 takes 16 bytes (4 elements of 4 bytes)"},
		{"size of a later input", `{"inputs":[` + binaryInput("a", "INT8", "[2]", 2) + `,` + binaryInput("b", "UINT64", "[2]", 15) + `]}`, make([]byte, 17), -2,
			"inputs[1].parameters.binary_data_size", "says 15 bytes, but shape [2] of UINT64 takes 16 bytes"},
		{"body shorter than the sizes", `{"inputs":[` + binaryInput("a", "INT8", "[2]", 2) + `,` + fp32 + `]}`, make([]byte, 10), -2,
			"inputs[1].parameters.binary_data_size", "says 16 bytes, but only 8 bytes of binary data are left"},
		{"trailing bytes", one(fp32), make([]byte, 19), -2, "body", "3 bytes follow the binary data of the inputs: of the 19 bytes after the JSON inference header, the inputs' binary_data_size account for 16"},
		{"bytes after a JSON-only request", string(requestBody("FP32", "[1]", "[1]")), []byte{0}, -2, "body", "1 bytes follow the binary data"},
		{"size not a number", one(`{"name":"x","shape":[1],"datatype":"INT8","parameters":{"binary_data_size":"1"}}`), []byte{1}, -2,
			"inputs[0].parameters.binary_data_size", "want a number of bytes, got string"},
		{"size null", one(`{"name":"x","shape":[1],"datatype":"INT8","parameters":{"binary_data_size":null}}`), []byte{1}, -2,
			"inputs[0].parameters.binary_data_size", "got null"},
		{"size negative", one(binaryInput("x", "INT8", "[1]", -1)), []byte{1}, -2, "inputs[0].parameters.binary_data_size", "want a non-negative integer number of bytes, got -1"},
		{"size fractional", one(`{"name":"x","shape":[1],"datatype":"INT8","parameters":{"binary_data_size":1.5}}`), []byte{1}, -2,
			"inputs[0].parameters.binary_data_size", "got 1.5"},
		{"size huge", one(`{"name":"x","shape":[1],"datatype":"INT8","parameters":{"binary_data_size":1e300}}`), []byte{1}, -2,
			"inputs[0].parameters.binary_data_size", "got 1e+300"},
		{"data and size", one(`{"name":"x","shape":[1],"datatype":"INT8","data":[1],"parameters":{"binary_data_size":1}}`), []byte{1}, -2,
			"inputs[0].parameters.binary_data_size", "given with data"},
		{"data first and size", one(`{"data":[1],"name":"x","shape":[1],"datatype":"INT8","parameters":{"binary_data_size":1}}`), []byte{1}, -2,
			"inputs[0].parameters.binary_data_size", "given with data"},
		// The tensor around the size.
		{"unknown datatype", one(binaryInput("x", "FLOAT", "[1]", 4)), make([]byte, 4), -2, "inputs[0].datatype", `unknown "FLOAT"`},
		{"missing shape", one(`{"name":"x","datatype":"INT8","parameters":{"binary_data_size":1}}`), []byte{1}, -2, "inputs[0].shape", "missing"},
		{"missing name", one(`{"shape":[1],"datatype":"INT8","parameters":{"binary_data_size":1}}`), []byte{1}, -2, "inputs[0].name", "missing"},
		{"empty name", one(binaryInput("", "INT8", "[1]", 1)), []byte{1}, -2, "inputs[0].name", "empty"},
		{"negative dimension", one(binaryInput("x", "INT8", "[-1]", 1)), []byte{1}, -2, "inputs[0].shape[0]", "-1 is negative"},
		{"shape over the limit", one(binaryInput("x", "INT8", "[1000000000000]", 1000000000000)), []byte{1}, -2, "inputs[0].shape", "more than the limit of 16777216"},
		// Elements.
		{"BOOL not 0 or 1", one(binaryInput("x", "BOOL", "[3]", 3)), []byte{1, 2, 0}, -2, "inputs[0].data[1]", "byte 2 is not a BOOL: want 0 for false or 1 for true"},
		{"BYTES length overflows", one(binaryInput("x", "BYTES", "[2]", 12)), append(strs("ab"), 0xff, 0xff, 0xff, 0xff, 'c', 'd'), -2,
			"inputs[0].data[1]", "length 4294967295 runs past the end of the tensor's binary data: 2 bytes are left of binary_data_size 12"},
		{"BYTES length one past", one(binaryInput("x", "BYTES", "[1]", 7)), append(le(uint32(4)), "abc"...), -2, "inputs[0].data[0]", "length 4 runs past the end"},
		{"BYTES length cut", one(binaryInput("x", "BYTES", "[2]", 8)), append(strs("ab"), 0, 0), -2, "inputs[0].data[1]", "its 4-byte length does not fit in the 2 bytes left"},
		{"BYTES size too small for the shape", one(binaryInput("x", "BYTES", "[3]", 8)), make([]byte, 8), -2, "inputs[0].parameters.binary_data_size",
			"says 8 bytes, too few for shape [3] of BYTES: each of its 3 elements takes at least 4 bytes"},
		{"BYTES elements short of the size", one(binaryInput("x", "BYTES", "[1]", 9)), append(strs("abcd"), 0), -2, "inputs[0].parameters.binary_data_size",
			"says 9 bytes, but the 1 BYTES elements take 8"},
		{"BYTES not UTF-8", one(binaryInput("x", "BYTES", "[2]", 12)), strs("ok", "\xff\xfe"), -2, "inputs[0].data[1]", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, headerLength := binaryRequest(tt.header, tt.tail)
			if tt.length != -2 {
				headerLength = tt.length
			}
			req, err := DecodeInferenceRequestBinary(body, headerLength, DefaultLimits())
			require.Nil(t, req)
			requireFieldError(t, err, tt.field, tt.problem)
		})
	}
}

func TestDecodeWithoutTheHeaderExplainsBinaryDataSize(t *testing.T) {
	_, err := DecodeInferenceRequest([]byte(`{"inputs":[`+binaryInput("x", "INT8", "[1]", 1)+`]}`), DefaultLimits())
	requireFieldError(t, err, "inputs[0].data", "missing; parameters.binary_data_size says the data follows the JSON in binary, which needs the HTTP header Inference-Header-Content-Length")
}

// TestDecodeBinaryDoesNotAllocateForClaimedSizes checks that a small body
// whose JSON claims a large tensor, within the element limit, is refused
// before anything is allocated for the tensor.
func TestDecodeBinaryDoesNotAllocateForClaimedSizes(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{"fixed size", binaryInput("x", "FP64", "[1000000]", 8000000)},
		{"BYTES", binaryInput("x", "BYTES", "[1000000]", 4000000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, headerLength := binaryRequest(`{"inputs":[`+tt.input+`]}`, make([]byte, 64))
			_, err := DecodeInferenceRequestBinary(body, headerLength, DefaultLimits())
			requireFieldError(t, err, "inputs[0].parameters.binary_data_size", "only 64 bytes of binary data are left")

			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range 10 {
				_, _ = DecodeInferenceRequestBinary(body, headerLength, DefaultLimits())
			}
			runtime.ReadMemStats(&after)
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10))
		})
	}
}

func TestAppendInferenceResponseBinary(t *testing.T) {
	resp := &InferenceResponse{
		ModelName: "iris", ModelVersion: "1", ID: "r-1",
		Outputs: []Tensor{
			{Name: "probs", Shape: []int64{1, 2}, Datatype: FP32, Data: []float32{0.25, float32(math.NaN())}},
			{Name: "label", Shape: []int64{1}, Datatype: Int64, Data: []int64{2}},
			{Name: "class", Shape: []int64{2}, Datatype: Bytes, Parameters: map[string]any{"lang": "en"}, Data: []string{"virginica", ""}},
			{Name: "none", Shape: []int64{0}, Datatype: FP16, Data: []float16.Float16{}},
		},
	}
	binaryOf := func(names ...string) func(string) bool {
		return func(name string) bool { return slices.Contains(names, name) }
	}
	body, headerLength, err := AppendInferenceResponseBinary([]byte("keep"), resp, binaryOf("probs", "class", "none"))
	require.NoError(t, err)
	header := `{"model_name":"iris","model_version":"1","id":"r-1","outputs":[` +
		`{"name":"probs","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}},` +
		`{"name":"label","shape":[1],"datatype":"INT64","data":[2]},` +
		`{"name":"class","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":17,"lang":"en"}},` +
		`{"name":"none","shape":[0],"datatype":"FP16","parameters":{"binary_data_size":0}}]}`
	require.Equal(t, len(header), headerLength)
	require.Equal(t, "keep"+header, string(body[:len("keep")+headerLength]))
	require.Equal(t, append(le([]float32{0.25, float32(math.NaN())}), strs("virginica", "")...), body[len("keep")+headerLength:])
	require.Nil(t, resp.Outputs[2].Parameters["binary_data_size"], "the response is not changed")

	// No output in binary: plain JSON, as AppendInferenceResponse writes it.
	resp.Outputs[0].Data = []float32{0.25, 0.75}
	plain, err := AppendInferenceResponse(nil, resp)
	require.NoError(t, err)
	for _, binaryOutputs := range []func(string) bool{nil, binaryOf("nothing")} {
		body, headerLength, err := AppendInferenceResponseBinary(nil, resp, binaryOutputs)
		require.NoError(t, err)
		require.Zero(t, headerLength)
		require.Equal(t, string(plain), string(body))
	}

	// An empty binary output still makes the answer binary, with no bytes after the header.
	body, headerLength, err = AppendInferenceResponseBinary(nil, resp, binaryOf("none"))
	require.NoError(t, err)
	require.Equal(t, len(body), headerLength)
	require.Contains(t, string(body), `"parameters":{"binary_data_size":0}`)
}

func TestAppendInferenceResponseBinaryErrors(t *testing.T) {
	tests := []struct {
		name    string
		resp    *InferenceResponse
		field   string
		problem string
	}{
		{"nil", nil, "response", "nil"},
		{"wrong slice in binary", &InferenceResponse{ModelName: "m", Outputs: []Tensor{{Name: "y", Shape: []int64{1}, Datatype: FP32, Data: []float64{1}}}}, "outputs[0].data", "holds []float64, want []float32"},
		{"length in binary", &InferenceResponse{ModelName: "m", Outputs: []Tensor{{Name: "y", Shape: []int64{2}, Datatype: Int8, Data: []int8{1}}}}, "outputs[0].shape", "product 2 does not match 1 data elements"},
		{"bad parameters in binary", &InferenceResponse{ModelName: "m", Outputs: []Tensor{{Name: "y", Shape: []int64{1}, Datatype: Int8, Parameters: map[string]any{"f": func() {}}, Data: []int8{1}}}}, "outputs[0].parameters", "unsupported type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, headerLength, err := AppendInferenceResponseBinary([]byte("keep"), tt.resp, func(name string) bool { return name != "json" })
			requireFieldError(t, err, tt.field, tt.problem)
			require.Equal(t, "keep", string(body))
			require.Zero(t, headerLength)
		})
	}
}

func TestBinaryOutputs(t *testing.T) {
	tests := []struct {
		name string
		body string
		want map[string]bool // nil: no output in binary
	}{
		{"nothing asked", `{"inputs":[],"outputs":[{"name":"a"}]}`, nil},
		{"all", `{"parameters":{"binary_data_output":true},"inputs":[]}`, map[string]bool{"a": true, "b": true}},
		{"all but one", `{"parameters":{"binary_data_output":true},"inputs":[],"outputs":[{"name":"a","parameters":{"binary_data":false}},{"name":"b"}]}`,
			map[string]bool{"a": false, "b": true}},
		{"one", `{"inputs":[],"outputs":[{"name":"a"},{"name":"b","parameters":{"binary_data":true}}]}`, map[string]bool{"a": false, "b": true}},
		{"all asked false", `{"parameters":{"binary_data_output":false},"inputs":[],"outputs":[{"name":"a","parameters":{"binary_data":false}}]}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := decodeWithoutInputs(t, tt.body)
			binaryOutputs, err := req.BinaryOutputs()
			require.NoError(t, err)
			if tt.want == nil {
				require.Nil(t, binaryOutputs)
				return
			}
			require.NotNil(t, binaryOutputs)
			for name, want := range tt.want {
				require.Equal(t, want, binaryOutputs(name), name)
			}
		})
	}

	_, err := decodeWithoutInputs(t, `{"parameters":{"binary_data_output":"yes"},"inputs":[]}`).BinaryOutputs()
	requireFieldError(t, err, "parameters.binary_data_output", "want true or false, got string")
	_, err = decodeWithoutInputs(t, `{"inputs":[],"outputs":[{"name":"a"},{"name":"b","parameters":{"binary_data":1}}]}`).BinaryOutputs()
	requireFieldError(t, err, "outputs[1].parameters.binary_data", "want true or false, got number")
}

// decodeWithoutInputs reads the parameters and outputs of a request body
// with an empty inputs list, which BinaryOutputs alone looks at.
func decodeWithoutInputs(t *testing.T, body string) *InferenceRequest {
	t.Helper()
	var req InferenceRequest
	require.NoError(t, json.Unmarshal([]byte(body), &req))
	return &req
}

// BenchmarkDecodeInferenceRequestBinary decodes a request of 32 rows of 4
// FP32 features, and one of 4,096: a chunk of sluice batch.
func BenchmarkDecodeInferenceRequestBinary(b *testing.B) {
	for _, rows := range []int{32, 4096} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			data := make([]float32, rows*4)
			for i := range data {
				data[i] = float32(i)*0.731 - 40.25
			}
			body, headerLength := binaryRequest(`{"id":"bench","inputs":[`+binaryInput("features", "FP32", fmt.Sprintf("[%d,4]", rows), 4*len(data))+`]}`, le(data))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeInferenceRequestBinary(body, headerLength, DefaultLimits()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestAppendInferenceRequestBinaryRoundTrips(t *testing.T) {
	req := &InferenceRequest{
		ID:         "chunk-7",
		Parameters: map[string]any{"binary_data_output": true},
		Inputs: []Tensor{
			{Name: "x", Shape: []int64{2, 2}, Datatype: FP32, Data: []float32{1, 2.5, -3, 4}},
			{Name: "mask", Shape: []int64{2}, Datatype: Bool, Data: []bool{true, false}},
			{Name: "words", Shape: []int64{1}, Datatype: Bytes, Data: []string{"héllo"}},
		},
		Outputs: []RequestedOutput{{Name: "probabilities", Parameters: map[string]any{"binary_data": false}}, {Name: "label"}},
	}
	body, headerLength, err := AppendInferenceRequestBinary([]byte("keep"), req, func(name string) bool { return name != "mask" })
	require.NoError(t, err)
	body = body[len("keep"):]
	require.Contains(t, string(body[:headerLength]), `{"name":"mask","shape":[2],"datatype":"BOOL","data":[true,false]}`)
	require.Contains(t, string(body[:headerLength]), `"outputs":[{"name":"probabilities","parameters":{"binary_data":false}},{"name":"label"}]}`)
	require.Equal(t, append(le([]float32{1, 2.5, -3, 4}), strs("héllo")...), body[headerLength:])
	back, err := DecodeInferenceRequestBinary(body, int64(headerLength), DefaultLimits())
	require.NoError(t, err)
	require.Equal(t, req, back)

	// No input in binary: plain JSON, as AppendInferenceRequest writes it.
	plain, err := AppendInferenceRequest(nil, req)
	require.NoError(t, err)
	body, headerLength, err = AppendInferenceRequestBinary(nil, req, nil)
	require.NoError(t, err)
	require.Zero(t, headerLength)
	require.Equal(t, string(plain), string(body))

	_, _, err = AppendInferenceRequestBinary(nil, &InferenceRequest{Inputs: []Tensor{{Name: "x", Shape: []int64{3}, Datatype: FP32, Data: []float32{1}}}}, allOutputs)
	requireFieldError(t, err, "inputs[0].shape", "does not match")
}

func TestDecodeInferenceResponseBinaryErrors(t *testing.T) {
	header := `{"model_name":"m","outputs":[{"name":"y","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}}]}`
	body := append([]byte(header), le([]int32{1, 2})...)
	resp, err := DecodeInferenceResponseBinary(body, int64(len(header)), DefaultLimits())
	require.NoError(t, err)
	require.Equal(t, []int32{1, 2}, resp.Outputs[0].Data)

	_, err = DecodeInferenceResponseBinary(append(body, 0), int64(len(header)), DefaultLimits())
	requireFieldError(t, err, "body", "1 bytes follow the binary data of the outputs")
	_, err = DecodeInferenceResponseBinary(body[:len(body)-1], int64(len(header)), DefaultLimits())
	requireFieldError(t, err, "outputs[0].parameters.binary_data_size", "only 7 bytes")
	_, err = DecodeInferenceResponseBinary(body, 0, DefaultLimits())
	requireFieldError(t, err, HeaderInferenceHeaderContentLength, "raw binary")
}

func TestCheckInferenceRequestBinary(t *testing.T) {
	body, headerLength := binaryRequest(`{"inputs":[`+binaryInput("x", "FP32", "[2]", 8)+`,`+binaryInput("s", "BYTES", "[1]", 6)+`]}`,
		append(le([]float32{1, 2}), strs("ab")...))
	req, err := CheckInferenceRequestBinary(body, headerLength, DefaultLimits())
	require.NoError(t, err)
	require.Nil(t, req.Inputs[0].Data, "fixed-size elements are left unread")
	require.Equal(t, []int64{2}, req.Inputs[0].Shape)
	require.Equal(t, []string{"ab"}, req.Inputs[1].Data)

	short, shortLength := binaryRequest(`{"inputs":[`+binaryInput("x", "FP32", "[2]", 4)+`]}`, le([]float32{1}))
	_, err = CheckInferenceRequestBinary(short, shortLength, DefaultLimits())
	requireFieldError(t, err, "inputs[0].parameters.binary_data_size", "")
}

// irisAnswer is the answer to a batch chunk of 4,096 Iris rows:
// probabilities, labels and class names.
func irisAnswer() *InferenceResponse {
	const rows = 4096
	probabilities, labels, classes := make([]float32, 3*rows), make([]int64, rows), make([]string, rows)
	names := []string{"setosa", "versicolor", "virginica"}
	for i := range rows {
		probabilities[3*i], labels[i], classes[i] = 1/float32(i+1), int64(i%3), names[i%3]
	}
	return &InferenceResponse{ModelName: "iris", Outputs: []Tensor{
		{Name: "probabilities", Shape: []int64{rows, 3}, Datatype: FP32, Data: probabilities},
		{Name: "label", Shape: []int64{rows}, Datatype: Int64, Data: labels},
		{Name: "class", Shape: []int64{rows}, Datatype: Bytes, Data: classes},
	}}
}

// BenchmarkAppendInferenceResponseBinary encodes irisAnswer, as a worker
// answers a batch chunk.
func BenchmarkAppendInferenceResponseBinary(b *testing.B) {
	answer := irisAnswer()
	var body []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if body, _, err = AppendInferenceResponseBinary(body[:0], answer, func(string) bool { return true }); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(body)))
}

// BenchmarkDecodeInferenceResponseBinary decodes irisAnswer, as the batch
// client reads a chunk's answer.
func BenchmarkDecodeInferenceResponseBinary(b *testing.B) {
	body, headerLength, err := AppendInferenceResponseBinary(nil, irisAnswer(), func(string) bool { return true })
	require.NoError(b, err)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeInferenceResponseBinary(body, int64(headerLength), DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}
