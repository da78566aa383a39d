package oip

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"
)

// requestBody returns a request with one input x of the given datatype,
// shape and data, all written as JSON.
func requestBody(datatype, shape, data string) []byte {
	return fmt.Appendf(nil, `{"inputs":[{"name":"x","datatype":%q,"shape":%s,"data":%s}]}`, datatype, shape, data)
}

// requireFieldError checks that err is a *FieldError for field whose problem
// contains problem.
func requireFieldError(t *testing.T, err error, field, problem string) {
	t.Helper()
	var fieldErr *FieldError
	require.ErrorAs(t, err, &fieldErr)
	require.Equal(t, field, fieldErr.Field, "error: %v", err)
	require.Contains(t, fieldErr.Problem, problem)
}

// requireRoundTrip encodes req, decodes it again and checks that nothing
// changed, then does the same for a response holding req's inputs.
func requireRoundTrip(t *testing.T, req *InferenceRequest) {
	t.Helper()
	body, err := AppendInferenceRequest(nil, req)
	require.NoError(t, err)
	again, err := DecodeInferenceRequest(body, DefaultLimits())
	require.NoError(t, err, "body: %s", body)
	require.Equal(t, req, again)

	resp := &InferenceResponse{ModelName: "m", ModelVersion: "1", ID: req.ID, Parameters: req.Parameters, Outputs: req.Inputs}
	body, err = AppendInferenceResponse(nil, resp)
	require.NoError(t, err)
	decoded, err := DecodeInferenceResponse(body, DefaultLimits())
	require.NoError(t, err, "body: %s", body)
	require.Equal(t, resp, decoded)
}

func TestDecodeEveryDatatypeRoundTrips(t *testing.T) {
	half := func(values ...float32) []float16.Float16 {
		out := make([]float16.Float16, len(values))
		for i, v := range values {
			out[i] = float16.Fromfloat32(v)
		}
		return out
	}
	tests := []struct {
		name     string
		datatype Datatype
		data     string
		want     any
	}{
		{"bool", Bool, `[true,false,true]`, []bool{true, false, true}},
		{"uint8", Uint8, `[0,7,255]`, []uint8{0, 7, 255}},
		{"uint16", Uint16, `[0,-0,65535]`, []uint16{0, 0, 65535}},
		{"uint32", Uint32, `[0,1,4294967295]`, []uint32{0, 1, math.MaxUint32}},
		{"uint64", Uint64, `[0,1,18446744073709551615]`, []uint64{0, 1, math.MaxUint64}},
		{"int8", Int8, `[-128,0,127]`, []int8{-128, 0, 127}},
		{"int16", Int16, `[-32768,0,32767]`, []int16{math.MinInt16, 0, math.MaxInt16}},
		{"int32", Int32, `[-2147483648,0,2147483647]`, []int32{math.MinInt32, 0, math.MaxInt32}},
		{"int64", Int64, `[-9223372036854775808,0,9223372036854775807]`, []int64{math.MinInt64, 0, math.MaxInt64}},
		{"fp16", FP16, `[0.5,-2,65504]`, half(0.5, -2, 65504)},
		{"fp32", FP32, `[0.1,-1.5e-45,3.4028235e38]`, []float32{0.1, -1.5e-45, math.MaxFloat32}},
		{"fp64", FP64, `[0.1,5e-324,1.7976931348623157e308]`, []float64{0.1, 5e-324, math.MaxFloat64}},
		{"bytes", Bytes, `["a","\u00e9\n","say \"hi\""]`, []string{"a", "é\n", `say "hi"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeInferenceRequest(requestBody(string(tt.datatype), "[3]", tt.data), DefaultLimits())
			require.NoError(t, err)
			require.Equal(t, tt.want, req.Inputs[0].Data)
			require.Equal(t, tt.datatype, req.Inputs[0].Datatype)
			require.Equal(t, 3, req.Inputs[0].Len())
			require.NoError(t, req.Inputs[0].Validate("inputs[0]"))
			requireRoundTrip(t, req)
		})
	}
}

func TestDecodeNestedDataMatchesFlat(t *testing.T) {
	tests := []struct {
		name   string
		shape  string
		nested string
		flat   string
	}{
		{"matrix", "[2,3]", `[[1,2,3],[4,5,6]]`, `[1,2,3,4,5,6]`},
		{"rank 3", "[2,1,2]", `[ [ [1, 2] ], [ [3, 4] ] ]`, `[1,2,3,4]`},
		{"empty rows", "[2,0]", `[[],[]]`, `[]`},
		{"no rows", "[0,3]", `[]`, `[]`},
		{"scalar", "[]", `[7]`, `[7]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nested, err := DecodeInferenceRequest(requestBody("INT32", tt.shape, tt.nested), DefaultLimits())
			require.NoError(t, err)
			flat, err := DecodeInferenceRequest(requestBody("INT32", tt.shape, tt.flat), DefaultLimits())
			require.NoError(t, err)
			require.Equal(t, flat, nested)
			requireRoundTrip(t, nested)
		})
	}
}

