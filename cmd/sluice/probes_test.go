package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// The Go profiler is served beside the probes only on loopback: a worker of
// sluice up has it, a pod listening on every address does not.
func TestProbesServeTheProfilerOnlyOnLoopback(t *testing.T) {
	for _, c := range []struct {
		listen string
		want   int
	}{{"127.0.0.1:0", http.StatusOK}, {"0.0.0.0:0", http.StatusNotFound}} {
		listener, err := net.Listen("tcp", c.listen)
		require.NoError(t, err)
		ctx, stop := context.WithCancel(t.Context())
		served := make(chan error, 1)
		go func() {
			served <- serveProbes(ctx, listener, prometheus.NewRegistry(), func() error { return nil }, slog.New(slog.DiscardHandler))
		}()
		port := strconv.Itoa(listener.Addr().(*net.TCPAddr).Port)
		resp, err := http.Get("http://127.0.0.1:" + port + "/debug/pprof/")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, c.want, resp.StatusCode, c.listen)
		resp, err = http.Get("http://127.0.0.1:" + port + "/livez")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, c.listen)
		stop()
		require.NoError(t, <-served)
	}
}
