//go:build faults

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
)

// readiness is the status and the error of GET /v2/health/ready.
func readiness(p *platform) (int, string) {
	resp, err := http.Get(p.url + "/v2/health/ready")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var body struct{ Error string }
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &body)
	return resp.StatusCode, body.Error
}

// awaitCode polls a prediction until it is answered with code, and returns
// how long that took.
func awaitCode(t *testing.T, p *platform, code int, within time.Duration, why string) time.Duration {
	t.Helper()
	start := time.Now()
	require.Eventually(t, func() bool {
		got, _ := p.post(t, "/v2/models/iris/infer", irisRequest, nil)
		return got == code
	}, within, 100*time.Millisecond, why)
	return time.Since(start)
}

// TestFaultsOnOneMachine runs the faults of the platform's own state
// against `sluice up` on a small disk: the disk fills up and is freed, the
// function's stream is deleted and made again, the catalog is purged. Each
// recovers without a restart.
func TestFaultsOnOneMachine(t *testing.T) {
	disk := natstest.SmallDisk(t, "256m")
	data := filepath.Join(disk, "data")
	port := freePorts(t, 1)[0]
	p := startPlatform(t, "--data-dir", data, "--nats-port", itoa(int64(port)))
	t.Setenv("SLUICE_NATS_CREDS", filepath.Join(data, "nats", "admin.creds"))
	report(t, reliability{scenario: "sluice up on a 256 MiB disk", note: "starts and serves: JetStream sized to the disk (" +
		p.logged(t, "max_store_mib=") + " MiB)"})
	nc, err := nats.Connect(natsURL(t, p), nats.UserCredentials(filepath.Join(data, "nats", "admin.creds")))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	t.Run("disk full, then freed", func(t *testing.T) {
		late := lateSince(t, p.url)
		before := startFaultLoad(p.url, faultRate, true)
		time.Sleep(time.Second)
		before.stop()
		filler := filepath.Join(disk, "filler")
		defer os.Remove(filler) // for the scenarios after this one, should it fail
		require.Error(t, exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=1M").Run(), "dd stops when the disk is full")

		code, reason := 0, ""
		require.Eventually(t, func() bool {
			p.post(t, "/v2/models/iris/infer", irisRequest, http.Header{"Prefer": {"respond-async"}})
			code, reason = readiness(p)
			return code == http.StatusServiceUnavailable
		}, 30*time.Second, 200*time.Millisecond, "readiness tells the disk is full")
		require.Contains(t, reason, "disk")
		sent := time.Now()
		full, _ := p.post(t, "/v2/models/iris/infer", irisRequest, nil)
		require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, full, "a request is answered or refused")
		require.Less(t, time.Since(sent), 25*time.Second, "not left to hang until the request timeout (30 s)")

		require.NoError(t, os.Remove(filler))
		freed := time.Now()
		awaitCode(t, p, http.StatusOK, 60*time.Second, "predictions are answered again once the disk has room")
		require.Eventually(t, func() bool { code, _ := readiness(p); return code == http.StatusOK }, 30*time.Second, 200*time.Millisecond)
		lost := before.tally.collect(t, p.url, 60*time.Second)
		report(t, reliability{scenario: "disk full, then freed", sent: before.tally.sent.Load(), acked: before.tally.acked.Load(),
			answered: before.tally.answered.Load(), lost: int64(lost), late: late(), recover: time.Since(freed),
			note: "readiness 503 naming the disk while full; requests refused (503) once their stream cannot store them, not at their timeout; JetStream back without a restart"})
		require.Zero(t, lost, "requests acknowledged before the disk filled are answered")
	})

	t.Run("stream deleted and made again", func(t *testing.T) {
		ctx := t.Context()
		awaitCode(t, p, http.StatusOK, 30*time.Second, "serving")
		// After JetStream has been restarted in the process (the disk
		// scenario), nats-server may answer this delete "not found" though
		// it deletes the stream: what counts is that the stream is gone.
		_ = js.DeleteStream(ctx, events.StreamName("iris"))
		_, err := js.Stream(ctx, events.StreamName("iris"))
		require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
		_, err = events.EnsureStream(ctx, js, "iris", events.DefaultQueueConfig()) // a restore: the stream, without its consumers
		require.NoError(t, err)
		took := awaitCode(t, p, http.StatusOK, 60*time.Second, "the control plane makes the consumer again and the worker takes requests")
		report(t, reliability{scenario: "function's stream deleted and made again", recover: took,
			note: "the control plane makes the revision's consumer again; the running worker takes requests again, no restart"})
	})

	t.Run("catalog purged", func(t *testing.T) {
		ctx := t.Context()
		stream, err := js.Stream(ctx, "KV_"+events.FunctionsBucket)
		require.NoError(t, err)
		require.NoError(t, stream.Purge(ctx))
		purged := time.Now()
		awaitCode(t, p, http.StatusNotFound, 30*time.Second, "the activator stops routing to a function the catalog no longer has")
		forgotten := time.Since(purged)
		dir := t.TempDir()
		sluice(t, "train", "--input", "../deploy/demo/iris.csv", "--output", filepath.Join(dir, "iris.onnx"))
		spec, err := os.ReadFile("../deploy/demo/iris.yaml")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "iris.yaml"), spec, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "iris.csv"), mustRead(t, "../deploy/demo/iris.csv"), 0o644))
		sluice(t, "--nats-url", natsURL(t, p), "deploy", "-f", filepath.Join(dir, "iris.yaml"))
		took := awaitCode(t, p, http.StatusOK, 60*time.Second, "deployed again, it serves")
		report(t, reliability{scenario: "catalog purged", recover: took,
			note: "404 after " + forgotten.Round(100*time.Millisecond).String() + " (no worker loops on a missing function); serves again once deployed again, no restart"})
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data
}