func TestDecodeTakesMembersInAnyOrder(t *testing.T) {
	want := Tensor{Name: "x", Shape: []int64{2, 2}, Datatype: FP32, Parameters: map[string]any{"unit": "m"}, Data: []float32{1, 2, 3, 4}}
	tests := []struct {
		name   string
		tensor string
	}{
		{"data last", `{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"unit":"m"},"data":[1,2,3,4]}`},
		{"data first", `{"data":[[1,2],[3,4]],"datatype":"FP32","shape":[2,2],"name":"x","parameters":{"unit":"m"}}`},
		{"data between", `{"shape":[2,2],"data":[1,2,3,4],"name":"x","datatype":"FP32","parameters":{"unit":"m"}}`},
		{"extensions ignored", `{"name":"x","x-trace":{"a":[1,{"b":null}]},"shape":[2,2],"datatype":"FP32","data":[1,2,3,4],"parameters":{"unit":"m"}}`},
		{"escaped keys", `{"n\u0061me":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3,4],"parameters":{"unit":"m"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeInferenceRequest([]byte(`{"inputs":[`+tt.tensor+`]}`), DefaultLimits())
			require.NoError(t, err)
			require.Equal(t, []Tensor{want}, req.Inputs)
		})
	}
}

func TestDecodeRequestAndResponseMembers(t *testing.T) {
	body := `{"id":"r-1","parameters":{"binary_data_output":false,"n":2},"extension":[1,2],
		"inputs":[{"name":"a","shape":[1],"datatype":"BOOL","data":[true]},{"name":"b","shape":[1],"datatype":"BYTES","data":["z"]}],
		"outputs":[{"name":"probs","parameters":{"top_k":3}},{"name":"label"}]}`
	req, err := DecodeInferenceRequest([]byte(body), Limits{})
	require.NoError(t, err)
	require.Equal(t, &InferenceRequest{
		ID:         "r-1",
		Parameters: map[string]any{"binary_data_output": false, "n": 2.0},
		Inputs: []Tensor{
			{Name: "a", Shape: []int64{1}, Datatype: Bool, Data: []bool{true}},
			{Name: "b", Shape: []int64{1}, Datatype: Bytes, Data: []string{"z"}},
		},
		Outputs: []RequestedOutput{{Name: "probs", Parameters: map[string]any{"top_k": 3.0}}, {Name: "label"}},
	}, req)
	requireRoundTrip(t, req)

	resp, err := DecodeInferenceResponse([]byte(`{"model_name":"iris","model_version":"3","id":"r-1","outputs":[]}`), Limits{})
	require.NoError(t, err)
	require.Equal(t, &InferenceResponse{ModelName: "iris", ModelVersion: "3", ID: "r-1"}, resp)
}

func TestAppendInferenceResponseWritesFlatCompactJSON(t *testing.T) {
	resp := &InferenceResponse{
		ModelName:  "iris",
		ID:         "r-1",
		Parameters: map[string]any{"took_ms": 3},
		Outputs: []Tensor{
			{Name: "probs", Shape: []int64{2, 2}, Datatype: FP32, Data: []float32{0.1, 1e-7, 3e38, -0.5}},
			{Name: "half", Shape: []int64{2}, Datatype: FP16, Data: []float16.Float16{float16.Fromfloat32(0.1), float16.Fromfloat32(-2)}},
			{Name: "label", Shape: []int64{1}, Datatype: Bytes, Parameters: map[string]any{}, Data: []string{"a\"<\x01\u2028\xff"}},
		},
	}
	body, err := AppendInferenceResponse([]byte("prefix:"), resp)
	require.NoError(t, err)
	require.Equal(t, `prefix:{"model_name":"iris","id":"r-1","parameters":{"took_ms":3},"outputs":[`+
		`{"name":"probs","shape":[2,2],"datatype":"FP32","data":[0.1,1e-07,3e+38,-0.5]},`+
		`{"name":"half","shape":[2],"datatype":"FP16","data":[0.099975586,-2]},`+
		`{"name":"label","shape":[1],"datatype":"BYTES","parameters":{},"data":["a\"<\u0001\u2028\ufffd"]}]}`, string(body))
	require.True(t, json.Valid(body[len("prefix:"):]))
}

func TestAppendRejectsInvalidTensors(t *testing.T) {
	tests := []struct {
		name    string
		tensor  Tensor
		field   string
		problem string
	}{
		{"wrong slice", Tensor{Name: "y", Shape: []int64{1}, Datatype: FP32, Data: []float64{1}}, "outputs[0].data", "holds []float64, want []float32 for FP32"},
		{"nil data", Tensor{Name: "y", Shape: []int64{0}, Datatype: Int32, Data: nil}, "outputs[0].data", "holds <nil>, want []int32"},
		{"length", Tensor{Name: "y", Shape: []int64{2, 2}, Datatype: Int8, Data: []int8{1}}, "outputs[0].shape", "product 4 does not match 1 data elements"},
		{"negative dim", Tensor{Name: "y", Shape: []int64{2, -1}, Datatype: Int8, Data: []int8{}}, "outputs[0].shape[1]", "-1 is negative"},
		{"unknown datatype", Tensor{Name: "y", Shape: []int64{1}, Datatype: "FLOAT", Data: []float32{1}}, "outputs[0].datatype", `unknown "FLOAT"`},
		{"no name", Tensor{Shape: []int64{1}, Datatype: FP32, Data: []float32{1}}, "outputs[0].name", "empty"},
		{"bad parameters", Tensor{Name: "y", Shape: []int64{1}, Datatype: FP32, Parameters: map[string]any{"f": func() {}}, Data: []float32{1}}, "outputs[0].parameters", "unsupported type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			body, err := AppendInferenceResponse(dst, &InferenceResponse{ModelName: "m", Outputs: []Tensor{tt.tensor}})
			requireFieldError(t, err, tt.field, tt.problem)
			require.Equal(t, "keep", string(body))
		})
	}
}

func TestTensorWorksWithEncodingJSON(t *testing.T) {
	req := InferenceRequest{Inputs: []Tensor{{Name: "x", Shape: []int64{1, 2}, Datatype: Uint16, Data: []uint16{1, 2}}}}
	body, err := json.Marshal(req)
	require.NoError(t, err)
	require.JSONEq(t, `{"inputs":[{"name":"x","shape":[1,2],"datatype":"UINT16","data":[1,2]}]}`, string(body))

	var decoded InferenceRequest
	require.NoError(t, json.Unmarshal([]byte(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"UINT16","data":[[1,2]]}]}`), &decoded))
	require.Equal(t, req, decoded)

	var tensors []*Tensor
	require.NoError(t, json.Unmarshal([]byte(`[null]`), &tensors))
	require.Equal(t, []*Tensor{nil}, tensors)
	var one Tensor
	require.NoError(t, one.UnmarshalJSON([]byte(` null `)))
	require.Equal(t, Tensor{}, one)

	err = json.Unmarshal([]byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[300]}]}`), &decoded)
	requireFieldError(t, err, "tensor.data[0]", "300 is out of range for UINT8")

}

// TestNonFiniteFloatsAsStrings: NaN and infinities, which JSON numbers cannot
// hold, travel as the strings of the protobuf JSON mapping, both ways.
func TestNonFiniteFloatsAsStrings(t *testing.T) {
	response := &InferenceResponse{ModelName: "m", Outputs: []Tensor{
		{Name: "a", Shape: []int64{3}, Datatype: FP32, Data: []float32{float32(math.NaN()), float32(math.Inf(1)), 1.5}},
		{Name: "b", Shape: []int64{1}, Datatype: FP64, Data: []float64{math.Inf(-1)}},
		{Name: "c", Shape: []int64{2}, Datatype: FP16, Data: []float16.Float16{float16.Inf(1), float16.NaN()}},
	}}
	body, err := AppendInferenceResponse(nil, response)
	require.NoError(t, err)
	require.Contains(t, string(body), `"data":["NaN","Infinity",1.5]`)
	require.Contains(t, string(body), `"data":["-Infinity"]`)
	require.Contains(t, string(body), `"data":["Infinity","NaN"]`)
	decoded, err := DecodeInferenceResponse(body, DefaultLimits())
	require.NoError(t, err)
	a := decoded.Outputs[0].Data.([]float32)
	require.True(t, math.IsNaN(float64(a[0])))
	require.Equal(t, []float32{float32(math.Inf(1)), 1.5}, a[1:])
	require.Equal(t, []float64{math.Inf(-1)}, decoded.Outputs[1].Data)
	c := decoded.Outputs[2].Data.([]float16.Float16)
	require.True(t, c[0].IsInf(1))
	require.True(t, c[1].IsNaN())

	_, err = DecodeInferenceRequest([]byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["nan"]}]}`), DefaultLimits())
	requireFieldError(t, err, "inputs[0].data[0]", `want a number for FP32, got string "nan"`)
}

