package rollout_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/rollout"
)

var start = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func policy() functions.RolloutSpec {
	spec := functions.RolloutSpec{MaxLatencyP99: functions.Duration{Duration: 250 * time.Millisecond}, MinAccuracy: 0.9}
	spec.Default()
	return spec
}

// atStep is a progressing rollout at the policy's step index, entered at
// start with the candidate's counts then.
func atStep(step int, counted functions.Counts) functions.RolloutStatus {
	status := policy().Start("1", "2", start)
	status.Step, status.Weight, status.StepStart = step, policy().Steps[step], counted
	return status
}

func clean(requests int64) functions.Counts { return functions.Counts{Requests: requests} }

func TestStep(t *testing.T) {
	later := start.Add(time.Minute)
	cases := []struct {
		name       string
		status     functions.RolloutStatus
		metrics    rollout.Metrics
		now        time.Time
		phase      functions.RolloutPhase
		weight     int
		event      string
		reason     string
		stepStarts time.Time
	}{
		{
			name: "holds a step for the interval", status: atStep(0, clean(0)),
			metrics: rollout.Metrics{Candidate: clean(5000)}, now: start.Add(30 * time.Second),
			phase: functions.RolloutProgressing, weight: 10, reason: "weight 10%: held 30s of 1m0s", stepStarts: start,
		},
		{
			name: "waits below the minimum of requests, however clean", status: atStep(0, clean(0)),
			metrics: rollout.Metrics{Candidate: clean(199)}, now: later,
			phase: functions.RolloutProgressing, weight: 10, reason: "inconclusive, 199 of 200 requests at this weight", stepStarts: start,
		},
		{
			name: "waits when the gates cannot tell yet", status: atStep(0, clean(0)),
			metrics: rollout.Metrics{Candidate: functions.Counts{Requests: 250, Errors: 2}}, now: later,
			phase: functions.RolloutProgressing, weight: 10, reason: "inconclusive, errors Inconclusive: 2 of 250", stepStarts: start,
		},
		{
			name: "takes the next weight when every gate passes", status: atStep(0, clean(0)),
			metrics: rollout.Metrics{Candidate: clean(400)}, now: later,
			phase: functions.RolloutProgressing, weight: 50, event: rollout.EventStepped, reason: "weight 50%: every gate passed at 10%", stepStarts: later,
		},
		{
			name: "counts a step's requests from its start", status: atStep(1, clean(400)),
			metrics: rollout.Metrics{Candidate: clean(500)}, now: later,
			phase: functions.RolloutProgressing, weight: 50, reason: "100 of 200 requests at this weight", stepStarts: start,
		},
		{
			name: "promotes after the last step", status: atStep(2, clean(400)),
			metrics: rollout.Metrics{Candidate: clean(700)}, now: later,
			phase: functions.RolloutPromoted, weight: 100, event: rollout.EventPromoted, reason: "promoted", stepStarts: later,
		},
		{
			name: "rolls back when errors are worse than the limit, before the interval", status: atStep(1, clean(400)),
			metrics: rollout.Metrics{Candidate: functions.Counts{Requests: 420, Errors: 12}}, now: start.Add(time.Second),
			phase: functions.RolloutRolledBack, weight: 0, event: rollout.EventRolledBack, reason: "rolled back: gate failed: errors Fail: 12 of 420", stepStarts: start,
		},
		{
			name: "rolls back a slow candidate", status: atStep(0, clean(0)),
			metrics: rollout.Metrics{Candidate: functions.Counts{Requests: 100, Slow: 10}}, now: start.Add(time.Second),
			phase: functions.RolloutRolledBack, event: rollout.EventRolledBack, reason: "gate failed: latency Fail: 10 of 100", stepStarts: start,
		},
		{
			name: "rolls back an inaccurate candidate once feedback comes", status: atStep(0, clean(0)),
			metrics: rollout.Metrics{Candidate: functions.Counts{Requests: 300, Labelled: 30, Misses: 20}}, now: later,
			phase: functions.RolloutRolledBack, event: rollout.EventRolledBack, reason: "gate failed: accuracy Fail: 20 of 30", stepStarts: start,
		},
		{
			name: "does not judge accuracy on a handful of labels", status: atStep(0, clean(0)),
			metrics: rollout.Metrics{Candidate: functions.Counts{Requests: 400, Labelled: 5, Misses: 5}}, now: later,
			phase: functions.RolloutProgressing, weight: 50, event: rollout.EventStepped, stepStarts: later,
		},
		{
			name: "does not fail a candidate for what the stable revision does too", status: atStep(0, clean(0)),
			metrics: rollout.Metrics{Candidate: functions.Counts{Requests: 1000, Errors: 30}, Stable: functions.Counts{Requests: 9000, Errors: 270}}, now: later,
			phase: functions.RolloutProgressing, weight: 50, event: rollout.EventStepped, stepStarts: later,
		},
		{
			name: "rolls back a candidate whose model cannot run", status: atStep(0, clean(0)),
			metrics: rollout.Metrics{CandidateCannotRun: "Could not find an implementation for Add(6)"}, now: start,
			phase: functions.RolloutRolledBack, event: rollout.EventRolledBack, reason: "revision 2 cannot run: Could not find an implementation for Add(6)", stepStarts: start,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			decision := rollout.Step(c.status, c.metrics, policy(), c.now)
			got := decision.Status
			require.Equal(t, c.phase, got.Phase, got.Reason)
			require.Equal(t, c.weight, got.Weight)
			require.Equal(t, c.event, decision.Event)
			require.Contains(t, got.Reason, c.reason)
			require.Equal(t, c.stepStarts, got.StepStartedAt)
			require.Equal(t, c.now, got.UpdatedAt)
		})
	}
}

