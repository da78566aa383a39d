package retrain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/retrain"
	"sluice.dev/sluice/functions/train"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func policy() functions.RetrainSpec {
	spec := functions.RetrainSpec{Data: functions.ModelSpec{Path: "iris.csv"}, NewRows: 100, Drift: &functions.DriftSpec{}, MinAccuracy: 0.8}
	spec.Default() // drift above 0.25 in 3 windows of 500; accuracy over 100 labels; 10m cooldown
	return spec
}

// idle is a function whose last training started an hour ago.
func idle() functions.RetrainStatus {
	return functions.RetrainStatus{Runs: 1, StartedAt: now.Add(-time.Hour), FeedbackAtStart: 1000}
}

func window(rows int64, psi float64) *functions.DriftWindow {
	return &functions.DriftWindow{Rows: rows, Features: []train.FeatureDrift{{Name: "petal_length", PSI: psi}, {Name: "sepal_width", PSI: 0.01}}}
}

func TestTrigger(t *testing.T) {
	cases := []struct {
		name    string
		status  functions.RetrainStatus
		obs     retrain.Observation
		train   bool
		trigger string
		reason  string
	}{
		{name: "nothing new", status: idle(), obs: retrain.Observation{Feedback: 1050}, reason: "no trigger"},
		{name: "a request", status: idle(), obs: retrain.Observation{Requests: []retrain.Request{{ID: "a", Reason: "new data in the lake"}}}, train: true, trigger: retrain.TriggerRequested, reason: "requested: new data in the lake"},
		{
			name: "a request during the cooldown", status: functions.RetrainStatus{StartedAt: now.Add(-time.Minute)},
			obs: retrain.Observation{Requests: []retrain.Request{{ID: "a"}}}, train: true, trigger: retrain.TriggerRequested,
		},
		{
			name: "a request already acted on", status: functions.RetrainStatus{StartedAt: now.Add(-time.Hour), Handled: []string{"a"}},
			obs: retrain.Observation{Requests: []retrain.Request{{ID: "a"}}}, reason: "no trigger",
		},
		{
			name: "a request while a training runs", status: functions.RetrainStatus{Run: "iris-train-1", StartedAt: now.Add(-time.Hour)},
			obs: retrain.Observation{Requests: []retrain.Request{{ID: "a"}}}, reason: "1 request(s) dropped: training iris-train-1 is in flight",
		},
		{name: "enough new rows", status: idle(), obs: retrain.Observation{Feedback: 1100}, train: true, trigger: retrain.TriggerNewRows, reason: "100 new labelled rows (at least 100)"},
		{
			name: "new rows during the cooldown", status: functions.RetrainStatus{StartedAt: now.Add(-time.Minute)},
			obs: retrain.Observation{Feedback: 5000}, reason: "cooling down until 2026-11-30T12:09:00Z",
		},
		{
			name: "the third drifted window in a row", status: functions.RetrainStatus{StartedAt: now.Add(-time.Hour), DriftedWindows: 2},
			obs: retrain.Observation{Window: window(500, 0.4)}, train: true, trigger: retrain.TriggerDrift,
			reason: "inputs drifted in 3 windows in a row: petal_length PSI 0.40 (above 0.25) over the last 500 inputs",
		},
		{
			name: "the second drifted window", status: functions.RetrainStatus{StartedAt: now.Add(-time.Hour), DriftedWindows: 1},
			obs: retrain.Observation{Window: window(500, 0.4)}, reason: "no trigger",
		},
		{
			name: "a drifted window too small to count", status: functions.RetrainStatus{StartedAt: now.Add(-time.Hour), DriftedWindows: 2},
			obs: retrain.Observation{Window: window(499, 3)}, reason: "no trigger",
		},
		{
			name: "accuracy below the minimum", status: idle(), obs: retrain.Observation{Feedback: 1000, Labelled: 200, Misses: 60},
			train: true, trigger: retrain.TriggerAccuracy, reason: "accuracy 0.700 on 200 labelled answers (at least 0.800)",
		},
		{
			name: "new rows while a new version rolls out", status: idle(), obs: retrain.Observation{Feedback: 5000, RollingOut: true},
			reason: "a new version is rolling out",
		},
		{
			name: "a request while a new version rolls out", status: idle(), obs: retrain.Observation{Feedback: 5000, RollingOut: true, Requests: []retrain.Request{{ID: "r"}}},
			train: true, trigger: retrain.TriggerRequested,
		},
		{name: "low accuracy on too few labels", status: idle(), obs: retrain.Observation{Labelled: 99, Misses: 99}, reason: "no trigger"},
		{
			name: "a finished run frees the function", status: functions.RetrainStatus{Run: "iris-train-1", StartedAt: now.Add(-time.Hour)},
			obs: retrain.Observation{Feedback: 100, RunDone: &retrain.RunStatus{Phase: retrain.Succeeded}}, train: true, trigger: retrain.TriggerNewRows,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			decision := retrain.Trigger(c.status, c.obs, policy(), now)
			require.Equal(t, c.train, decision.Train, decision.Reason)
			require.Equal(t, c.trigger, decision.Trigger)
			require.Contains(t, decision.Reason, c.reason)
			if decision.Train {
				require.Equal(t, now, decision.Status.StartedAt)
				require.Equal(t, c.trigger, decision.Status.Trigger)
				require.Equal(t, c.status.Runs+1, decision.Status.Runs)
				require.Zero(t, decision.Status.DriftedWindows)
			}
		})
	}
}

