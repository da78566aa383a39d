package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/autoscaler"
	"sluice.dev/sluice/events"
)

// A worker started while JetStream does not answer (a cluster electing its
// leaders, JetStream restarting) waits and says why, and serves once it
// answers: it does not exit for its supervisor to start it again.
func TestWorkerWaitsForJetStream(t *testing.T) {
	srv, _, _, _ := deployIris(t, events.DefaultQueueConfig())
	config := *srv.JetStreamConfig()
	config.StoreDir = filepath.Dir(config.StoreDir) // JetStream adds "jetstream" to the directory it is given
	srv.ShutdownJetStream()

	ready := filepath.Join(t.TempDir(), "ready")
	t.Setenv(autoscaler.ReadyFileEnv, ready) // the workers' environment
	args := []string{"worker", "--function", "iris", "--nats-url", srv.ClientURL(), "--metrics-addr", "127.0.0.1:0"}
	serving, stopped := startProc(t, "worker", args...), startProc(t, "worker to stop", args...)
	for _, w := range []*proc{serving, stopped} {
		require.Eventually(t, func() bool { return strings.Contains(w.logs.String(), "NATS does not answer yet") }, 30*time.Second, 50*time.Millisecond,
			"the worker says why it waits:\n%s", w.logs)
	}
	select {
	case err := <-serving.exited:
		t.Fatalf("the worker exited while JetStream was off: %v\n%s", err, serving.logs)
	case <-time.After(time.Second):
	}
	require.NoFileExists(t, ready, "not ready while JetStream is off")

	// Stopped while it waits, a worker exits as it does when it is stopped serving.
	stopped.signal(syscall.SIGTERM)
	require.NoError(t, <-stopped.exited, "exit status of a worker stopped while it waited:\n%s", stopped.logs)

	require.NoError(t, srv.EnableJetStream(&config))
	require.Eventually(t, func() bool {
		_, err := os.Stat(ready)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "the worker serves once JetStream answers:\n%s", serving.logs)
}