func TestStepLeavesARolloutThatIsNotProgressing(t *testing.T) {
	for _, status := range []functions.RolloutStatus{
		rollout.Abort(atStep(1, clean(0)), "aborted by hand", start).Status,
		rollout.Promote(atStep(1, clean(0)), "promoted by hand", start).Status,
		must(rollout.SetWeight(atStep(1, clean(0)), 30, start)).Status,
	} {
		decision := rollout.Step(status, rollout.Metrics{Candidate: functions.Counts{Requests: 1000, Errors: 1000}}, policy(), start.Add(time.Hour))
		require.Equal(t, status, decision.Status)
		require.Empty(t, decision.Event)
	}
}

func TestByHand(t *testing.T) {
	promoted := rollout.Promote(atStep(0, clean(0)), "by hand", start).Status
	require.Equal(t, functions.Traffic{{Revision: "2", Weight: 100}}, promoted.Traffic())
	require.Equal(t, "2", promoted.Stable)

	aborted := rollout.Abort(atStep(1, clean(0)), "by hand", start)
	require.Equal(t, rollout.EventRolledBack, aborted.Event)
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 100}}, aborted.Status.Traffic())

	paused := must(rollout.SetWeight(atStep(0, clean(0)), 30, start)).Status
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 70}, {Revision: "2", Weight: 30}}, paused.Traffic())
	_, err := rollout.SetWeight(aborted.Status, 30, start)
	require.ErrorContains(t, err, "is over")
	_, err = rollout.SetWeight(paused, 101, start)
	require.ErrorContains(t, err, "weight: must be between 0 and 100, got 101")
}

func must[T any](value T, err error) T {
	if err != nil {
		panic(err)
	}
	return value
}

func TestShadow(t *testing.T) {
	spec := policy()
	spec.Shadow = true
	spec.Default() // at most 5 % of answers may disagree
	started := spec.Start("1", "2", start)
	require.True(t, started.Shadowing)
	require.Zero(t, started.Weight)
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 100}}, started.Traffic(), "in shadow the candidate takes no traffic of its own")

	later := start.Add(time.Minute)
	waiting := rollout.Step(started, rollout.Metrics{Candidate: functions.Counts{Requests: 400, Compared: 20}}, spec, later)
	require.True(t, waiting.Status.Shadowing)
	require.Contains(t, waiting.Status.Reason, "shadow: inconclusive, agreement Inconclusive: 0 of 20")

	out := rollout.Step(started, rollout.Metrics{Candidate: functions.Counts{Requests: 400, Compared: 400, Disagreed: 3}}, spec, later)
	require.Equal(t, rollout.EventStepped, out.Event)
	require.False(t, out.Status.Shadowing)
	require.Equal(t, 10, out.Status.Weight, "out of shadow at the first step")
	require.Equal(t, 0, out.Status.Step)
	require.Contains(t, out.Status.Reason, "every gate passed in shadow")

	disagreeing := rollout.Step(started, rollout.Metrics{Candidate: functions.Counts{Requests: 100, Compared: 100, Disagreed: 40}}, spec, start.Add(time.Second))
	require.Equal(t, functions.RolloutRolledBack, disagreeing.Status.Phase)
	require.Contains(t, disagreeing.Status.Reason, "gate failed: agreement Fail: 40 of 100")
	require.False(t, disagreeing.Status.Shadowing)
}
