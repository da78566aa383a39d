package autoscaler_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/autoscaler"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestDecide(t *testing.T) {
	policy := autoscaler.DefaultPolicy() // target 16, activation 1, max 4, zero after 30s
	running := func(replicas int) autoscaler.Decision { return autoscaler.Decision{Replicas: replicas} }
	cases := []struct {
		name         string
		obs          autoscaler.Observation
		policy       func(*autoscaler.Policy)
		wantReplicas int
		wantReason   string
		wantPanic    bool
	}{
		{name: "stays at zero with an empty queue", obs: autoscaler.Observation{}, wantReplicas: 0, wantReason: "idle"},
		{name: "wakes on a poke before the request is counted", obs: autoscaler.Observation{Poked: true}, wantReplicas: 1, wantReason: "poked"},
		{name: "wakes at the activation depth", obs: autoscaler.Observation{Depth: 1}, wantReplicas: 1, wantReason: "activation: depth 1"},
		{name: "below a higher activation depth stays at zero", obs: autoscaler.Observation{Depth: 4},
			policy: func(p *autoscaler.Policy) { p.ActivationDepth = 5 }, wantReplicas: 0},
		{name: "wakes straight to what the backlog needs", obs: autoscaler.Observation{Depth: 40}, wantReplicas: 3},
		{name: "wakes no higher than maxReplicas", obs: autoscaler.Observation{Depth: 1000}, wantReplicas: 4},
		{name: "minReplicas holds an idle revision up", obs: autoscaler.Observation{},
			policy: func(p *autoscaler.Policy) { p.MinReplicas = 2 }, wantReplicas: 2},
		{name: "depth over target per replica scales up", obs: autoscaler.Observation{
			Depth: 48, StableDepth: 48, PanicDepth: 20, Ready: 2, LastActive: epoch, Previous: running(2)}, wantReplicas: 3},
		{name: "steady load keeps replicas", obs: autoscaler.Observation{
			Depth: 30, StableDepth: 30, PanicDepth: 30, Ready: 2, LastActive: epoch, Previous: running(2)}, wantReplicas: 2},
		{name: "a burst in the panic window panics and scales up fast", obs: autoscaler.Observation{
			Depth: 64, StableDepth: 8, PanicDepth: 64, Ready: 1, LastActive: epoch, Previous: running(1)},
			wantReplicas: 4, wantReason: "panic", wantPanic: true},
		{name: "no scale down while panicking", obs: autoscaler.Observation{
			Depth: 0, StableDepth: 2, PanicDepth: 0, Ready: 4, LastActive: epoch,
			Previous: autoscaler.Decision{Replicas: 4, PanicUntil: epoch.Add(30 * time.Second)}},
			wantReplicas: 4, wantReason: "panic", wantPanic: true},
		{name: "panic ends after its window, then scale down at most halves", obs: autoscaler.Observation{
			Depth: 0, StableDepth: 0, PanicDepth: 0, Ready: 4, LastActive: epoch,
			Previous: autoscaler.Decision{Replicas: 4, PanicUntil: epoch.Add(-time.Second)}},
			wantReplicas: 2, wantReason: "stable"},
		{name: "idle but inside the grace period keeps one", obs: autoscaler.Observation{
			Ready: 1, LastActive: epoch.Add(-10 * time.Second), Previous: running(1)}, wantReplicas: 1},
		{name: "idle past the grace period goes to zero", obs: autoscaler.Observation{
			Ready: 1, LastActive: epoch.Add(-31 * time.Second), Previous: running(1)}, wantReplicas: 0, wantReason: "idle for 31s"},
		{name: "idle past the grace period goes to zero though the stable window remembers load", obs: autoscaler.Observation{
			StableDepth: 0.2, Ready: 1, LastActive: epoch.Add(-45 * time.Second), Previous: running(1)}, wantReplicas: 0, wantReason: "idle for 45s"},
		{name: "a panic blocks scale to zero", obs: autoscaler.Observation{
			Ready: 2, LastActive: epoch.Add(-time.Hour), Previous: autoscaler.Decision{Replicas: 2, PanicUntil: epoch.Add(time.Second)}},
			wantReplicas: 2, wantPanic: true},
		{name: "requests in flight block scale to zero", obs: autoscaler.Observation{
			InFlight: 1, Ready: 1, LastActive: epoch.Add(-time.Hour), Previous: running(1)}, wantReplicas: 1},
		{name: "a queued request blocks scale to zero", obs: autoscaler.Observation{
			Depth: 1, Ready: 1, LastActive: epoch.Add(-time.Hour), Previous: running(1)}, wantReplicas: 1},
		{name: "minReplicas blocks scale to zero", obs: autoscaler.Observation{
			Ready: 1, LastActive: epoch.Add(-time.Hour), Previous: running(1)},
			policy: func(p *autoscaler.Policy) { p.MinReplicas = 1 }, wantReplicas: 1},
		{name: "scale up is bounded by the rate", obs: autoscaler.Observation{
			Depth: 16000, StableDepth: 16000, PanicDepth: 16000, Ready: 1, LastActive: epoch, Previous: running(1)},
			policy: func(p *autoscaler.Policy) { p.MaxReplicas = 100 }, wantReplicas: 10, wantPanic: true},
		{name: "scale up is bounded by maxReplicas", obs: autoscaler.Observation{
			Depth: 1000, StableDepth: 1000, PanicDepth: 40, Ready: 2, LastActive: epoch, Previous: running(2)}, wantReplicas: 4},
		{name: "a bound below maxReplicas says what it holds back", obs: autoscaler.Observation{
			Depth: 48, StableDepth: 48, PanicDepth: 20, Ready: 2, LastActive: epoch, Previous: running(2)},
			policy: func(p *autoscaler.Policy) { p.MaxReplicas, p.Bound = 2, "this machine runs at most 2" }, wantReplicas: 2,
			wantReason: "stable window: average depth 48.0; wants 3, this machine runs at most 2"},
		{name: "a bound says nothing when it holds nothing back", obs: autoscaler.Observation{Depth: 1},
			policy: func(p *autoscaler.Policy) { p.MaxReplicas, p.Bound = 2, "this machine runs at most 2" }, wantReplicas: 1,
			wantReason: "activation: depth 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := policy
			if tc.policy != nil {
				tc.policy(&p)
			}
			require.NoError(t, p.Validate())
			got := autoscaler.Decide(tc.obs, p, epoch)
			require.Equal(t, tc.wantReplicas, got.Replicas, "reason: %s", got.Reason)
			require.Contains(t, got.Reason, tc.wantReason)
			if !strings.Contains(tc.wantReason, "wants") {
				require.NotContains(t, got.Reason, "wants", "only a bound that holds replicas back says so")
			}
			require.Equal(t, tc.wantPanic, !got.PanicUntil.IsZero(), "panic until %s", got.PanicUntil)
		})
	}
}