func TestNewTensorInfersDatatype(t *testing.T) {
	tests := []struct {
		name string
		data any
		want Datatype
	}{
		{"bool", []bool{true}, Bool},
		{"uint8", []uint8{1}, Uint8},
		{"uint16", []uint16{1}, Uint16},
		{"uint32", []uint32{1}, Uint32},
		{"uint64", []uint64{1}, Uint64},
		{"int8", []int8{1}, Int8},
		{"int16", []int16{1}, Int16},
		{"int32", []int32{1}, Int32},
		{"int64", []int64{1}, Int64},
		{"fp16", []float16.Float16{float16.Fromfloat32(1)}, FP16},
		{"fp32", []float32{1}, FP32},
		{"fp64", []float64{1}, FP64},
		{"bytes", []string{"a"}, Bytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shape := []int64{1, 1}
			tensor, err := NewTensor("x", shape, tt.data)
			require.NoError(t, err)
			require.Equal(t, tt.want, tensor.Datatype)
			require.Equal(t, 1, tensor.Len())
			shape[0] = 9
			require.Equal(t, []int64{1, 1}, tensor.Shape, "NewTensor copies the shape")
		})
	}

	_, err := NewTensor("x", []int64{3}, []int{1, 2, 3})
	requireFieldError(t, err, `tensor "x".data`, "[]int is not a tensor data type")
	_, err = NewTensor("x", []int64{2, 2}, []float32{1, 2, 3})
	requireFieldError(t, err, `tensor "x".shape`, "product 4 does not match 3 data elements")
	require.Equal(t, 0, Tensor{Data: []int{1}}.Len())
}

