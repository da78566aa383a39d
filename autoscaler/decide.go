package autoscaler

import (
	"fmt"
	"math"
	"time"
)

// Policy is how one function revision scales: its Function's scaling spec and
// the autoscaler's windows and rates.
type Policy struct {
	MinReplicas, MaxReplicas int
	// TargetDepth is the queue depth one replica is meant to carry.
	TargetDepth int
	// ActivationDepth is the depth that wakes a revision at zero replicas.
	ActivationDepth int
	// ScaleToZeroAfter is how long a revision must be idle before it goes to zero.
	ScaleToZeroAfter time.Duration
	// StableWindow averages depth for ordinary decisions, and is how long panic mode lasts.
	StableWindow time.Duration
	// PanicWindow averages depth to notice a burst.
	PanicWindow time.Duration
	// PanicThreshold: panic when the panic window wants this many times the ready replicas.
	PanicThreshold float64
	// MaxScaleUpRate bounds growth per decision to this factor of the ready replicas.
	MaxScaleUpRate float64
	// MaxScaleDownRate bounds shrinking per decision to the current replicas divided by this.
	MaxScaleDownRate float64
	// Bound, when set, says why MaxReplicas is below the spec's maxReplicas:
	// a decision it holds back says so in its reason.
	Bound string
}

// DefaultPolicy has Knative's windows: 60s stable, 6s panic, panic at 2× ready.
func DefaultPolicy() Policy {
	return Policy{
		MinReplicas: 0, MaxReplicas: 4, TargetDepth: 16, ActivationDepth: 1,
		ScaleToZeroAfter: 30 * time.Second, StableWindow: 60 * time.Second, PanicWindow: 6 * time.Second,
		PanicThreshold: 2, MaxScaleUpRate: 10, MaxScaleDownRate: 2,
	}
}

// Validate reports the first field that is out of range.
func (p Policy) Validate() error {
	switch {
	case p.MinReplicas < 0 || p.MaxReplicas < max(1, p.MinReplicas):
		return fmt.Errorf("policy: want 0 <= MinReplicas <= MaxReplicas and MaxReplicas >= 1, got %d and %d", p.MinReplicas, p.MaxReplicas)
	case p.TargetDepth < 1 || p.ActivationDepth < 1:
		return fmt.Errorf("policy: TargetDepth and ActivationDepth must be at least 1, got %d and %d", p.TargetDepth, p.ActivationDepth)
	case p.PanicWindow <= 0 || p.StableWindow < p.PanicWindow:
		return fmt.Errorf("policy: want 0 < PanicWindow <= StableWindow, got %s and %s", p.PanicWindow, p.StableWindow)
	case p.PanicThreshold <= 1 || p.MaxScaleUpRate <= 1 || p.MaxScaleDownRate <= 1:
		return fmt.Errorf("policy: PanicThreshold, MaxScaleUpRate and MaxScaleDownRate must be above 1")
	case p.ScaleToZeroAfter < 0:
		return fmt.Errorf("policy: ScaleToZeroAfter must not be negative, got %s", p.ScaleToZeroAfter)
	}
	return nil
}

// Observation is what the autoscaler's loop saw of one revision.
type Observation struct {
	// Depth is the consumer's NumPending + NumAckPending now.
	Depth int64
	// StableDepth and PanicDepth are Depth averaged over the two windows.
	StableDepth, PanicDepth float64
	// InFlight counts requests handed to workers and not yet settled.
	InFlight int64
	// Ready is the number of replicas ready to take work.
	Ready int
	// Poked is set when the activator asked for a wake-up since the last decision.
	Poked bool
	// LastActive is the last time the revision had work or was poked.
	LastActive time.Time
	// Previous is the decision made last time (zero value at start).
	Previous Decision
}

// Decision is how many replicas a revision should have, and why.
type Decision struct {
	Replicas int
	Reason   string
	// PanicUntil is when panic mode ends; zero when not panicking.
	PanicUntil time.Time
}

// Decide is the scaling policy: a pure function of what was observed, the
// policy and the time, so every rule is tested with a table and no clock.
func Decide(obs Observation, policy Policy, now time.Time) Decision {
	current := obs.Previous.Replicas
	if current == 0 {
		return wake(obs, policy)
	}
	panicking := now.Before(obs.Previous.PanicUntil)
	if idle := now.Sub(obs.LastActive); obs.Depth == 0 && obs.InFlight == 0 && !panicking && idle >= policy.ScaleToZeroAfter {
		return Decision{Replicas: clamp(0, policy), Reason: fmt.Sprintf("idle for %s", idle.Round(time.Second))}
	}
	desired := replicasFor(obs.StableDepth, policy.TargetDepth)
	decision := Decision{Reason: fmt.Sprintf("stable window: average depth %.1f", obs.StableDepth)}
	panicWants := replicasFor(obs.PanicDepth, policy.TargetDepth)
	if float64(panicWants) >= policy.PanicThreshold*float64(max(obs.Ready, 1)) && panicWants > current {
		decision.PanicUntil = now.Add(policy.StableWindow)
		panicking = true
	} else if panicking {
		decision.PanicUntil = obs.Previous.PanicUntil
	}
	if panicking {
		desired = max(panicWants, current) // never scale down while panicking
		decision.Reason = fmt.Sprintf("panic: average depth %.1f over the panic window", obs.PanicDepth)
	}
	// Zero comes only from the idle rule above: until then, keep one replica.
	wanted := max(1, limitRate(desired, current, obs.Ready, policy))
	decision.Replicas, decision.Reason = clamp(wanted, policy), bounded(decision.Reason, wanted, policy)
	return decision
}

// wake decides for a revision at zero: it stays there until a poke or enough depth.
func wake(obs Observation, policy Policy) Decision {
	if !obs.Poked && obs.Depth < int64(policy.ActivationDepth) {
		return Decision{Replicas: clamp(0, policy), Reason: "idle"}
	}
	reason := fmt.Sprintf("activation: depth %d", obs.Depth)
	if obs.Poked {
		reason = "activation: poked by the activator"
	}
	desired := max(1, replicasFor(float64(obs.Depth), policy.TargetDepth))
	return Decision{Replicas: clamp(desired, policy), Reason: bounded(reason, desired, policy)}
}

func replicasFor(depth float64, target int) int {
	return int(math.Ceil(depth / float64(target)))
}

// limitRate bounds one step: up to MaxScaleUpRate × ready, down to current / MaxScaleDownRate.
func limitRate(desired, current, ready int, policy Policy) int {
	most := int(math.Ceil(policy.MaxScaleUpRate * float64(max(ready, 1))))
	least := int(math.Floor(float64(current) / policy.MaxScaleDownRate))
	return min(max(desired, least), max(most, current))
}

func clamp(replicas int, policy Policy) int {
	return min(max(replicas, policy.MinReplicas), policy.MaxReplicas)
}

// bounded adds to reason that the policy's Bound holds back wanted replicas, when it does.
func bounded(reason string, wanted int, policy Policy) string {
	if policy.Bound == "" || wanted <= policy.MaxReplicas {
		return reason
	}
	return fmt.Sprintf("%s; wants %d, %s", reason, wanted, policy.Bound)
}
