package autoscaler_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/autoscaler"
)

// The test binary doubles as the worker process the scaler supervises: with
// SLUICE_TEST_WORKER set it records its start, waits for SIGTERM (or crashes,
// or ignores SIGTERM), records its drain and exits.
func TestMain(m *testing.M) {
	if mode := os.Getenv("SLUICE_TEST_WORKER"); mode != "" {
		fakeWorker(mode, os.Getenv("SLUICE_TEST_DIR"))
		return
	}
	os.Exit(m.Run())
}

func fakeWorker(mode, dir string) {
	record := func(event string) {
		name := filepath.Join(dir, fmt.Sprintf("%s-%d", event, os.Getpid()))
		_ = os.WriteFile(name, nil, 0o644)
	}
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	record("started")
	switch mode {
	case "crash":
		os.Exit(3)
	case "stubborn":
		for range terms {
			record("ignored")
		}
	default:
		<-terms
		record("drained")
	}
}

func count(t *testing.T, dir, event string) int {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, event+"-*"))
	require.NoError(t, err)
	return len(matches)
}

func newScaler(t *testing.T, mode string, stopTimeout time.Duration) (*autoscaler.ProcessScaler, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := autoscaler.DefaultProcessConfig()
	cfg.StopTimeout = stopTimeout
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	cfg.Command = func(ctx context.Context, function, revision string) (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SLUICE_TEST_WORKER="+mode, "SLUICE_TEST_DIR="+dir)
		return cmd, nil
	}
	scaler, err := autoscaler.NewProcessScaler(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(scaler.Close)
	return scaler, dir
}

func TestProcessScalerStartsAndDrainsWorkers(t *testing.T) {
	scaler, dir := newScaler(t, "serve", 10*time.Second)
	ctx := context.Background()

	require.NoError(t, scaler.Scale(ctx, "iris", "1", 3))
	require.Equal(t, 3, scaler.Replicas("iris", "1"))
	require.Eventually(t, func() bool { return count(t, dir, "started") == 3 }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, scaler.Scale(ctx, "iris", "1", 1))
	require.Eventually(t, func() bool { return count(t, dir, "drained") == 2 }, 10*time.Second, 10*time.Millisecond,
		"scaling down sends SIGTERM and lets the worker drain")
	require.Equal(t, 3, count(t, dir, "started"), "the remaining worker is left alone")

	scaler.Close()
	require.Equal(t, 3, count(t, dir, "drained"), "Close returns only after every worker has drained")
	require.Error(t, scaler.Scale(ctx, "iris", "1", 1), "a closed scaler refuses to start workers")
}

func TestProcessScalerRestartsCrashedWorkers(t *testing.T) {
	scaler, dir := newScaler(t, "crash", time.Second)
	require.NoError(t, scaler.Scale(context.Background(), "iris", "1", 1))
	require.Eventually(t, func() bool { return count(t, dir, "started") >= 3 }, 10*time.Second, 10*time.Millisecond,
		"a worker that exits on its own is started again")
	require.NoError(t, scaler.Scale(context.Background(), "iris", "1", 0))
	require.Equal(t, 0, scaler.Replicas("iris", "1"))
}

func TestProcessScalerKillsWorkersThatDoNotDrain(t *testing.T) {
	scaler, dir := newScaler(t, "stubborn", 300*time.Millisecond)
	require.NoError(t, scaler.Scale(context.Background(), "iris", "1", 1))
	require.Eventually(t, func() bool { return count(t, dir, "started") == 1 }, 10*time.Second, 10*time.Millisecond)
	start := time.Now()
	scaler.Close()
	require.Less(t, time.Since(start), 5*time.Second, "killed after StopTimeout")
	require.Equal(t, 1, count(t, dir, "ignored"), "SIGTERM came first")
}

func TestProcessScalerRejectsNegativeReplicas(t *testing.T) {
	scaler, _ := newScaler(t, "serve", time.Second)
	err := scaler.Scale(context.Background(), "iris", "1", -1)
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "negative"))
}
