// Package rollout moves a function's traffic from its stable revision to a
// candidate step by step, and back when the candidate is worse. Step is the
// pure decision — the rollout's status, what was counted of both revisions,
// the policy and the time in; the next status out — so every rule is tested
// with a table and no clock; the loop around it reads the counts and writes
// the weights.
package rollout

import (
	"fmt"
	"time"

	"sluice.dev/sluice/functions"
)

// Events a decision announces, as the suffix of a dev.sluice.rollout. type.
const (
	EventStepped    = "stepped"
	EventPromoted   = "promoted"
	EventRolledBack = "rolled_back"
)

// Metrics are what was counted of the two revisions since each went live.
type Metrics struct {
	Candidate, Stable functions.Counts
	// CandidateCannotRun is why the candidate's model does not load, if it does not.
	CandidateCannotRun string
}

// Decision is the rollout's next status, with the gates it was judged by,
// and the event it announces ("" for none).
type Decision struct {
	Status functions.RolloutStatus
	Event  string
}

// Step decides what a progressing rollout does next: roll back when the
// candidate cannot run or a gate fails, at any time; take the next weight —
// or, after the last, promote — when the step was held for the interval, saw
// the policy's minimum of requests and every gate passes; else wait. A
// rollout that is over or paused stays as it is.
func Step(status functions.RolloutStatus, metrics Metrics, policy functions.RolloutSpec, now time.Time) Decision {
	if status.Phase != functions.RolloutProgressing {
		return Decision{Status: status}
	}
	if metrics.CandidateCannotRun != "" {
		return rollBack(status, fmt.Sprintf("revision %s cannot run: %s", status.Candidate, metrics.CandidateCannotRun), nil, now)
	}
	gates := Judge(metrics.Candidate, metrics.Stable, policy)
	verdict, decisive := Overall(gates)
	if verdict == functions.Fail {
		return rollBack(status, "gate failed: "+decisive.String(), gates, now)
	}
	inStep := metrics.Candidate.Sub(status.StepStart)
	held := now.Sub(status.StepStartedAt)
	switch {
	case held < policy.Interval.Duration:
		return wait(status, fmt.Sprintf("%s: held %s of %s", where(status), held.Round(time.Second), policy.Interval), gates, now)
	case inStep.Requests < int64(policy.MinRequests):
		return wait(status, fmt.Sprintf("%s: inconclusive, %d of %d requests at this weight", where(status), inStep.Requests, policy.MinRequests), gates, now)
	case verdict == functions.Inconclusive:
		return wait(status, fmt.Sprintf("%s: inconclusive, %s", where(status), decisive), gates, now)
	}
	if status.Shadowing {
		status.Shadowing, status.Weight, status.StepStart = false, policy.Steps[0], metrics.Candidate
		return moved(status, EventStepped, fmt.Sprintf("weight %d%%: every gate passed in shadow", status.Weight), gates, now)
	}
	next := status.Step + 1
	if next >= len(policy.Steps) { // the last step, or past it when the steps were shortened meanwhile
		status.Phase, status.Stable, status.Weight, status.StepStart = functions.RolloutPromoted, status.Candidate, 100, metrics.Candidate
		return moved(status, EventPromoted, fmt.Sprintf("promoted: every gate passed at weight %d%%", status.Weight), gates, now)
	}
	status.Step, status.Weight, status.StepStart = next, policy.Steps[next], metrics.Candidate
	return moved(status, EventStepped, fmt.Sprintf("weight %d%%: every gate passed at %d%%", status.Weight, policy.Steps[next-1]), gates, now)
}

// Promote ends a rollout at once with the candidate taking all traffic, as
// a person asks with `sluice rollout promote`.
func Promote(status functions.RolloutStatus, reason string, now time.Time) Decision {
	status.Phase, status.Stable, status.Weight, status.Shadowing = functions.RolloutPromoted, status.Candidate, 100, false
	return moved(status, EventPromoted, "promoted: "+reason, nil, now)
}

// Abort rolls a rollout back at once, as a person asks with `sluice rollout abort`.
func Abort(status functions.RolloutStatus, reason string, now time.Time) Decision {
	return rollBack(status, reason, nil, now)
}

// SetWeight holds the candidate at weight until a person promotes, aborts
// or sets another weight: the gates no longer move it.
func SetWeight(status functions.RolloutStatus, weight int, now time.Time) (Decision, error) {
	if status.Done() {
		return Decision{}, fmt.Errorf("the rollout of revision %s is over (%s)", status.Candidate, status.Phase)
	}
	if weight < 0 || weight > 100 {
		return Decision{}, fmt.Errorf("weight: must be between 0 and 100, got %d", weight)
	}
	status.Phase, status.Weight, status.Shadowing = functions.RolloutPaused, weight, false
	return moved(status, EventStepped, fmt.Sprintf("paused at weight %d%%, set by hand", weight), nil, now), nil
}

// where says where a rollout is, for its reason.
func where(status functions.RolloutStatus) string {
	if status.Shadowing {
		return "shadow"
	}
	return fmt.Sprintf("weight %d%%", status.Weight)
}

func rollBack(status functions.RolloutStatus, reason string, gates []functions.RolloutGate, now time.Time) Decision {
	status.Phase, status.Weight, status.Shadowing = functions.RolloutRolledBack, 0, false
	status.Reason, status.UpdatedAt, status.Gates = "rolled back: "+reason, now, gates
	return Decision{Status: status, Event: EventRolledBack}
}

func wait(status functions.RolloutStatus, reason string, gates []functions.RolloutGate, now time.Time) Decision {
	status.Reason, status.UpdatedAt, status.Gates = reason, now, gates
	return Decision{Status: status}
}

// moved starts a new step: its clock starts now.
func moved(status functions.RolloutStatus, event, reason string, gates []functions.RolloutGate, now time.Time) Decision {
	status.StepStartedAt, status.Reason, status.UpdatedAt, status.Gates = now, reason, now, gates
	return Decision{Status: status, Event: event}
}
