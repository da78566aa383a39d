package main

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Each goal row reads its figure and its anchor at the concurrency the goal
// names, not a row whose name merely begins the same (concurrency 1 of 16).
func TestBenchGoalsReadsEachFigureBesideItsOwnAnchor(t *testing.T) {
	rows := []benchRow{
		{what: atConcurrency(syncRow, 16), rate: 4000, p50: 3 * time.Millisecond},
		{what: atConcurrency(hopsSyncRow, 16), rate: 8000},
		{what: atConcurrency(asyncRow, 16), rate: 3000},
		{what: atConcurrency(hopsRecordsRow, 16), rate: 6000},
	}
	goals := benchGoals(rows)
	require.Len(t, goals, 2, "no c=1 rows, no overhead row; no bare server, no ratio to it: %+v", goals)
	require.Equal(t, "— sync predict over HTTP, 1 row, concurrency 16, over hops alone", goals[0].what)
	require.InDelta(t, 0.5, goals[0].rate, 1e-9)
	require.Equal(t, "— async predict (202), 1 row, concurrency 16, over hops alone with the async records", goals[1].what)
	require.InDelta(t, 0.5, goals[1].rate, 1e-9)

	rows = append(rows,
		benchRow{what: "ONNX Runtime in-process, batch 16", p50: 100 * time.Microsecond},
		benchRow{what: "ONNX Runtime in-process, batch 1", p50: 10 * time.Microsecond, p99: 40 * time.Microsecond},
		benchRow{what: atConcurrency(syncRow, 1), p50: 710 * time.Microsecond, p99: 2040 * time.Microsecond},
		benchRow{what: atConcurrency(hopsSyncRow, 1), p50: 400 * time.Microsecond, p99: time.Millisecond})
	goals = benchGoals(rows)
	require.Len(t, goals, 3)
	require.Equal(t, 700*time.Microsecond, goals[0].p50, "the overhead is over batch 1's p50, not batch 16's")
	require.Equal(t, 2*time.Millisecond, goals[0].p99)
	require.Contains(t, goals[0].comment, "the hops alone take 400µs p50, 1ms p99 of it; this design's goal p50 <= the hops' + 0.4ms (0.88x), p99 <= the hops' + 1.5ms (0.80x)")
	require.Contains(t, goals[1].comment, "this design's goal >= 0.50x the anchor: 1.00x it")

	rows[0].rounds, rows[1].rounds = []float64{3000, 5000}, []float64{6000, 8000}
	require.Contains(t, benchGoals(rows)[1].comment, "round by round 0.50x 0.62x", "each round's figure over its anchor in the same round")
}

// The levels take turns, round by round, and each level's throughput counts
// only its own turns.
func TestInterleavedLevelsTakeTurns(t *testing.T) {
	var mu sync.Mutex
	var hits []string
	server := func(name string) vegeta.Target {
		s := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			mu.Lock()
			if len(hits) == 0 || hits[len(hits)-1] != name {
				hits = append(hits, name)
			}
			mu.Unlock()
		}))
		t.Cleanup(s.Close)
		return vegeta.Target{Method: http.MethodGet, URL: s.URL}
	}
	start := time.Now()
	rows := interleaved([]level{{server("a"), 2, "a"}, {server("b"), 2, "b"}}, 2, 400*time.Millisecond)
	wall := time.Since(start)
	require.Equal(t, []string{"a", "b", "a", "b"}, hits)
	for _, row := range rows {
		require.Len(t, row.rounds, 2)
		require.Positive(t, row.requests)
		require.Greater(t, row.rate, 1.5*float64(row.requests)/wall.Seconds(), "%s: its rate is over its own turns, about half the time", row.what)
	}
}
