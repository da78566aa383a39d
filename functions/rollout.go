package functions

import (
	"fmt"
	"slices"
	"time"
)

// RolloutSpec is how a new revision takes traffic from the stable one: in
// steps of weight, each held for an interval and passed only when the
// candidate's gates say so (functions/rollout). Without it a new revision
// takes all traffic at once.
type RolloutSpec struct {
	// Steps are the candidate's weights in percent, rising, the last 100.
	Steps []int `json:"steps,omitempty"`
	// Interval is the least time a step is held.
	Interval Duration `json:"interval,omitzero"`
	// MinRequests is the least number of candidate requests a step needs
	// before the gates may pass it; with fewer the rollout waits.
	MinRequests int `json:"minRequests,omitempty"`
	// MaxErrorRate is the share of failed candidate requests tolerated.
	MaxErrorRate float64 `json:"maxErrorRate,omitempty"`
	// MaxLatencyP99, when set, bounds the candidate's 99th percentile latency.
	MaxLatencyP99 Duration `json:"maxLatencyP99,omitzero"`
	// MinAccuracy, when set, is the least share of candidate answers that
	// feedback labels correct.
	MinAccuracy float64 `json:"minAccuracy,omitempty"`
	// Shadow starts the rollout in shadow: the candidate gets a copy of the
	// stable revision's synchronous requests, its answers are compared with
	// the stable ones and discarded, and it takes traffic only once it
	// agrees often enough (at most MaxDisagreement of answers differ).
	Shadow          bool    `json:"shadow,omitempty"`
	MaxDisagreement float64 `json:"maxDisagreement,omitempty"`
}

// Default fills the unset fields: steps 10, 50, 100 a minute apart, at least
// 200 requests a step, at most 1 % errors.
func (r *RolloutSpec) Default() {
	if len(r.Steps) == 0 {
		r.Steps = []int{10, 50, 100}
	}
	if r.Interval.Duration == 0 {
		r.Interval.Duration = time.Minute
	}
	if r.MinRequests == 0 {
		r.MinRequests = 200
	}
	if r.MaxErrorRate == 0 {
		r.MaxErrorRate = 0.01
	}
	if r.Shadow && r.MaxDisagreement == 0 {
		r.MaxDisagreement = 0.05
	}
}

// validate reports the fields of spec.rollout that are wrong.
func (r *RolloutSpec) validate(bad func(string, string, ...any)) {
	for i, weight := range r.Steps {
		if weight < 1 || weight > 100 || (i > 0 && weight <= r.Steps[i-1]) {
			bad(fmt.Sprintf("spec.rollout.steps[%d]", i), "must rise from 1 to 100, got %v", r.Steps)
			break
		}
	}
	if len(r.Steps) > 0 && r.Steps[len(r.Steps)-1] != 100 {
		bad("spec.rollout.steps", "must end at 100, got %v", r.Steps)
	}
	positive(bad, "spec.rollout.interval", r.Interval.Duration, time.Second, 24*time.Hour)
	if r.MinRequests < 1 || r.MinRequests > 1_000_000 {
		bad("spec.rollout.minRequests", "must be between 1 and 1000000, got %d", r.MinRequests)
	}
	if !(r.MaxErrorRate > 0 && r.MaxErrorRate < 0.5) {
		bad("spec.rollout.maxErrorRate", "must be above 0 and below 0.5, got %v", r.MaxErrorRate)
	}
	if d := r.MaxLatencyP99.Duration; d != 0 {
		positive(bad, "spec.rollout.maxLatencyP99", d, time.Millisecond, time.Hour)
	}
	if !(r.MinAccuracy >= 0 && r.MinAccuracy < 1) {
		bad("spec.rollout.minAccuracy", "must be 0 (no accuracy gate) or above, and below 1, got %v", r.MinAccuracy)
	}
	if r.Shadow && !(r.MaxDisagreement > 0 && r.MaxDisagreement < 0.5) {
		bad("spec.rollout.maxDisagreement", "must be above 0 and below 0.5, got %v", r.MaxDisagreement)
	}
}

// RolloutPhase is where a rollout is.
type RolloutPhase string

// The phases of a rollout. Progressing moves by the gates; Paused holds
// weights a person set; Promoted and RolledBack are final.
const (
	RolloutProgressing RolloutPhase = "Progressing"
	RolloutPaused      RolloutPhase = "Paused"
	RolloutPromoted    RolloutPhase = "Promoted"
	RolloutRolledBack  RolloutPhase = "RolledBack"
)

// RolloutStatus is the state of the latest rollout of a function: which
// revision is the candidate, which the stable one, and how far it got.
type RolloutStatus struct {
	Stable    string       `json:"stable"`
	Candidate string       `json:"candidate"`
	Phase     RolloutPhase `json:"phase"`
	// Shadowing is set while the candidate gets copies and no traffic of its
	// own; then Step indexes RolloutSpec.Steps, and Weight is the
	// candidate's percent now.
	Shadowing bool `json:"shadowing,omitempty"`
	Step      int  `json:"step"`
	Weight    int  `json:"weight"`
	// StepStartedAt is when the candidate took this step's weight, and
	// StepStart what it had been counted by then.
	StepStartedAt time.Time `json:"stepStartedAt"`
	StepStart     Counts    `json:"stepStart"`
	// Reason says, for a person, why the rollout is where it is, and Gates
	// what the candidate was last judged by.
	Reason    string        `json:"reason,omitempty"`
	Gates     []RolloutGate `json:"gates,omitempty"`
	UpdatedAt time.Time     `json:"updatedAt,omitzero"`
}

