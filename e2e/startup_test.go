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
	serving, served := startWorker(t, srv.ClientURL(), ready)
	stopped, stoppedExit := startWorker(t, srv.ClientURL(), filepath.Join(t.TempDir(), "ready"))
	for _, logs := range []*workerLogs{serving, stopped} {
		require.Eventually(t, func() bool { return strings.Contains(logs.String(), "NATS does not answer yet") }, 30*time.Second, 50*time.Millisecond,
			"the worker says why it waits:\n%s", logs)
	}
	select {
	case err := <-served:
		t.Fatalf("the worker exited while JetStream was off: %v\n%s", err, serving)
	case <-time.After(time.Second):
	}
	require.NoFileExists(t, ready, "not ready while JetStream is off")

	// Stopped while it waits, a worker exits as it does when it is stopped serving.
	require.NoError(t, stopped.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-stoppedExit, "exit status of a worker stopped while it waited:\n%s", stopped)

	require.NoError(t, srv.EnableJetStream(&config))
	require.Eventually(t, func() bool {
		_, err := os.Stat(ready)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "the worker serves once JetStream answers:\n%s", serving)
}

// workerLogs is a worker process's output, and the process.
type workerLogs struct {
	syncBuffer
	cmd *exec.Cmd
}

// startWorker starts `sluice worker` for iris on natsURL, with its ready
// file at ready; the worker is stopped when the test ends. exited reports
// how it exited.
func startWorker(t *testing.T, natsURL, ready string) (logs *workerLogs, exited <-chan error) {
	t.Helper()
	logs = &workerLogs{cmd: exec.Command(binary, "worker", "--function", "iris", "--nats-url", natsURL, "--metrics-addr", "127.0.0.1:0")}
	logs.cmd.Env = append(os.Environ(), autoscaler.ReadyFileEnv+"="+ready)
	logs.cmd.Stderr = logs
	require.NoError(t, logs.cmd.Start())
	done, finished := make(chan error, 1), make(chan struct{})
	go func() {
		done <- logs.cmd.Wait()
		close(finished)
	}()
	t.Cleanup(func() {
		_ = logs.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
		}
	})
	return logs, done
}
