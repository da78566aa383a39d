package functions

import (
	"time"

	"sluice.dev/sluice/functions/train"
)

// RetrainSpec says what a function is trained on and what starts a training
// (functions/retrain): a request, new labelled rows, drifted inputs, or
// accuracy on feedback falling. Without it a function is never retrained.
type RetrainSpec struct {
	// Data is the base data, a CSV with a header row: a local file that
	// deploy uploads, or an object in the model store. Feedback rows are
	// added to it.
	Data ModelSpec `json:"data"`
	// Label is the label column (default: the last column).
	Label string `json:"label,omitempty"`
	// NewRows, when set, trains after that many labelled rows arrived.
	NewRows int `json:"newRows,omitempty"`
	// Drift, when set, trains when the inputs move away from the training data.
	Drift *DriftSpec `json:"drift,omitempty"`
	// MinAccuracy, when set, trains when the share of the answers of the
	// revision taking most traffic that feedback labels correct falls below
	// it (over at least MinFeedback labels since that revision went live).
	MinAccuracy float64 `json:"minAccuracy,omitempty"`
	MinFeedback int     `json:"minFeedback,omitempty"`
	// Cooldown is the least time between the starts of two trainings that
	// no person asked for.
	Cooldown Duration `json:"cooldown,omitzero"`
	// Deadline stops a training that runs longer.
	Deadline Duration `json:"deadline,omitzero"`
	// MaxRegression is how much lower than the serving model's the new
	// model's held-out accuracy may be before the trainer refuses to publish it.
	MaxRegression float64 `json:"maxRegression,omitempty"`
}

// DriftSpec is when drifted inputs start a training: when the population
// stability index of some feature, over windows of recent inputs, exceeds
// PSI in Windows windows in a row, each of at least MinSamples inputs.
type DriftSpec struct {
	PSI        float64 `json:"psi,omitempty"`
	MinSamples int     `json:"minSamples,omitempty"`
	Windows    int     `json:"windows,omitempty"`
}

// Default fills the unset fields: drift at PSI 0.25 over 3 windows of 500
// inputs, accuracy over 100 labels, 10 minutes' cooldown, 30 minutes'
// deadline, and no model published that is 2 points less accurate.
func (r *RetrainSpec) Default() {
	if r.Drift != nil {
		if r.Drift.PSI == 0 {
			r.Drift.PSI = 0.25
		}
		if r.Drift.MinSamples == 0 {
			r.Drift.MinSamples = 500
		}
		if r.Drift.Windows == 0 {
			r.Drift.Windows = 3
		}
	}
	if r.MinFeedback == 0 {
		r.MinFeedback = 100
	}
	if r.Cooldown.Duration == 0 {
		r.Cooldown.Duration = 10 * time.Minute
	}
	if r.Deadline.Duration == 0 {
		r.Deadline.Duration = 30 * time.Minute
	}
	if r.MaxRegression == 0 {
		r.MaxRegression = 0.02
	}
}

// validate reports the fields of spec.retrain that are wrong.
func (r *RetrainSpec) validate(bad func(string, string, ...any)) {
	switch {
	case r.Data.Path == "" && r.Data.URI == "":
		bad("spec.retrain.data", "set path (a local CSV file) or uri (an object in the model store, or an http(s) URL with sha256)")
	case r.Data.Path != "" && r.Data.URI != "":
		bad("spec.retrain.data", "set path or uri, not both")
	}
	if sum := r.Data.SHA256; sum != "" && !sha256Pattern.MatchString(sum) {
		bad("spec.retrain.data.sha256", "want 64 lower-case hex digits, got %q", sum)
	}
	if isURL(r.Data.URI) && r.Data.SHA256 == "" {
		bad("spec.retrain.data.sha256", "an http(s) uri needs the sha256 of what it serves")
	}
	if r.NewRows < 0 {
		bad("spec.retrain.newRows", "must not be negative, got %d", r.NewRows)
	}
	if d := r.Drift; d != nil {
		if !(d.PSI > 0 && d.PSI <= 10) {
			bad("spec.retrain.drift.psi", "must be above 0 and at most 10, got %v", d.PSI)
		}
		if d.MinSamples < 10 || d.MinSamples > 1_000_000 {
			bad("spec.retrain.drift.minSamples", "must be between 10 and 1000000, got %d", d.MinSamples)
		}
		if d.Windows < 1 || d.Windows > 100 {
			bad("spec.retrain.drift.windows", "must be between 1 and 100, got %d", d.Windows)
		}
	}
	if !(r.MinAccuracy >= 0 && r.MinAccuracy < 1) {
		bad("spec.retrain.minAccuracy", "must be 0 (off) or above, and below 1, got %v", r.MinAccuracy)
	}
	if r.MinFeedback < 1 {
		bad("spec.retrain.minFeedback", "must be at least 1, got %d", r.MinFeedback)
	}
	positive(bad, "spec.retrain.cooldown", r.Cooldown.Duration, 0, 7*24*time.Hour)
	if !(r.MaxRegression > 0 && r.MaxRegression <= 1) {
		bad("spec.retrain.maxRegression", "must be above 0 and at most 1, got %v", r.MaxRegression)
	}
	positive(bad, "spec.retrain.deadline", r.Deadline.Duration, time.Second, 7*24*time.Hour)
}

// LogsPredictions says whether the function's answers go to its prediction
// log: when feedback matters to it, for retraining or an accuracy gate.
func (s Spec) LogsPredictions() bool {
	return s.Retrain != nil || (s.Rollout != nil && s.Rollout.MinAccuracy > 0)
}

// RetrainStatus is what the retrain loop keeps of a function between decisions.
type RetrainStatus struct {
	// Run names the training in flight, "" when none is.
	Run string `json:"run,omitempty"`
	// Runs counts the trainings started; the next run's name ends in Runs+1.
	Runs int `json:"runs,omitempty"`
	// StartedAt is when the latest training started, and Trigger why.
	StartedAt time.Time `json:"startedAt,omitzero"`
	Trigger   string    `json:"trigger,omitempty"`
	// FeedbackAtStart is how many labelled rows had arrived by then.
	FeedbackAtStart int64 `json:"feedbackAtStart,omitempty"`
	// DriftedWindows counts the input windows in a row that drifted.
	DriftedWindows int `json:"driftedWindows,omitempty"`
	// Handled are the ids of the latest retrain requests acted on, so a
	// request sent again is not acted on twice.
	Handled []string `json:"handled,omitempty"`
	// Result says how the latest training ended, for a person.
	Result string `json:"result,omitempty"`
}

// DriftWindow is the drift of one closed window of recent inputs.
type DriftWindow struct {
	Rows     int64                `json:"rows"`
	Features []train.FeatureDrift `json:"features"`
}
