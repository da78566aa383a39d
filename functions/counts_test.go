package functions_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
)

func TestCountersAddUpAcrossProcesses(t *testing.T) {
	_, _, js := natstest.JetStream(t)
	kv, err := events.EnsureCountsBucket(t.Context(), js)
	require.NoError(t, err)
	first, second := functions.NewCounter(kv), functions.NewCounter(kv)

	none, err := functions.ReadCounts(t.Context(), kv, "iris", "2")
	require.NoError(t, err)
	require.Zero(t, none)

	first.Add("iris", "2", functions.Counts{Requests: 10, Errors: 1})
	first.Add("iris", "2", functions.Counts{Requests: 5, Slow: 2})
	first.Add("iris", "1", functions.Counts{Requests: 100})
	second.Add("iris", "2", functions.Counts{Requests: 7, Labelled: 3, Misses: 1})
	require.NoError(t, first.Flush(t.Context()))
	require.NoError(t, second.Flush(t.Context()))

	got, err := functions.ReadCounts(t.Context(), kv, "iris", "2")
	require.NoError(t, err)
	require.Equal(t, functions.Counts{Requests: 22, Errors: 1, Slow: 2, Labelled: 3, Misses: 1}, got)

	first.Add("iris", "2", functions.Counts{Requests: 1})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, first.Run(ctx, time.Hour), "Run writes what is left when it stops")
	got, err = functions.ReadCounts(t.Context(), kv, "iris", "2")
	require.NoError(t, err)
	require.EqualValues(t, 23, got.Requests, "running totals: a second write replaces the first")
}
