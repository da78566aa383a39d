package functions_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/functions"
)

// FuzzParseFunction feeds the Function spec parser any bytes. None makes it
// panic; a spec it refuses gets an error that says what is wrong; a spec it
// takes and that validates is written back as YAML and parsed again to the
// same Function.
func FuzzParseFunction(f *testing.F) {
	f.Add([]byte(irisYAML))
	f.Add([]byte("metadata: {name: tiny}\nspec: {model: {uri: tiny/abc.onnx}}\n"))
	f.Add([]byte("metadata: {name: tiny}\nspec: {model: {uri: tiny/abc.onnx}, rollout: {}}\n"))
	f.Add([]byte("metadata: {name: \"a.>\"}\nspec: {model: {uri: \"../../etc/passwd\"}}\n"))
	f.Add([]byte("metadata: {name: tiny}\nspec: {model: {uri: https://example.com/m.onnx, sha256: abc}, traffic: [{revision: \"1\", percent: 101}]}\n"))
	f.Add([]byte("metadata: {name: tiny}\nspec: {scaling: {minReplicas: 9223372036854775807, maxReplicas: -1}, timeouts: {request: 1000000h}}\n"))
	f.Add([]byte("a: &a [*a, *a, *a]\n"))
	f.Add([]byte("metadata: {name: tiny, unknown: 1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fn, err := functions.Parse(data)
		if err != nil {
			require.NotEmpty(t, strings.TrimPrefix(err.Error(), "function: "))
			return
		}
		if err := fn.Validate(); err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		written, err := yaml.Marshal(fn)
		require.NoError(t, err)
		again, err := functions.Parse(written)
		require.NoError(t, err, "written back:\n%s", written)
		require.Equal(t, fn, again, "written back:\n%s", written)
	})
}
