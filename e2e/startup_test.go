package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/autoscaler"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
)

// A worker started while JetStream does not answer (a cluster electing its
// leaders, JetStream restarting) waits and says why, and serves once it
// answers: it does not exit for its supervisor to start it again.
func TestWorkerWaitsForJetStream(t *testing.T) {
	srv, _, js := natstest.JetStream(t)
	ctx := t.Context()
	catalog, err := functions.OpenCatalog(ctx, js)
	require.NoError(t, err)
	fn, err := functions.Parse([]byte("metadata: {name: iris}\nspec: {model: {path: ./iris.onnx}}\n"))
	require.NoError(t, err)
	_, model := trainIris(t)
	_, err = functions.NewDeployer(js, catalog, events.DefaultQueueConfig()).Deploy(ctx, fn, model)
	require.NoError(t, err)
	config := *srv.JetStreamConfig()
	config.StoreDir = filepath.Dir(config.StoreDir) // JetStream adds "jetstream" to the directory it is given
	srv.ShutdownJetStream()

	ready := filepath.Join(t.TempDir(), "ready")
	logs := new(syncBuffer)
	cmd := exec.Command(binary, "worker", "--function", "iris", "--nats-url", srv.ClientURL(), "--metrics-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), autoscaler.ReadyFileEnv+"="+ready)
	cmd.Stderr = logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})

	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "NATS does not answer yet") }, 30*time.Second, 50*time.Millisecond,
		"the worker says why it waits:\n%s", logs)
	select {
	case err := <-exited:
		t.Fatalf("the worker exited while JetStream was off: %v\n%s", err, logs)
	case <-time.After(time.Second):
	}
	require.NoFileExists(t, ready, "not ready while JetStream is off")

	require.NoError(t, srv.EnableJetStream(&config))
	require.Eventually(t, func() bool {
		_, err := os.Stat(ready)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "the worker serves once JetStream answers:\n%s", logs)
}
