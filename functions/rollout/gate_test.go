package rollout_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/rollout"
)

func TestJudge(t *testing.T) {
	cases := []struct {
		name      string
		candidate functions.Counts
		stable    functions.Counts
		verdicts  []functions.Verdict
	}{
		{name: "nothing seen yet", verdicts: []functions.Verdict{functions.Inconclusive, functions.Inconclusive}},
		{name: "clean and fast", candidate: clean(300), verdicts: []functions.Verdict{functions.Pass, functions.Pass}},
		{name: "errors at the limit pass", candidate: functions.Counts{Requests: 2000, Errors: 20}, verdicts: []functions.Verdict{functions.Pass, functions.Pass}},
		{name: "errors at twice the limit fail", candidate: functions.Counts{Requests: 4000, Errors: 80}, verdicts: []functions.Verdict{functions.Fail, functions.Pass}},
		{name: "every request failing fails on the fifth", candidate: functions.Counts{Requests: 5, Errors: 5}, verdicts: []functions.Verdict{functions.Fail, functions.Inconclusive}},
		{name: "four failures are not enough", candidate: functions.Counts{Requests: 4, Errors: 4}, verdicts: []functions.Verdict{functions.Inconclusive, functions.Inconclusive}},
		{
			name: "the stable revision's error share is the limit when it is worse", candidate: functions.Counts{Requests: 2000, Errors: 100},
			stable: functions.Counts{Requests: 10000, Errors: 500}, verdicts: []functions.Verdict{functions.Pass, functions.Pass},
		},
		{
			name: "but not measured on a handful", candidate: functions.Counts{Requests: 2000, Errors: 100},
			stable: functions.Counts{Requests: 10, Errors: 5}, verdicts: []functions.Verdict{functions.Fail, functions.Pass},
		},
		{
			name: "accuracy is judged with enough labels", candidate: functions.Counts{Requests: 300, Labelled: 100, Misses: 2},
			verdicts: []functions.Verdict{functions.Pass, functions.Pass, functions.Pass},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			gates := rollout.Judge(c.candidate, c.stable, policy())
			verdicts := make([]functions.Verdict, len(gates))
			for i, gate := range gates {
				verdicts[i] = gate.Verdict
			}
			require.Equal(t, c.verdicts, verdicts, "%v", gates)
		})
	}
}

// TestGateSimulation runs many synthetic rollouts through Step, at busy and
// at thin traffic, with the hardest candidates to tell apart: good ones that
// fail exactly the limit's share of requests, bad ones exactly twice it. It
// counts the wrong outcomes — a good candidate rolled back, a bad one
// promoted — and each must stay within 5 %.
func TestGateSimulation(t *testing.T) {
	const canaries = 1000
	spec := functions.RolloutSpec{}
	spec.Default() // 1 % errors, 200 requests a step, a minute a step
	random := rand.New(rand.NewPCG(1, 2))
	for _, traffic := range []struct {
		name    string
		perTick int // requests a 10 s tick, both revisions
	}{{"busy", 400}, {"thin", 12}} {
		t.Run(traffic.name, func(t *testing.T) {
			var falseRollbacks, falsePromotions, undecided int
			for i := range canaries {
				good := i%2 == 0
				share := spec.MaxErrorRate
				if !good {
					share *= 2
				}
				final := simulate(random, spec, share, traffic.perTick)
				switch {
				case good && final == functions.RolloutRolledBack:
					falseRollbacks++
				case !good && final == functions.RolloutPromoted:
					falsePromotions++
				case final == functions.RolloutProgressing:
					undecided++
				}
			}
			t.Logf("%d canaries: %d good rolled back, %d bad promoted, %d undecided after a day", canaries, falseRollbacks, falsePromotions, undecided)
			require.LessOrEqual(t, falseRollbacks, canaries/2*5/100, "false rollbacks")
			require.LessOrEqual(t, falsePromotions, canaries/2*5/100, "false promotions")
		})
	}
}

// simulate runs one rollout in 10 s ticks for at most a day and returns its
// last phase. The stable revision fails half a percent of its requests.
func simulate(random *rand.Rand, spec functions.RolloutSpec, candidateShare float64, perTick int) functions.RolloutPhase {
	now := start
	status := spec.Start("1", "2", now)
	var metrics rollout.Metrics
	for range 24 * 360 {
		now = now.Add(10 * time.Second)
		for range perTick {
			counts, share := &metrics.Stable, 0.005
			if random.IntN(100) < status.Weight {
				counts, share = &metrics.Candidate, candidateShare
			}
			counts.Requests++
			if random.Float64() < share {
				counts.Errors++
			}
		}
		status = rollout.Step(status, metrics, spec, now).Status
		if status.Done() {
			break
		}
	}
	return status.Phase
}
