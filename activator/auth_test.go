package activator_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/activator"
	"sluice.dev/sluice/activator/inference"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// keyFile writes a key file with a key per scope list, and returns its path
// and each key's secret by name.
func keyFile(t *testing.T, keys map[string][]string) (string, map[string]string) {
	t.Helper()
	secrets := map[string]string{}
	var file activator.KeyFile
	for name, scopes := range keys {
		secret, key, err := activator.NewAPIKey(name, scopes)
		require.NoError(t, err)
		secrets[name] = secret
		file.Keys = append(file.Keys, key)
	}
	data, err := yaml.Marshal(file)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "keys.yaml")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path, secrets
}

// With API keys on, a caller needs a known key (401 otherwise, probes
// aside), and a key may do only what its scopes say (403 otherwise), over
// REST and gRPC alike; a key taken out of the file stops working without a
// restart.
func TestAPIKeysAdmitOnlyWhatTheirScopesAllow(t *testing.T) {
	path, secrets := keyFile(t, map[string][]string{
		"shop": {"predict:iris"}, "labeller": {"feedback:iris"}, "elsewhere": {"predict:other"}, "ops": {"admin:*"},
	})
	keys, err := activator.LoadKeys(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	follow, stop := context.WithCancel(context.Background())
	followed := make(chan struct{})
	go func() { defer close(followed); keys.Follow(follow, 50*time.Millisecond) }()
	t.Cleanup(func() { stop(); <-followed })
	s := newSetup()
	s.config.Keys = keys
	p := startPlatform(t, s)

	as := func(key, method, path, body string) response {
		header := jsonHeader()
		if key != "" {
			header.Set("Authorization", "Bearer "+secrets[key])
		}
		return p.send(t, p.newRequest(t, method, path, header, body))
	}
	open := p.send(t, p.newRequest(t, http.MethodGet, "/v2/health/ready", nil, ""))
	require.Equal(t, http.StatusOK, open.status, "probes need no key")

	missing := as("", http.MethodGet, "/v2/models/iris", "")
	errorMessage(t, missing, http.StatusUnauthorized, "send an API key: Authorization: Bearer <key>")
	require.Equal(t, `Bearer realm="sluice"`, missing.header.Get("WWW-Authenticate"))
	wrong := p.send(t, p.newRequest(t, http.MethodGet, "/v2/models/iris", http.Header{"Authorization": {"Bearer sluice_guess"}}, ""))
	errorMessage(t, wrong, http.StatusUnauthorized, "the API key is not known")

	require.Equal(t, http.StatusOK, as("shop", http.MethodGet, "/v2/models/iris", "").status)
	require.Equal(t, http.StatusOK, as("ops", http.MethodGet, "/v2/models/iris", "").status)
	errorMessage(t, as("elsewhere", http.MethodGet, "/v2/models/iris", ""), http.StatusForbidden,
		`API key "elsewhere" may not predict function "iris" (its scopes: predict:other)`)
	errorMessage(t, as("labeller", http.MethodPost, "/v2/models/iris/infer", irisBody), http.StatusForbidden, `may not predict function "iris"`)
	feedback := `{"features": [[5.1, 3.5, 1.4, 0.2]], "labels": ["setosa"]}`
	require.Equal(t, http.StatusAccepted, as("labeller", http.MethodPost, "/v1/functions/iris/feedback", feedback).status)
	errorMessage(t, as("shop", http.MethodPost, "/v1/functions/iris/feedback", feedback), http.StatusForbidden, `may not feedback function "iris"`)

	client := p.grpcClient(t)
	withKey := func(key string) context.Context {
		return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+secrets[key])
	}
	_, err = client.ServerLive(t.Context(), &inference.ServerLiveRequest{})
	require.NoError(t, err, "liveness needs no key")
	_, err = client.ModelMetadata(t.Context(), &inference.ModelMetadataRequest{Name: "iris"})
	require.Equal(t, codes.Unauthenticated, grpcstatus.Code(err), "%v", err)
	_, err = client.ModelMetadata(withKey("elsewhere"), &inference.ModelMetadataRequest{Name: "iris"})
	require.Equal(t, codes.PermissionDenied, grpcstatus.Code(err), "%v", err)
	_, err = client.ModelMetadata(withKey("shop"), &inference.ModelMetadataRequest{Name: "iris"})
	require.NoError(t, err)

	// Rotation: shop is taken out of the file; within the reload interval it is refused.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var file activator.KeyFile
	require.NoError(t, yaml.Unmarshal(data, &file))
	kept := file.Keys[:0]
	for _, key := range file.Keys {
		if key.Name != "shop" {
			kept = append(kept, key)
		}
	}
	file.Keys = kept
	data, err = yaml.Marshal(file)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	require.Eventually(t, func() bool {
		return as("shop", http.MethodGet, "/v2/models/iris", "").status == http.StatusUnauthorized
	}, 5*time.Second, 20*time.Millisecond, "a revoked key stops working without a restart")
	require.Equal(t, http.StatusOK, as("ops", http.MethodGet, "/v2/models/iris", "").status)

	require.NoError(t, os.WriteFile(path, []byte("keys: [{name: broken}]"), 0o600))
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, http.StatusOK, as("ops", http.MethodGet, "/v2/models/iris", "").status, "a broken file leaves the keys read last in force")
}

func TestKeyFileMistakesNameTheirField(t *testing.T) {
	for file, want := range map[string]string{
		"keys: [{name: a, sha256: abc, scopes: [predict:iris]}]":                         "keys[0].sha256: want the 64 lower-case hex digits",
		"keys: [{name: a, sha256: " + strings.Repeat("a", 64) + ", scopes: [eat:iris]}]": `keys[0].scopes[0]: "eat:iris"`,
		"keys: [{name: a, sha256: " + strings.Repeat("a", 64) + "}]":                     "keys[0].scopes: a key needs at least one scope",
		"keys: [{name: a, sha: x}]":                                                      `unknown field "sha"`,
		"":                                                                               "keys: required (keys: [] revokes every key)",
	} {
		_, err := activator.ParseKeyFile([]byte(file))
		require.ErrorContains(t, err, want, file)
	}
}

// An asynchronous request's id belongs to the function it was first sent to:
// the same id for another function is a conflict, not a 202 for a request
// that would never run (nor a way to read another function's answer).
func TestAnAcceptedIDBelongsToItsFunction(t *testing.T) {
	p := startPlatform(t, newSetup())
	model, err := irisModel()
	require.NoError(t, err)
	catalog, err := functions.OpenCatalog(t.Context(), p.js)
	require.NoError(t, err)
	other, err := functions.Parse([]byte("apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: other}\nspec: {model: {path: ./iris.onnx}}\n"))
	require.NoError(t, err)
	_, err = functions.NewDeployer(p.js, catalog, events.DefaultQueueConfig()).Deploy(t.Context(), other, model)
	require.NoError(t, err)

	async := http.Header{"Content-Type": {"application/json"}, "Prefer": {"respond-async"}, "Idempotency-Key": {"order-42"}}
	require.Equal(t, http.StatusAccepted, p.send(t, p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", async, irisBody)).status)
	require.Equal(t, http.StatusAccepted, p.send(t, p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", async, irisBody)).status, "the same request again")
	errorMessage(t, p.send(t, p.newRequest(t, http.MethodPost, "/v2/models/other/infer", async, irisBody)), http.StatusConflict,
		`request "order-42"`, "was sent to another function")
}