// Start is a rollout that has just begun: candidate at the first weight,
// stable the rest.
func (r RolloutSpec) Start(stable, candidate string, now time.Time) RolloutStatus {
	status := RolloutStatus{
		Stable: stable, Candidate: candidate, Phase: RolloutProgressing,
		Weight: r.Steps[0], StepStartedAt: now, UpdatedAt: now,
		Reason: fmt.Sprintf("started at weight %d%%", r.Steps[0]),
	}
	if r.Shadow {
		status.Shadowing, status.Weight = true, 0
		status.Reason = "started in shadow: the candidate answers copies of the traffic"
	}
	return status
}

// stable is the revision a new rollout starts from: the stable revision of
// a rollout that has not finished (its candidate is replaced), else the one
// that serves requests without a version; none when no revision can serve.
func (s Status) stable() (string, bool) {
	if r := s.Rollout; r != nil && !r.Done() {
		return r.Stable, true
	}
	primary, ok := s.Primary()
	return primary.Name, ok
}

// Done says whether the rollout is over, promoted or rolled back.
func (r RolloutStatus) Done() bool {
	return r.Phase == RolloutPromoted || r.Phase == RolloutRolledBack
}

// Traffic is the traffic table the rollout asks for: the candidate at its
// weight, the stable revision the rest.
func (r RolloutStatus) Traffic() Traffic {
	table := Traffic{{Revision: r.Stable, Weight: 100 - r.Weight}, {Revision: r.Candidate, Weight: r.Weight}}
	return slices.DeleteFunc(table, func(target TrafficTarget) bool { return target.Weight == 0 })
}

// Counts are what was counted of one revision's requests since it went live:
// each a running total, so two readings subtract.
type Counts struct {
	Requests int64 `json:"requests"`
	// Errors are requests that failed for a server-side reason.
	Errors int64 `json:"errors"`
	// Slow are requests slower than the rollout's MaxLatencyP99.
	Slow int64 `json:"slow"`
	// Labelled are answers that feedback gave a label; Misses those whose
	// label differed from the answer.
	Labelled int64 `json:"labelled"`
	Misses   int64 `json:"misses"`
	// Compared are shadow answers compared with the stable revision's;
	// Disagreed those that differed.
	Compared  int64 `json:"compared,omitempty"`
	Disagreed int64 `json:"disagreed,omitempty"`
}

// Add is c plus more.
func (c Counts) Add(more Counts) Counts {
	return Counts{
		Requests: c.Requests + more.Requests, Errors: c.Errors + more.Errors, Slow: c.Slow + more.Slow,
		Labelled: c.Labelled + more.Labelled, Misses: c.Misses + more.Misses,
		Compared: c.Compared + more.Compared, Disagreed: c.Disagreed + more.Disagreed,
	}
}

// Sub is c less an earlier reading.
func (c Counts) Sub(earlier Counts) Counts {
	return Counts{
		Requests: c.Requests - earlier.Requests, Errors: c.Errors - earlier.Errors, Slow: c.Slow - earlier.Slow,
		Labelled: c.Labelled - earlier.Labelled, Misses: c.Misses - earlier.Misses,
		Compared: c.Compared - earlier.Compared, Disagreed: c.Disagreed - earlier.Disagreed,
	}
}

// Verdict is what a rollout gate concludes from the evidence so far.
type Verdict string

// The verdicts. Inconclusive means wait for more requests, never judge.
const (
	Inconclusive Verdict = "Inconclusive"
	Pass         Verdict = "Pass"
	Fail         Verdict = "Fail"
)

// RolloutGate is one sequential test of a candidate (functions/rollout): the
// share of its requests that went badly — failed, were slow, were labelled
// wrong — against a limit.
type RolloutGate struct {
	Name    string  `json:"name"`
	Verdict Verdict `json:"verdict"`
	// Bad of Observed requests went badly.
	Bad      int64 `json:"bad"`
	Observed int64 `json:"observed"`
	// Good and Worse are the hypotheses: a bad share of Good passes, one of
	// Worse fails.
	Good  float64 `json:"good"`
	Worse float64 `json:"worse"`
	// LogLikelihoodRatio is the evidence for Worse over Good.
	LogLikelihoodRatio float64 `json:"logLikelihoodRatio"`
}

func (g RolloutGate) String() string {
	share := 0.0
	if g.Observed > 0 {
		share = float64(g.Bad) / float64(g.Observed)
	}
	return fmt.Sprintf("%s %s: %d of %d (%.2f%%; passes at %.2f%%, fails at %.2f%%)",
		g.Name, g.Verdict, g.Bad, g.Observed, 100*share, 100*g.Good, 100*g.Worse)
}
