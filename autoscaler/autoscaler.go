package autoscaler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// Scaler applies a replica count to one revision and reports how many of its
// replicas are ready. The process scaler and the Kubernetes scaler implement it.
type Scaler interface {
	Scale(ctx context.Context, function, revision string, replicas int) error
	Ready(ctx context.Context, function, revision string) (int, error)
}

// queue is what a revision's consumer says of its work.
type queue struct {
	// pending waits for a worker; inFlight is held by workers.
	pending, inFlight int64
	// delivered is the stream sequence last handed out: when it moves, the
	// revision had work, even if the queue reads empty at every tick.
	delivered uint64
}

// Config sets the loop's tick and the windows and rates of every Policy.
type Config struct {
	Tick                             time.Duration
	StableWindow, PanicWindow        time.Duration
	PanicThreshold                   float64
	MaxScaleUpRate, MaxScaleDownRate float64
	// StatusEvery rewrites a revision's status at least this often, even unchanged.
	StatusEvery time.Duration
	// MaxReplicas bounds every revision's replicas, whatever its spec's
	// maxReplicas (0: no bound). `sluice up` sets it to --max-workers: a
	// machine's cores bound its worker processes as a node's CPUs bound the
	// pods on it.
	MaxReplicas int
}

// DefaultConfig ticks every second with Knative's windows.
func DefaultConfig() Config {
	p := DefaultPolicy()
	return Config{
		Tick: time.Second, StableWindow: p.StableWindow, PanicWindow: p.PanicWindow,
		PanicThreshold: p.PanicThreshold, MaxScaleUpRate: p.MaxScaleUpRate, MaxScaleDownRate: p.MaxScaleDownRate,
		StatusEvery: 10 * time.Second,
	}
}

// Validate reports what is wrong with the configuration.
func (c Config) Validate() error {
	if c.Tick <= 0 || c.StatusEvery <= 0 {
		return fmt.Errorf("autoscaler: Tick and StatusEvery must be positive, got %s and %s", c.Tick, c.StatusEvery)
	}
	if c.MaxReplicas < 0 {
		return fmt.Errorf("autoscaler: MaxReplicas must not be negative (0: no bound), got %d", c.MaxReplicas)
	}
	return c.policy(functions.ScalingSpec{MaxReplicas: 1, TargetQueueDepth: 1, ActivationQueueDepth: 1}).Validate()
}

// revisionPolicy is the Policy of one revision of fn: its scaling spec, and
// at least one replica for the stable revision of a rollout that runs.
func (c Config) revisionPolicy(fn *functions.Function, revision string) Policy {
	policy := c.policy(fn.Spec.Scaling)
	if fn.Status.Guards(revision) {
		policy.MinReplicas = max(policy.MinReplicas, 1)
	}
	return policy
}

// parsePoke reads a poke: "function.revision" (events.ScaleKey), or a
// function's name alone for its current revision.
func parsePoke(data []byte) poke {
	function, revision, _ := strings.Cut(string(data), ".")
	return poke{function: function, revision: revision, at: time.Now()}
}

// policy is the Policy of a revision with the given scaling spec, within
// the configuration's MaxReplicas.
func (c Config) policy(spec functions.ScalingSpec) Policy {
	p := Policy{
		MinReplicas: spec.MinReplicas, MaxReplicas: spec.MaxReplicas,
		TargetDepth: spec.TargetQueueDepth, ActivationDepth: spec.ActivationQueueDepth,
		ScaleToZeroAfter: spec.ScaleToZeroAfter.Duration,
		StableWindow:     c.StableWindow, PanicWindow: c.PanicWindow, PanicThreshold: c.PanicThreshold,
		MaxScaleUpRate: c.MaxScaleUpRate, MaxScaleDownRate: c.MaxScaleDownRate,
	}
	if c.MaxReplicas > 0 && p.MaxReplicas > c.MaxReplicas {
		p.MaxReplicas, p.MinReplicas = c.MaxReplicas, min(p.MinReplicas, c.MaxReplicas)
		p.Bound = fmt.Sprintf("this machine runs at most %d of one revision", c.MaxReplicas)
	}
	return p
}

// Autoscaler is the loop that decides every revision's replicas from its
// queue depth, on every tick and at once when the activator pokes a function.
// Its state is owned by the Run goroutine alone.
type Autoscaler struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	view    catalogView
	depth   *jetStreamDepth
	scaler  Scaler
	cfg     Config
	metrics *metrics
	log     *slog.Logger

	revisions map[revisionKey]*revisionState
	status    jetstream.KeyValue
}

