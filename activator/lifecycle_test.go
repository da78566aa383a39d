package activator_test

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
)

func TestShutdownAnswersTheRequestInFlight(t *testing.T) {
	p := startPlatform(t, newSetup())
	answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", jsonHeader(), irisBody))
	request := takeRequest(t, p.js) // published, its caller waiting

	p.run.stop()
	require.Eventually(t, func() bool {
		conn, err := net.DialTimeout("tcp", p.run.addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	}, 5*time.Second, 10*time.Millisecond, "the activator still takes new connections after shutdown began")
	select {
	case <-p.run.done:
		t.Fatalf("Run returned (%v) while a request was in flight", p.run.err)
	default:
	}

	reply(t, p.js, request, 0, irisAnswer)
	require.NoError(t, request.Ack())
	answer := receive(t, answers)
	require.Equal(t, http.StatusOK, answer.status, "body: %s", answer.body)
	require.JSONEq(t, irisAnswer, string(answer.body))
	select {
	case <-p.run.done:
		require.NoError(t, p.run.err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the last answer")
	}
}

func TestNotReadyBeforeTheCatalogIsRead(t *testing.T) {
	srv, _, js := natstest.JetStream(t)
	catalog, err := functions.OpenCatalog(t.Context(), js)
	require.NoError(t, err)
	p := &platform{client: &http.Client{Timeout: 10 * time.Second}}
	// The registry is never run, so it never syncs.
	p.run = runActivator(t, natstest.Connect(t, srv), functions.NewRegistry(catalog), newSetup().config, prometheus.NewRegistry())
	p.url = "http://" + p.run.addr
	t.Cleanup(func() {
		p.run.stop()
		require.NoError(t, p.run.wait())
	})

	require.Equal(t, http.StatusOK, p.get(t, "/v2/health/live").status)
	answer := p.get(t, "/v2/health/ready")
	require.Contains(t, errorMessage(t, answer, http.StatusServiceUnavailable), "catalog has not been read")
	require.Equal(t, "1", answer.header.Get("Retry-After"))
}
