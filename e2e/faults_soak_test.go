//go:build faults

package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// soakDuration is $SLUICE_SOAK (make e2e-faults: 10m), else one minute.
func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	value := os.Getenv("SLUICE_SOAK")
	if value == "" {
		return time.Minute
	}
	d, err := time.ParseDuration(value)
	require.NoError(t, err, "$SLUICE_SOAK")
	return d
}

// TestFaultsSoak sends predictions at a fixed rate to the cluster for the
// soak's duration, SIGKILLing a worker every minute and starting it again,
// and reports each minute's error count and p99 latency and each process's
// memory: they stay flat.
func TestFaultsSoak(t *testing.T) {
	c := newFaultCluster(t)
	duration := soakDuration(t)
	late := lateSince(t, c.url)
	l := startFaultLoad(c.url, faultRate, false)
	start := time.Now()
	procs := append(append(slices.Clone(c.nats), c.workers...), c.activator)
	first := map[string]int64{}
	for _, p := range procs {
		first[p.name] = p.rss()
	}
	for minute := 1; time.Since(start) < duration; minute++ {
		time.Sleep(min(time.Minute, duration-time.Since(start)))
		victim := c.workers[minute%len(c.workers)]
		victim.stop(syscall.SIGKILL)
		time.Sleep(time.Second)
		victim.start(t)
	}
	l.stop()
	elapsed := time.Since(start)

	var minutes []string
	l.tally.mu.Lock()
	for from := start; from.Before(start.Add(elapsed)); from = from.Add(time.Minute) {
		var window []time.Duration
		for i, at := range l.tally.started {
			if !at.Before(from) && at.Before(from.Add(time.Minute)) {
				window = append(window, l.tally.latencies[i])
			}
		}
		slices.Sort(window)
		p99 := time.Duration(0)
		if len(window) > 0 {
			p99 = window[min(len(window)-1, len(window)*99/100)]
		}
		minutes = append(minutes, fmt.Sprintf("%d ok, p99 %s", len(window), p99.Round(time.Millisecond)))
	}
	l.tally.mu.Unlock()
	t.Logf("each minute: %s", strings.Join(minutes, "; "))

	var memory []string
	for _, p := range procs {
		if p.name == "worker-0" || p.name == "worker-1" {
			continue // started again each minute: their memory starts over
		}
		last := p.rss()
		memory = append(memory, fmt.Sprintf("%s %d→%d MiB", p.name, first[p.name]>>20, last>>20))
		require.Less(t, last, 2*first[p.name]+64<<20, "%s's memory grows: %d MiB at start, %d MiB at the end", p.name, first[p.name]>>20, last>>20)
	}
	report(t, l.tally.row(reliability{scenario: fmt.Sprintf("soak: %s at %d req/s, a worker SIGKILLed each minute", elapsed.Round(time.Second), faultRate),
		late: late(), recover: l.tally.percentile(0.99),
		note: fmt.Sprintf("recover: p99 over the soak; p99 each minute: %s; memory: %s", strings.Join(p99s(minutes), ", "), strings.Join(memory, ", "))}))
	require.Zero(t, l.tally.failed(), "failures: %v", l.tally.failures)
}

// p99s keeps the p99 of each minute's summary.
func p99s(minutes []string) []string {
	out := make([]string, len(minutes))
	for i, m := range minutes {
		_, out[i], _ = strings.Cut(m, "p99 ")
	}
	return out
}
