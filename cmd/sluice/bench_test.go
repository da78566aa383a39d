package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	require.Contains(t, goals[0].comment, "the hops alone take 400µs p50, 1ms p99 of it")
}
