package rollout

import (
	"math"

	"sluice.dev/sluice/functions"
)

// The error bounds of every gate: a candidate as good as the limit is rolled
// back at most Alpha of the time, one twice as bad promoted at most Beta.
const (
	Alpha = 0.05
	Beta  = 0.05
)

// slowShare is the share of requests a p99 latency bound allows to be slower.
const slowShare = 0.01

// Judge runs the candidate's gates over everything counted of it since it
// went live (with the rollout), with the stable revision's lifetime counts
// as the baseline: errors, then latency when the policy bounds it, agreement
// with the stable answers when the rollout starts in shadow, then accuracy
// once at least minFeedback answers have labels.
func Judge(candidate, stable functions.Counts, policy functions.RolloutSpec) []functions.RolloutGate {
	baseline := int64(policy.MinRequests)
	gates := []functions.RolloutGate{sprt("errors", candidate.Errors, candidate.Requests, limit(policy.MaxErrorRate, stable.Errors, stable.Requests, baseline))}
	if policy.MaxLatencyP99.Duration > 0 {
		gates = append(gates, sprt("latency", candidate.Slow, candidate.Requests, limit(slowShare, stable.Slow, stable.Requests, baseline)))
	}
	if policy.Shadow {
		gates = append(gates, sprt("agreement", candidate.Disagreed, candidate.Compared, policy.MaxDisagreement))
	}
	if policy.MinAccuracy > 0 && candidate.Labelled >= minFeedback {
		gates = append(gates, sprt("accuracy", candidate.Misses, candidate.Labelled, limit(1-policy.MinAccuracy, stable.Misses, stable.Labelled, minFeedback)))
	}
	return gates
}

// minFeedback is the least number of labelled answers the accuracy gate
// judges on; before that it neither passes nor holds a rollout.
const minFeedback = 30

// Overall is Fail if a gate fails, Pass if all pass, else Inconclusive.
func Overall(gates []functions.RolloutGate) (functions.Verdict, functions.RolloutGate) {
	verdict, decisive := functions.Pass, functions.RolloutGate{}
	for _, gate := range gates {
		switch gate.Verdict {
		case functions.Fail:
			return functions.Fail, gate
		case functions.Inconclusive:
			if verdict == functions.Pass {
				verdict, decisive = functions.Inconclusive, gate
			}
		}
	}
	return verdict, decisive
}

// limit is the bad share a candidate may have: the policy's, or the stable
// revision's own when that is worse and measured on enough requests, so a
// candidate is never rolled back for a limit the stable revision misses too.
func limit(policy float64, stableBad, stableObserved, enough int64) float64 {
	if stableObserved >= enough {
		return max(policy, share(stableBad, stableObserved))
	}
	return policy
}

// sprt is Wald's sequential probability ratio test of "the bad share is
// good" against "it is worse" (twice good, or halfway to 1 when that is
// less), with error bounds Alpha and Beta. Wald's bounds hold however often
// it is looked at, which is what lets a rollout check it every tick.
func sprt(name string, bad, observed int64, good float64) functions.RolloutGate {
	good = min(good, 0.98) // a stable revision that is nearly always wrong leaves no room to be worse
	worse := min(2*good, (1+good)/2)
	ratio := float64(bad)*math.Log(worse/good) + float64(observed-bad)*math.Log((1-worse)/(1-good))
	gate := functions.RolloutGate{Name: name, Verdict: functions.Inconclusive, Bad: bad, Observed: observed, Good: good, Worse: worse, LogLikelihoodRatio: ratio}
	switch {
	case ratio >= math.Log((1-Beta)/Alpha):
		gate.Verdict = functions.Fail
	case ratio <= math.Log(Beta/(1-Alpha)):
		gate.Verdict = functions.Pass
	}
	return gate
}

func share(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return float64(part) / float64(whole)
}
