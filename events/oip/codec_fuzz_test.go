package oip

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecodeInferenceRequest checks that no body makes the decoder panic,
// that every error is a *FieldError, and that whatever decodes encodes and
// decodes again to the same request.
func FuzzDecodeInferenceRequest(f *testing.F) {
	seeds := []string{
		`{"id":"r","parameters":{"a":[1,{"b":null}]},"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5e-3]]}],"outputs":[{"name":"y"}]}`,
		`{"inputs":[{"data":[true,false],"datatype":"BOOL","shape":[2],"name":"b","parameters":{"p":"q"}}]}`,
		`{"inputs":[{"name":"s","shape":[1,2],"datatype":"BYTES","data":[["a\u00e9\"","\ud83d\ude00"]]}]}`,
		`{"inputs":[{"name":"h","shape":[3],"datatype":"FP16","data":[65504,-0,6e-8]}]}`,
		`{"inputs":[{"name":"u","shape":[2],"datatype":"UINT64","data":[18446744073709551615,-0]}]}`,
		`{"inputs":[{"name":"i","shape":[2,0],"datatype":"INT8","data":[[],[]]}]}`,
		`{"inputs":[{"name":"d","shape":[],"datatype":"FP64","data":[1e308]}]}`,
		`{"inputs":[{"name":"x","shape":[1000000000000],"datatype":"FP32","data":[1]}]}`,
		`{"inputs":[{"name":"x","shape":[2,3],"datatype":"INT16","data":[[1,2,3],[4,5]]}]}`,
		`{"inputs": [}`,
	}
	for _, seed := range seeds {
		f.Add([]byte(seed))
	}
	limits := Limits{MaxElements: 1 << 16, MaxTensors: 16}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeInferenceRequest(body, limits)
		if err != nil {
			var fieldErr *FieldError
			require.ErrorAs(t, err, &fieldErr)
			return
		}
		encoded, err := AppendInferenceRequest(nil, req)
		require.NoError(t, err)
		again, err := DecodeInferenceRequest(encoded, limits)
		require.NoError(t, err, "encoded: %s", encoded)
		require.Equal(t, req, again)
	})
}