// revisionState is what the loop remembers of one revision between decisions.
type revisionState struct {
	window        *window
	previous      Decision
	lastActive    time.Time
	lastDelivered uint64
	written       events.ScaleStatus
}

// New returns an Autoscaler over the functions in view, reading queue depth
// through JetStream and applying decisions through scaler.
func New(nc *nats.Conn, js jetstream.JetStream, view catalogView, scaler Scaler, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Autoscaler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Autoscaler{
		nc: nc, js: js, view: view, depth: newJetStreamDepth(js), scaler: scaler, cfg: cfg,
		metrics: newMetrics(reg), log: log, revisions: map[revisionKey]*revisionState{},
	}, nil
}

// Run decides until ctx ends. It leaves replicas as they are when it returns.
func (a *Autoscaler) Run(ctx context.Context) error {
	status, err := events.EnsureScaleBucket(ctx, a.js)
	if err != nil {
		return err
	}
	a.status = status
	pokes := make(chan poke, 1024)
	sub, err := a.nc.Subscribe(events.PokeSubject, func(msg *nats.Msg) {
		select {
		case pokes <- parsePoke(msg.Data):
		default: // a burst of pokes needs only one of them
		}
	})
	if err != nil {
		return fmt.Errorf("autoscaler: subscribe to pokes: %w", err)
	}
	defer sub.Unsubscribe()
	ticker := time.NewTicker(a.cfg.Tick)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticker.C:
			a.tick(ctx, now)
		case p := <-pokes:
			a.poked(ctx, p)
		}
	}
}

type poke struct {
	function, revision string
	at                 time.Time
}

// target is a revision to decide for, with its policy.
type target struct {
	key     revisionKey
	policy  Policy
	retired bool // no longer current: it drains to zero and is then forgotten
}

// readers bounds the queue and readiness reads in flight during a tick.
const readers = 16

// tick decides for every revision that takes requests (Status.Serves), and
// for every revision still tracked that no longer does (it drains to zero). The reads run
// concurrently; the decisions, in order, on this goroutine.
func (a *Autoscaler) tick(ctx context.Context, now time.Time) {
	var targets []target
	seen := map[revisionKey]bool{}
	for _, name := range a.view.Names() {
		fn, ok := a.view.Lookup(name)
		if !ok {
			continue
		}
		for _, revision := range fn.Status.Serves() {
			key := revisionKey{name, revision}
			seen[key] = true
			targets = append(targets, target{key: key, policy: a.cfg.revisionPolicy(fn, revision)})
		}
	}
	for key, state := range a.revisions {
		if !seen[key] {
			spec := functions.ScalingSpec{MaxReplicas: max(1, state.previous.Replicas), TargetQueueDepth: 1, ActivationQueueDepth: 1}
			targets = append(targets, target{key: key, policy: a.cfg.policy(spec), retired: true})
		}
	}
	streams, err := events.QueueStates(ctx, a.js)
	if err != nil {
		a.log.Warn("list queues: reading each revision's consumer", "error", err)
	}
	readings := make([]reading, len(targets))
	group, readCtx := errgroup.WithContext(ctx)
	group.SetLimit(readers)
	for i, t := range targets {
		group.Go(func() error {
			readings[i] = a.read(readCtx, t.key, streams)
			return nil
		})
	}
	_ = group.Wait()
	for i, t := range targets {
		if a.apply(ctx, t.key, t.policy, readings[i], false, now).Replicas == 0 && t.retired {
			delete(a.revisions, t.key)
			a.metrics.forget(t.key)
			a.depth.forget(t.key)
			_ = a.status.Delete(ctx, events.ScaleKey(t.key.function, t.key.revision))
		}
	}
}

// poked decides at once for the poked revision of a function, or, when the
// poke names none, its current revision.
func (a *Autoscaler) poked(ctx context.Context, p poke) {
	fn, ok := a.view.Lookup(p.function)
	if !ok || fn.Status.Revision == "" {
		return
	}
	revision := cmp.Or(p.revision, fn.Status.Revision)
	if _, live := fn.Status.FindRevision(revision); !live {
		return
	}
	key := revisionKey{p.function, revision}
	if state, ok := a.revisions[key]; ok && state.previous.Replicas > 0 {
		return // already running: the next tick handles its load
	}
	decision := a.apply(ctx, key, a.cfg.revisionPolicy(fn, revision), a.read(ctx, key, nil), true, time.Now())
	if decision.Replicas > 0 {
		a.metrics.pokeToScale.Observe(time.Since(p.at).Seconds())
	}
}

