package autoscaler_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/autoscaler"
	autoscalerkube "sluice.dev/sluice/autoscaler/kube"
	"sluice.dev/sluice/e2e/kubetest"
	"sluice.dev/sluice/functions"
	functionskube "sluice.dev/sluice/functions/kube"
)

// contractWorkerEnv makes the test binary a worker that is ready at once: it
// creates the file named by $SLUICE_READY_FILE and waits for SIGTERM. It is
// read in init, because TestMain (process_test.go) belongs to another worker.
const contractWorkerEnv = "SLUICE_CONTRACT_WORKER"

func init() {
	if os.Getenv(contractWorkerEnv) == "" {
		return
	}
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	if err := os.WriteFile(os.Getenv(autoscaler.ReadyFileEnv), nil, 0o644); err != nil {
		os.Exit(2)
	}
	<-terms
	os.Exit(0)
}

// scalerUnderTest is one implementation of autoscaler.Scaler, and how to give
// it a revision to scale (the Kubernetes scaler needs its Deployment first).
type scalerUnderTest struct {
	scaler  autoscaler.Scaler
	prepare func(t *testing.T, function, revision string)
}

// TestScalerContract runs the same assertions against every Scaler.
func TestScalerContract(t *testing.T) {
	implementations := []struct {
		name  string
		start func(t *testing.T) scalerUnderTest
	}{
		{name: "process", start: startProcessScaler},
		{name: "kube", start: startKubeScaler},
	}
	for _, implementation := range implementations {
		t.Run(implementation.name, func(t *testing.T) {
			runScalerContract(t, implementation.start(t))
		})
	}
}

func startProcessScaler(t *testing.T) scalerUnderTest {
	t.Helper()
	cfg := autoscaler.DefaultProcessConfig()
	cfg.StopTimeout = 5 * time.Second
	cfg.Command = func(ctx context.Context, function, revision string) (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), contractWorkerEnv+"=1")
		return cmd, nil
	}
	scaler, err := autoscaler.NewProcessScaler(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(scaler.Close)
	return scalerUnderTest{scaler: scaler, prepare: func(*testing.T, string, string) {}}
}

func startKubeScaler(t *testing.T) scalerUnderTest {
	t.Helper()
	cluster := kubetest.Start(t, kubetest.WithFakeNodes())
	cfg := functionskube.DefaultWorkerConfig()
	cfg.Namespace = cluster.NewNamespace(t)
	require.NoError(t, cfg.Validate())
	return scalerUnderTest{
		scaler: autoscalerkube.NewScaler(cluster.Client, cfg.Namespace),
		prepare: func(t *testing.T, function, revision string) {
			t.Helper()
			fn := &functions.Function{Metadata: functions.Metadata{Name: function}}
			fn.Default()
			cluster.CreateDeployment(t, functionskube.Deployment(fn, functions.RevisionStatus{Name: revision, Runtime: fn.Spec.Runtime}, cfg))
		},
	}
}

// runScalerContract is what every Scaler must do: scale a revision up, down
// and to zero, with Ready following; keep revisions apart; refuse nonsense.
func runScalerContract(t *testing.T, under scalerUnderTest) {
	t.Helper()
	ctx := context.Background()
	scaler := under.scaler
	readyIs := func(t *testing.T, function, revision string, want int, why string) {
		t.Helper()
		require.Eventually(t, func() bool {
			got, err := scaler.Ready(ctx, function, revision)
			return err == nil && got == want
		}, 30*time.Second, 20*time.Millisecond, why)
	}
	under.prepare(t, "iris", "1")
	under.prepare(t, "iris", "2")

	got, err := scaler.Ready(ctx, "iris", "1")
	require.NoError(t, err)
	require.Zero(t, got, "nothing is ready before the first Scale")
	got, err = scaler.Ready(ctx, "unknown", "1")
	require.NoError(t, err, "a revision the scaler never saw has no replica, and that is no error")
	require.Zero(t, got)

	require.NoError(t, scaler.Scale(ctx, "iris", "1", 3))
	readyIs(t, "iris", "1", 3, "scaled up to 3, 3 become ready")
	require.NoError(t, scaler.Scale(ctx, "iris", "1", 3), "scaling to the current count is fine")

	require.NoError(t, scaler.Scale(ctx, "iris", "2", 1))
	readyIs(t, "iris", "2", 1, "another revision scales on its own")
	readyIs(t, "iris", "1", 3, "and leaves the first alone")

	require.NoError(t, scaler.Scale(ctx, "iris", "1", 1))
	readyIs(t, "iris", "1", 1, "scaled down to 1")

	require.NoError(t, scaler.Scale(ctx, "iris", "1", 0))
	require.NoError(t, scaler.Scale(ctx, "iris", "2", 0))
	readyIs(t, "iris", "1", 0, "scaled to zero, nothing is ready")
	readyIs(t, "iris", "2", 0, "scaled to zero, nothing is ready")

	require.Error(t, scaler.Scale(ctx, "iris", "1", -1), "negative replicas are refused")
}