// benchmarkRequest is a [32,4] FP32 request, as a small tabular model takes.
func benchmarkRequest(b *testing.B) []byte {
	b.Helper()
	data := make([]float32, 32*4)
	for i := range data {
		data[i] = float32(i)*0.731 - 40.25
	}
	body, err := AppendInferenceRequest(nil, &InferenceRequest{ID: "bench", Inputs: []Tensor{{Name: "features", Shape: []int64{32, 4}, Datatype: FP32, Data: data}}})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func BenchmarkDecodeInferenceRequest(b *testing.B) {
	body := benchmarkRequest(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeInferenceRequest(body, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendInferenceResponse(b *testing.B) {
	req, err := DecodeInferenceRequest(benchmarkRequest(b), DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	resp := &InferenceResponse{ModelName: "iris", ID: "bench", Outputs: req.Inputs}
	var dst []byte
	b.ReportAllocs()
	for b.Loop() {
		if dst, err = AppendInferenceResponse(dst[:0], resp); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(dst)))
}

// BenchmarkJSONImage decodes and encodes one 1×3×320×320 FP32 image as JSON,
// the size of a text-detection model's input; MB/s is of JSON text.
func BenchmarkJSONImage(b *testing.B) {
	random := rand.New(rand.NewPCG(3, 4))
	data := make([]float32, 3*320*320)
	for i := range data {
		data[i] = random.Float32()
	}
	image := &InferenceRequest{Inputs: []Tensor{{Name: "image", Shape: []int64{1, 3, 320, 320}, Datatype: FP32, Data: data}}}
	body, err := AppendInferenceRequest(nil, image)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := DecodeInferenceRequest(body, DefaultLimits()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		resp := &InferenceResponse{ModelName: "cnn", Outputs: image.Inputs}
		dst, err := AppendInferenceResponse(nil, resp) // the buffer is grown once, outside the loop
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if dst, err = AppendInferenceResponse(dst[:0], resp); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(dst)))
	})
}
