package worker_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// TestOutcomesAreCountedAndPredictionsLogged: each finished request is
// counted for its revision — failed, late or answered — and each answer's
// rows and labels reach the prediction log under the request's id.
func TestOutcomesAreCountedAndPredictionsLogged(t *testing.T) {
	p := deployIris(t)
	counts, err := events.EnsureCountsBucket(t.Context(), p.js)
	require.NoError(t, err)
	_, err = events.EnsurePredictionsStream(t.Context(), p.js, "iris")
	require.NoError(t, err)
	counter := functions.NewCounter(counts)
	cfg := p.config()
	cfg.Counter, cfg.SlowAfter, cfg.LogPredictions, cfg.JetStream = counter, time.Hour, true, p.js
	p.start(t, cfg, p.sessions(t, 1))

	in := subscribe(t, p.client)
	req, rows := irisRequest(t, "scored", 0, 3)
	p.publish(t, requestMsg(t, p.fn, "scored", body(t, req), in.subject, time.Now().Add(time.Minute)))
	requireIrisAnswer(t, in.next(t), rows)
	p.publish(t, requestMsg(t, p.fn, "late", body(t, req), in.subject, time.Now().Add(-time.Second)))
	p.streamEmpty(t)

	require.NoError(t, counter.Flush(t.Context()))
	got, err := functions.ReadCounts(t.Context(), counts, "iris", p.fn.Status.Revision)
	require.NoError(t, err)
	require.Equal(t, functions.Counts{Requests: 2, Errors: 1}, got, "the request whose caller had gone counts as an error")

	var prediction events.Prediction
	require.Eventually(t, func() bool {
		prediction, err = events.ReadPrediction(t.Context(), p.js, "iris", "scored")
		return err == nil
	}, waitFor, 10*time.Millisecond)
	require.Equal(t, p.fn.Status.Revision, prediction.Revision)
	require.Len(t, prediction.Features, 3)
	require.InDelta(t, rows[2][3], prediction.Features[2][3], 1e-6)
	require.Len(t, prediction.Labels, 3)
	require.Contains(t, []string{"setosa", "versicolor", "virginica"}, prediction.Labels[0])
	_, err = events.ReadPrediction(t.Context(), p.js, "iris", "late")
	require.ErrorIs(t, err, events.ErrNoPrediction)
}
