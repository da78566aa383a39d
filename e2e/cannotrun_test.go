package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/onnxfile"
)

// opset6Add is a model ONNX Runtime refuses to load: it has no kernel for
// Add of operator set 6.
func opset6Add(t *testing.T, dir string) string {
	t.Helper()
	model, err := onnxfile.Model{OpsetVersion: 6, Graph: onnxfile.Graph{
		Nodes:   []onnxfile.Node{{OpType: "Add", Inputs: []string{"x", "x"}, Outputs: []string{"y"}}},
		Inputs:  []onnxfile.ValueInfo{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 4}}},
		Outputs: []onnxfile.ValueInfo{{Name: "y", Datatype: oip.FP32, Shape: []int64{-1, 4}}},
	}}.Marshal()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "add.onnx"), model, 0o644))
	spec := filepath.Join(dir, "add.yaml")
	require.NoError(t, os.WriteFile(spec, []byte("apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: add}\nspec:\n  model: {path: ./add.onnx}\n"), 0o644))
	return spec
}

const addRequest = `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`

// A model ONNX Runtime cannot load is refused by sluice deploy with ONNX
// Runtime's error, and callers get 503 with it at once, not a 504 after the
// request timeout; the iris function is untouched.
func TestModelThatCannotRunIsRefusedAtDeploy(t *testing.T) {
	p := startPlatform(t)
	spec := opset6Add(t, t.TempDir())
	deploy := exec.Command(binary, "--nats-url", natsURL(t, p), "deploy", "-f", spec)
	out, err := deploy.CombinedOutput()
	require.Error(t, err, "%s", out)
	require.Contains(t, string(out), "model cannot run: revision 1")
	require.Contains(t, string(out), "Could not find an implementation for Add(6)")

	start := time.Now()
	code, body := p.post(t, "/v2/models/add/infer", addRequest, nil)
	require.Equal(t, http.StatusServiceUnavailable, code, "%s", body)
	require.Less(t, time.Since(start), time.Second)
	require.Contains(t, string(body), "Could not find an implementation for Add(6)")
	resp, err := http.Get(p.url + "/v2/models/add/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, sluice(t, "--nats-url", natsURL(t, p), "functions", "get", "add", "-o", "yaml"), "state: Failed")

	code, body = p.post(t, "/v2/models/iris/infer", irisRequest, nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
}

// Deployed where ONNX Runtime is not at hand, the same model is found out by
// its first worker: it marks the revision Failed, answers the request that
// woke it with the reason, and later callers get 503 at once.
func TestModelThatCannotRunIsFoundOutByItsWorker(t *testing.T) {
	p := startPlatform(t)
	spec := opset6Add(t, t.TempDir())
	deploy := exec.Command(binary, "--nats-url", natsURL(t, p), "deploy", "-f", spec)
	deploy.Env = append(os.Environ(), "SLUICE_ONNXRUNTIME_LIB=/nonexistent/libonnxruntime.so")
	out, err := deploy.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "the first worker will")

	start := time.Now()
	code, body := p.post(t, "/v2/models/add/infer", addRequest, nil)
	require.Equal(t, http.StatusServiceUnavailable, code, "%s", body)
	require.Less(t, time.Since(start), 5*time.Second, "the worker starts, fails to load the model and answers")
	require.Contains(t, string(body), "Could not find an implementation for Add(6)")

	require.Eventually(t, func() bool {
		start := time.Now()
		code, _ := p.post(t, "/v2/models/add/infer", addRequest, nil)
		return code == http.StatusServiceUnavailable && time.Since(start) < 100*time.Millisecond
	}, 5*time.Second, 50*time.Millisecond, "once the revision is marked Failed the activator answers at once")
	status := sluice(t, "--nats-url", natsURL(t, p), "status")
	require.Contains(t, status, "add revision 1 cannot run")

	// sluice functions delete takes its model out of the model store too.
	nc, err := nats.Connect(natsURL(t, p), nats.UserCredentials(os.Getenv("SLUICE_NATS_CREDS")))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	models, err := js.ObjectStore(t.Context(), events.ModelsBucket)
	require.NoError(t, err)
	objectsOf := func(function string) (names []string) {
		objects, err := models.List(t.Context())
		require.NoError(t, err)
		for _, object := range objects {
			if strings.HasPrefix(object.Name, function+"/") {
				names = append(names, object.Name)
			}
		}
		return names
	}
	require.NotEmpty(t, objectsOf("add"))
	require.Contains(t, sluice(t, "--nats-url", natsURL(t, p), "functions", "delete", "--yes", "add"), "function add deleted")
	require.Empty(t, objectsOf("add"), "the deleted function's model is gone")
	require.NotEmpty(t, objectsOf("iris"), "another function's stays")
}

// A model replaced in the model store outside the control plane (here with
// the operator's own credentials, which may write it) is not served: the
// next worker finds its digest changed, callers get 503 with the reason,
// the revision is marked Failed, and a dev.sluice.model.changed event and
// an error in the log say so.
func TestModelChangedOutsideTheControlPlaneIsNotServed(t *testing.T) {
	p := startPlatform(t)
	ctx := t.Context()
	nc, err := nats.Connect(natsURL(t, p), nats.UserCredentials(os.Getenv("SLUICE_NATS_CREDS")))
	require.NoError(t, err)
	defer nc.Close()
	announced, err := nc.SubscribeSync(events.IntegritySubject("iris"))
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	catalog, err := functions.OpenCatalog(ctx, js)
	require.NoError(t, err)
	fn, err := catalog.Get(ctx, "iris")
	require.NoError(t, err)
	revision, ok := fn.Status.FindRevision(fn.Status.Revision)
	require.True(t, ok)
	models, err := js.ObjectStore(ctx, events.ModelsBucket)
	require.NoError(t, err)
	other, err := os.ReadFile(filepath.Join(filepath.Dir(p.data), "iris.onnx"))
	require.NoError(t, err)
	_, err = models.PutBytes(ctx, revision.Model.Object, append(other, 0)) // another model under the same name
	require.NoError(t, err)

	// The next worker starts without the copy the first one kept.
	require.NoError(t, os.RemoveAll(filepath.Join(p.data, "models")))
	require.NoError(t, exec.Command("pkill", "-KILL", "-f", "--", "--model-cache "+filepath.Join(p.data, "models")).Run())
	// The worker that restarts finds it out and the control plane marks the
	// revision Failed; from then on callers are told at once.
	require.Eventually(t, func() bool {
		return strings.Contains(sluice(t, "--nats-url", natsURL(t, p), "functions", "get", "iris", "-o", "yaml"), "state: Failed")
	}, 30*time.Second, 200*time.Millisecond, "the revision is marked Failed")
	code, body := p.post(t, "/v2/models/iris/infer", irisRequest, nil)
	require.Equal(t, http.StatusServiceUnavailable, code, "%s", body)
	require.Contains(t, string(body), functions.ErrModelChanged.Error(), "callers are told the model changed")
	resp, err := http.Get(p.url + "/v2/models/iris/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the model is not ready")
	msg, err := announced.NextMsg(10 * time.Second)
	require.NoError(t, err, "a dev.sluice.model.changed event")
	ev, err := events.ReadEvent(ctx, msg.Header, msg.Data)
	require.NoError(t, err)
	require.Equal(t, events.TypeModelChanged, ev.Type())
	require.Contains(t, p.logs.String(), "model changed outside the control plane")
}
