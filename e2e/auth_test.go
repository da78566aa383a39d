package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// keysFile makes a key per name with `sluice keys create NAME --scope
// SCOPE`, as an operator does, writes their entries into a keys file, and
// returns its path and each key's secret.
func keysFile(t *testing.T, scopes map[string]string) (string, map[string]string) {
	t.Helper()
	var entries []string
	secrets := map[string]string{}
	for name, scope := range scopes {
		out := sluice(t, "keys", "create", name, "--scope", scope)
		secrets[name] = regexp.MustCompile(`sluice_[A-Za-z0-9_-]+`).FindString(out)
		require.NotEmpty(t, secrets[name], out)
		entries = append(entries, out[strings.Index(out, "- name:"):])
	}
	path := filepath.Join(t.TempDir(), "keys.yaml")
	require.NoError(t, os.WriteFile(path, []byte("keys:\n"+strings.Join(entries, "")), 0o600))
	return path, secrets
}

// An operator makes keys with `sluice keys create`, puts their entries in a
// file and starts `sluice up --api-keys`; callers then need their key, and
// `sluice predict --api-key` sends it.
func TestUpWithAPIKeys(t *testing.T) {
	keys, secrets := keysFile(t, map[string]string{"app": "predict:iris", "other": "predict:other"})
	spec, err := os.ReadFile("../deploy/demo/iris.yaml")
	require.NoError(t, err)
	p := startPlatformAs(t, secrets["app"], spec, "--api-keys", keys)
	require.Contains(t, p.logs.String(), `msg="API keys in force"`)

	anonymous := &platform{url: p.url}
	code, body := anonymous.post(t, "/v2/models/iris/infer", irisRequest, nil)
	require.Equal(t, http.StatusUnauthorized, code, "%s", body)
	code, body = (&platform{url: p.url, key: secrets["other"]}).post(t, "/v2/models/iris/infer", irisRequest, nil)
	require.Equal(t, http.StatusForbidden, code, "%s", body)

	out := sluice(t, "predict", "iris", "--url", p.url, "--api-key", secrets["app"], "--data", "[[5.1,3.5,1.4,0.2]]")
	require.Contains(t, out, "setosa")
	denied, err := exec.Command(binary, "predict", "iris", "--url", p.url, "--data", "[[5.1,3.5,1.4,0.2]]").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(denied), "send an API key")
}