func TestTriggerCountsDriftedWindowsInARow(t *testing.T) {
	status := functions.RetrainStatus{StartedAt: now.Add(-time.Hour)}
	step := func(w *functions.DriftWindow) retrain.Decision {
		decision := retrain.Trigger(status, retrain.Observation{Window: w}, policy(), now)
		status = decision.Status
		return decision
	}
	step(window(500, 0.4))
	step(window(500, 0.4))
	require.Equal(t, 2, status.DriftedWindows)
	step(window(500, 0.1)) // a calm window breaks the run
	require.Zero(t, status.DriftedWindows)
	step(window(10, 0.9)) // too small: neither breaks nor extends it
	require.Zero(t, status.DriftedWindows)
	for range 2 {
		require.False(t, step(window(800, 0.5)).Train)
	}
	require.True(t, step(window(800, 0.5)).Train)
}

// TestTriggerStartsOneTrainingForManyCopies: a thousand copies of one
// request, one decision after another, start exactly one training.
func TestTriggerStartsOneTrainingForManyCopies(t *testing.T) {
	status, started, name := idle(), 0, ""
	for i := range 1000 {
		requests := []retrain.Request{{ID: "drift-7"}}
		if i == 0 {
			requests = append(requests, retrain.Request{ID: "drift-7"})
		}
		decision := retrain.Trigger(status, retrain.Observation{Requests: requests, Feedback: 1000}, policy(), now.Add(time.Duration(i)*time.Minute))
		status = decision.Status
		if decision.Train {
			started++
			status.Run = retrain.RunName("iris", status)
			name = status.Run
		}
		if i == 500 {
			status.Run = "" // the run finished; the copies keep coming
		}
	}
	require.Equal(t, 1, started)
	require.Regexp(t, `^iris-train-2-[0-9a-f]{6}$`, name, "named after the count of runs and the time")
	long := retrain.RunName(strings.Repeat("f", 63), functions.RetrainStatus{Runs: 12, StartedAt: now})
	require.Len(t, long, 63, "a DNS label, however long the function's name")
	require.NotEqual(t, long, retrain.RunName(strings.Repeat("f", 63), functions.RetrainStatus{Runs: 12, StartedAt: now.Add(time.Millisecond)}))
}