// Flapping input — a depth that jumps between 0 and a little every tick —
// must not make replicas flap: the stable window averages it and scale-down
// waits for the idle grace period.
func TestDecideDoesNotFlap(t *testing.T) {
	policy := autoscaler.DefaultPolicy()
	decision := autoscaler.Decision{Replicas: 1}
	now := epoch
	lastActive := epoch
	changes := 0
	for tick := range 120 {
		depth := int64(0)
		if tick%2 == 0 {
			depth = 3
			lastActive = now
		}
		next := autoscaler.Decide(autoscaler.Observation{
			Depth: depth, StableDepth: 1.5, PanicDepth: 1.5, Ready: decision.Replicas,
			LastActive: lastActive, Previous: decision,
		}, policy, now)
		if next.Replicas != decision.Replicas {
			changes++
		}
		decision = next
		now = now.Add(time.Second)
	}
	require.Equal(t, 0, changes, "replicas changed under flapping input")
	require.Equal(t, 1, decision.Replicas)
}

func TestPolicyValidate(t *testing.T) {
	require.NoError(t, autoscaler.DefaultPolicy().Validate())
	cases := map[string]func(*autoscaler.Policy){
		"max below min":      func(p *autoscaler.Policy) { p.MinReplicas, p.MaxReplicas = 3, 2 },
		"zero target":        func(p *autoscaler.Policy) { p.TargetDepth = 0 },
		"panic over stable":  func(p *autoscaler.Policy) { p.PanicWindow = 2 * p.StableWindow },
		"threshold at 1":     func(p *autoscaler.Policy) { p.PanicThreshold = 1 },
		"negative grace":     func(p *autoscaler.Policy) { p.ScaleToZeroAfter = -time.Second },
		"no max replicas":    func(p *autoscaler.Policy) { p.MaxReplicas = 0 },
		"scale-down rate 1x": func(p *autoscaler.Policy) { p.MaxScaleDownRate = 1 },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			p := autoscaler.DefaultPolicy()
			breakIt(&p)
			require.Error(t, p.Validate())
		})
	}
}
