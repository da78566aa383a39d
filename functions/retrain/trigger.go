package retrain

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/train"
)

// Triggers: why a training starts.
const (
	TriggerRequested = "requested"
	TriggerNewRows   = "new-rows"
	TriggerDrift     = "drift"
	TriggerAccuracy  = "accuracy"
)

// handledKept is how many request ids a function remembers to drop copies.
const handledKept = 64

// Request is a retrain request event: a person's (`sluice retrain`) or
// another system's, such as a drift monitor's.
type Request struct {
	// ID is the event's id: copies of one event have the same.
	ID     string
	Reason string
}

// Observation is what the loop saw of a function since its last decision.
type Observation struct {
	// Requests are the retrain requests that arrived.
	Requests []Request
	// Feedback counts every labelled row that ever arrived.
	Feedback int64
	// Window is the drift of an input window that closed, if one did.
	Window *functions.DriftWindow
	// Labelled answers of the revision taking most traffic, since it went
	// live, of which Misses were wrong.
	Labelled, Misses int64
	// RunDone is set when the run in flight finished, with how it ended.
	RunDone *RunStatus
	// RollingOut is set while a new version of the function rolls out.
	RollingOut bool
}

// Decision is the retrain status after a decision, and whether to start a
// training now, why (Trigger and Reason) or why not (Reason).
type Decision struct {
	Status  functions.RetrainStatus
	Train   bool
	Trigger string
	Reason  string
}

// Trigger decides whether a function trains now. A request starts a
// training unless one is in flight or its id was acted on already; new
// rows, drift and accuracy start one when no training is in flight, no new
// version is rolling out and the cooldown since the last start has passed. Drift counts only windows of at
// least the minimum sample, and fires after the policy's number of drifted
// windows in a row, so that a small or noisy window raises no false alarm.
func Trigger(status functions.RetrainStatus, obs Observation, policy functions.RetrainSpec, now time.Time) Decision {
	status.Handled = slices.Clone(status.Handled)
	if obs.RunDone != nil && status.Run != "" {
		status.Result = fmt.Sprintf("run %s %s", status.Run, strings.ToLower(string(obs.RunDone.Phase)))
		if obs.RunDone.Message != "" {
			status.Result += ": " + obs.RunDone.Message
		}
		status.Run = ""
	}
	if drifted := countWindow(obs.Window, policy.Drift); drifted != nil {
		if *drifted {
			status.DriftedWindows++
		} else {
			status.DriftedWindows = 0
		}
	}
	var fresh []Request
	for _, request := range obs.Requests {
		if !slices.Contains(status.Handled, request.ID) && !slices.ContainsFunc(fresh, func(r Request) bool { return r.ID == request.ID }) {
			fresh = append(fresh, request)
		}
	}
	for _, request := range fresh {
		status.Handled = append(status.Handled, request.ID)
	}
	status.Handled = status.Handled[max(0, len(status.Handled)-handledKept):]
	if status.Run != "" {
		reason := fmt.Sprintf("training %s is in flight", status.Run)
		if len(fresh) > 0 {
			reason = fmt.Sprintf("%d request(s) dropped: %s", len(fresh), reason)
		}
		return Decision{Status: status, Reason: reason}
	}
	trigger, reason := "", ""
	switch newRows := obs.Feedback - status.FeedbackAtStart; {
	case len(fresh) > 0:
		trigger, reason = TriggerRequested, "requested"
		if fresh[0].Reason != "" {
			reason += ": " + fresh[0].Reason
		}
	case obs.RollingOut:
		return Decision{Status: status, Reason: "a new version is rolling out"}
	case now.Sub(status.StartedAt) < policy.Cooldown.Duration:
		return Decision{Status: status, Reason: fmt.Sprintf("cooling down until %s", status.StartedAt.Add(policy.Cooldown.Duration).Format(time.RFC3339))}
	case policy.NewRows > 0 && newRows >= int64(policy.NewRows):
		trigger, reason = TriggerNewRows, fmt.Sprintf("%d new labelled rows (at least %d)", newRows, policy.NewRows)
	case policy.Drift != nil && status.DriftedWindows >= policy.Drift.Windows:
		trigger, reason = TriggerDrift, fmt.Sprintf("inputs drifted in %d windows in a row: %s", status.DriftedWindows, describe(obs.Window, policy.Drift.PSI))
	case policy.MinAccuracy > 0 && obs.Labelled >= int64(policy.MinFeedback) && accuracy(obs) < policy.MinAccuracy:
		trigger, reason = TriggerAccuracy, fmt.Sprintf("accuracy %.3f on %d labelled answers (at least %.3f)", accuracy(obs), obs.Labelled, policy.MinAccuracy)
	default:
		return Decision{Status: status, Reason: "no trigger"}
	}
	status.Runs++
	status.StartedAt, status.Trigger, status.FeedbackAtStart, status.DriftedWindows = now, trigger, obs.Feedback, 0
	return Decision{Status: status, Train: true, Trigger: trigger, Reason: reason}
}

// RunName is the name of the training run a decision at now started: a DNS
// label of the function, the count of its runs and a suffix of the time,
// so that a function deleted and deployed again never reuses the name of a
// run a launcher still knows.
func RunName(function string, status functions.RetrainStatus) string {
	suffix := fmt.Sprintf("-train-%d-%06x", status.Runs, uint64(status.StartedAt.UnixNano())&0xffffff)
	return strings.TrimRight(function[:min(len(function), 63-len(suffix))], "-") + suffix
}

// countWindow says whether a closed window drifted; nil when there is no
// window, drift is off, or the window is too small to tell.
func countWindow(window *functions.DriftWindow, policy *functions.DriftSpec) *bool {
	if window == nil || policy == nil || window.Rows < int64(policy.MinSamples) {
		return nil
	}
	drifted := slices.ContainsFunc(window.Features, func(f train.FeatureDrift) bool { return f.PSI > policy.PSI })
	return &drifted
}

func describe(window *functions.DriftWindow, threshold float64) string {
	if window == nil {
		return fmt.Sprintf("some feature's PSI above %.2f", threshold)
	}
	var parts []string
	for _, feature := range window.Features {
		if feature.PSI > threshold {
			parts = append(parts, fmt.Sprintf("%s PSI %.2f", feature.Name, feature.PSI))
		}
	}
	return fmt.Sprintf("%s (above %.2f) over the last %d inputs", strings.Join(parts, ", "), threshold, window.Rows)
}

func accuracy(obs Observation) float64 {
	return 1 - float64(obs.Misses)/float64(obs.Labelled)
}