// reading is what was read of one revision: its queue and ready replicas.
type reading struct {
	queue queue
	ready int
	err   error
}

// read reads a revision's queue and ready replicas; streams, when not nil,
// is the tick's list of stream states. A revision whose stream or consumer
// is gone reads as empty.
func (a *Autoscaler) read(ctx context.Context, key revisionKey, streams map[string]events.QueueState) reading {
	q, err := a.depth.Depth(ctx, key.function, key.revision, streams)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return reading{err: fmt.Errorf("read queue depth: %w", err)}
	}
	ready, err := a.scaler.Ready(ctx, key.function, key.revision)
	if err != nil {
		return reading{err: fmt.Errorf("read ready replicas: %w", err)}
	}
	return reading{queue: q, ready: ready}
}

// apply decides for one revision from what was read, and applies the decision.
// On a failed read it decides nothing and keeps the previous decision.
func (a *Autoscaler) apply(ctx context.Context, key revisionKey, policy Policy, r reading, poked bool, now time.Time) Decision {
	state, ok := a.revisions[key]
	if !ok {
		state = &revisionState{window: newWindow(a.cfg.StableWindow), lastActive: now}
		a.revisions[key] = state
	}
	if r.err != nil {
		a.log.Warn("observe", "function", key.function, "revision", key.revision, "error", r.err)
		return state.previous
	}
	q, ready := r.queue, r.ready
	depth, inFlight := q.pending+q.inFlight, q.inFlight
	state.window.add(now, float64(depth))
	if depth > 0 || poked || q.delivered != state.lastDelivered {
		state.lastActive = now
	}
	state.lastDelivered = q.delivered
	decision := Decide(Observation{
		Depth: depth, InFlight: inFlight, Ready: ready, Poked: poked, LastActive: state.lastActive,
		StableDepth: state.window.average(now, policy.StableWindow), PanicDepth: state.window.average(now, policy.PanicWindow),
		Previous: state.previous,
	}, policy, now)
	if decision.Replicas != state.previous.Replicas {
		if err := a.scaler.Scale(ctx, key.function, key.revision, decision.Replicas); err != nil {
			a.log.Warn("scale", "function", key.function, "revision", key.revision, "replicas", decision.Replicas, "error", err)
			return state.previous
		}
		a.log.Info("scaled", "function", key.function, "revision", key.revision,
			"from", state.previous.Replicas, "to", decision.Replicas, "depth", depth, "reason", decision.Reason)
		direction := scaleDirection(state.previous.Replicas, decision.Replicas)
		a.metrics.scaled(key, direction)
		status := events.ScaleStatus{Function: key.function, Revision: key.revision, Desired: decision.Replicas,
			Ready: ready, Depth: depth, Reason: decision.Reason, At: now}
		if err := events.PublishScaleEvent(ctx, a.nc, direction, status); err != nil {
			a.log.Warn("announce scale decision", "function", key.function, "error", err)
		}
	}
	state.previous = decision
	a.metrics.observe(key, depth, decision.Replicas, ready)
	a.writeStatus(ctx, key, state, events.ScaleStatus{
		Function: key.function, Revision: key.revision, Desired: decision.Replicas, Ready: ready,
		Depth: depth, Reason: decision.Reason, At: now,
	})
	return decision
}

// writeStatus records a revision's status when it changed, or every StatusEvery.
func (a *Autoscaler) writeStatus(ctx context.Context, key revisionKey, state *revisionState, status events.ScaleStatus) {
	last := state.written
	if last.Desired == status.Desired && last.Ready == status.Ready && (last.Depth == 0) == (status.Depth == 0) &&
		status.At.Sub(last.At) < a.cfg.StatusEvery {
		return
	}
	data, err := json.Marshal(status)
	if err != nil {
		return
	}
	if _, err := a.status.Put(ctx, events.ScaleKey(key.function, key.revision), data); err != nil {
		a.log.Warn("write scale status", "function", key.function, "error", err)
		return
	}
	state.written = status
}
