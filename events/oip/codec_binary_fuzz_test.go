package oip

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecodeInferenceRequestBinary checks that no body and header length
// make the binary decoder panic, that every error is a *FieldError, that
// whatever decodes goes on as plain JSON to the same request (compared as
// written again, since a NaN equals nothing), and that its inputs, sent
// back as binary outputs, read back and write again to the same bytes.
func FuzzDecodeInferenceRequestBinary(f *testing.F) {
	seeds := [][]string{
		{`{"inputs":[` + binaryInput("x", "FP32", "[2,2]", 16) + `]}`, string(le([]float32{1, -2.5, 3e-8, 4}))},
		{`{"id":"r","parameters":{"binary_data_output":true},"inputs":[{"name":"j","shape":[2],"datatype":"INT8","data":[1,-1]},` +
			binaryInput("b", "BOOL", "[3]", 3) + `,` + binaryInput("s", "BYTES", "[2]", 12) + `],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`,
			"\x01\x00\x01" + string(strs("ab", "\u00e9"))},
		{`{"inputs":[` + binaryInput("h", "FP16", "[3]", 6) + `,` + binaryInput("u", "UINT64", "[1]", 8) + `]}`, "\x00\x3c\x00\x7c\xff\x7b" + string(le(uint64(1<<63)))},
		{`{"inputs":[` + binaryInput("e", "INT16", "[0,3]", 0) + `,` + binaryInput("d", "FP64", "[]", 8) + `]}`, string(le(1e308))},
		{`{"inputs":[` + binaryInput("s", "BYTES", "[1]", 8) + `]}`, "\xff\xff\xff\xffabcd"},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`, ""},
	}
	for _, seed := range seeds {
		body, headerLength := binaryRequest(seed[0], []byte(seed[1]))
		f.Add(body, headerLength)
	}
	f.Add([]byte(`{"inputs":[]}`), int64(-1))
	limits := Limits{MaxElements: 1 << 16, MaxTensors: 16}
	f.Fuzz(func(t *testing.T, body []byte, headerLength int64) {
		req, err := DecodeInferenceRequestBinary(body, headerLength, limits)
		if err != nil {
			var fieldErr *FieldError
			require.ErrorAs(t, err, &fieldErr)
			return
		}

		plain, err := AppendInferenceRequest(nil, req)
		require.NoError(t, err)
		again, err := DecodeInferenceRequest(plain, limits)
		require.NoError(t, err, "plain: %s", plain)
		plainAgain, err := AppendInferenceRequest(nil, again)
		require.NoError(t, err)
		require.Equal(t, string(plain), string(plainAgain))

		resp := &InferenceResponse{ModelName: "m", ID: req.ID, Outputs: req.Inputs}
		out, outHeader, err := AppendInferenceResponseBinary(nil, resp, allOutputs)
		require.NoError(t, err)
		if len(resp.Outputs) == 0 {
			require.Zero(t, outHeader, "no output is in binary: the answer is plain JSON")
			return
		}
		require.Positive(t, outHeader)
		back := decodeResponseBinary(t, out, outHeader)
		encoded, againHeader, err := AppendInferenceResponseBinary(nil, back, allOutputs)
		require.NoError(t, err)
		require.Equal(t, outHeader, againHeader)
		require.Equal(t, out, encoded)
	})
}
