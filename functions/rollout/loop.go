package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// Config sets how often the loop decides.
type Config struct {
	// Tick is the time between two decisions of every running rollout.
	Tick time.Duration
	// WriteEvery is the longest a running rollout's status goes unwritten;
	// a decision that moves it is written at once.
	WriteEvery time.Duration
}

// DefaultConfig decides every second and writes a waiting rollout's status
// every 2 seconds.
func DefaultConfig() Config { return Config{Tick: time.Second, WriteEvery: 2 * time.Second} }

// Validate reports the first field that is wrong.
func (c Config) Validate() error {
	if c.Tick <= 0 || c.WriteEvery < c.Tick {
		return fmt.Errorf("rollout: want 0 < Tick <= WriteEvery, got %s and %s", c.Tick, c.WriteEvery)
	}
	return nil
}

// Loop runs every rollout: each tick it reads what was counted of the
// candidate and the stable revision, decides with Step, writes the
// rollout's status and traffic table to the catalog and announces what
// changed as a lifecycle event.
type Loop struct {
	js      jetstream.JetStream
	catalog *functions.Catalog
	cfg     Config
	log     *slog.Logger
	counts  jetstream.KeyValue // opened by Run
	weight  *prometheus.GaugeVec
	ended   *prometheus.CounterVec
}

// NewLoop returns a Loop over the functions of catalog; its metrics go to reg.
func NewLoop(js jetstream.JetStream, catalog *functions.Catalog, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Loop, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	factory := promauto.With(reg)
	return &Loop{
		js: js, catalog: catalog, cfg: cfg, log: log,
		weight: factory.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_rollout_weight", Help: "Percent of a function's traffic each revision of its rollout takes.",
		}, []string{"function", "revision"}),
		ended: factory.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_rollouts_total", Help: "Rollouts ended, by outcome: promoted or rolled_back.",
		}, []string{"function", "outcome"}),
	}, nil
}

// Run decides every tick until ctx ends.
func (l *Loop) Run(ctx context.Context) error {
	var err error
	if l.counts, err = events.EnsureCountsBucket(ctx, l.js); err != nil {
		return err
	}
	if _, err := events.EnsureLifecycleStream(ctx, l.js); err != nil {
		return err
	}
	ticker := time.NewTicker(l.cfg.Tick)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticker.C:
			l.tick(ctx, now)
		}
	}
}

func (l *Loop) tick(ctx context.Context, now time.Time) {
	fns, err := l.catalog.List(ctx)
	if err != nil {
		l.log.Warn("rollout: list functions", "error", err)
		return
	}
	for _, fn := range fns {
		if r := fn.Status.Rollout; r != nil && r.Phase == functions.RolloutProgressing {
			if err := l.step(ctx, fn.Metadata.Name, now); err != nil && ctx.Err() == nil {
				l.log.Warn("rollout", "function", fn.Metadata.Name, "error", err)
			}
		}
	}
}

// step decides once for the named function's rollout and writes the result.
func (l *Loop) step(ctx context.Context, name string, now time.Time) error {
	var decision Decision
	_, err := l.catalog.Modify(ctx, name, func(fn *functions.Function) (bool, error) {
		decision = Decision{} // a retry after losing to another writer decides afresh
		running := fn.Status.Rollout
		if running == nil || running.Phase != functions.RolloutProgressing {
			return false, nil
		}
		if fn.Spec.Rollout == nil {
			decision = Promote(*running, "spec.rollout was removed", now)
		} else {
			metrics, err := l.metrics(ctx, fn)
			if err != nil {
				return false, err
			}
			decision = Step(*running, metrics, *fn.Spec.Rollout, now)
		}
		if decision.Event == "" && now.Sub(running.UpdatedAt) < l.cfg.WriteEvery {
			return false, nil
		}
		fn.Status.Rollout, fn.Status.Traffic = &decision.Status, decision.Status.Traffic()
		return true, nil
	})
	if err != nil || decision.Event == "" {
		return err
	}
	status := decision.Status
	l.weight.WithLabelValues(name, status.Candidate).Set(0)
	l.weight.WithLabelValues(name, status.Stable).Set(0)
	for _, target := range status.Traffic() {
		l.weight.WithLabelValues(name, target.Revision).Set(float64(target.Weight))
	}
	if status.Done() {
		l.ended.WithLabelValues(name, decision.Event).Inc()
	}
	l.log.Info("rollout "+decision.Event, "function", name, "candidate", status.Candidate, "stable", status.Stable,
		"weight", status.Weight, "reason", status.Reason)
	// The same id from a second controller's same decision: stored once.
	return Announce(ctx, l.js, name, decision, "/sluice/rollout", fmt.Sprintf("%s-%s-%s-%d", name, status.Candidate, decision.Event, status.Step))
}

// Announce publishes a decision's event (dev.sluice.rollout.<event>) about
// the named function's candidate, from source, with id ("": a new one).
func Announce(ctx context.Context, js jetstream.JetStream, name string, decision Decision, source, id string) error {
	return events.PublishLifecycle(ctx, js, events.Lifecycle{
		Subject: events.RolloutSubject(name), Type: events.TypeRolloutPrefix + decision.Event, Source: source,
		ID: id, About: name + "/" + decision.Status.Candidate, Data: decision.Status,
	})
}

// metrics reads what was counted of the rollout's two revisions.
func (l *Loop) metrics(ctx context.Context, fn *functions.Function) (Metrics, error) {
	running := fn.Status.Rollout
	var metrics Metrics
	candidate, live := fn.Status.FindRevision(running.Candidate)
	switch {
	case !live:
		metrics.CandidateCannotRun = "the revision is no longer live"
	case candidate.State == functions.RevisionFailed:
		metrics.CandidateCannotRun = candidate.Reason
	}
	var errs [2]error
	metrics.Candidate, errs[0] = functions.ReadCounts(ctx, l.counts, fn.Metadata.Name, running.Candidate)
	metrics.Stable, errs[1] = functions.ReadCounts(ctx, l.counts, fn.Metadata.Name, running.Stable)
	return metrics, errors.Join(errs[:]...)
}
