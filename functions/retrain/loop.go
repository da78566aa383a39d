package retrain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/sync/errgroup"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// Config sets how the retrain loop decides and what a training run gets.
type Config struct {
	// Tick is the time between two decisions of every function.
	Tick time.Duration
	// Args start the trainer after the program: the run's function and
	// name follow as --function and --run.
	Args []string
	// Env is added to every run's environment: EnvNATSURL at least.
	Env map[string]string
	// Credentials, when set, makes the NATS credentials of a run of function.
	Credentials func(ctx context.Context, function string) ([]byte, error)
}

// DefaultConfig decides every 2 seconds and runs `sluice train`.
func DefaultConfig() Config {
	return Config{Tick: 2 * time.Second, Args: []string{"train"}}
}

// Validate reports the first field that is wrong.
func (c Config) Validate() error {
	switch {
	case c.Tick <= 0:
		return fmt.Errorf("retrain: Tick must be positive, got %s", c.Tick)
	case len(c.Args) == 0:
		return errors.New("retrain: Args must name the trainer's subcommand")
	}
	return nil
}

// Loop retrains functions: it keeps the feedback counts that the triggers
// and the rollout gates read, watches each function's inputs for drift,
// acts on retrain requests, and, every tick, asks Trigger whether each
// function with spec.retrain trains now, launches the run, follows it to
// its end and announces every step as a dev.sluice.retrain.* event.
type Loop struct {
	js       jetstream.JetStream
	catalog  *functions.Catalog
	launcher Launcher
	cfg      Config
	log      *slog.Logger
	started  *prometheus.CounterVec
	finished *prometheus.CounterVec

	counts  jetstream.KeyValue // opened by Run
	counter *functions.Counter // this loop's feedback counts
	drift   *driftWatch        // recent inputs of each function
	decide  sync.Mutex         // one decision at a time: a request's, or a tick's
}

// Consumers of the loop.
const (
	requestsConsumer = "sluice-retrain-requests"
	feedbackConsumer = "sluice-feedback-counts"
)

// NewLoop returns a Loop that launches runs through launcher; its metrics
// go to reg.
func NewLoop(js jetstream.JetStream, catalog *functions.Catalog, launcher Launcher, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Loop, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	factory := promauto.With(reg)
	return &Loop{
		js: js, catalog: catalog, launcher: launcher, cfg: cfg, log: log,
		started: factory.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_retrain_started_total", Help: "Trainings started, by trigger: requested, new-rows, drift, accuracy.",
		}, []string{"function", "trigger"}),
		finished: factory.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_retrain_finished_total", Help: "Trainings ended, by phase: Succeeded or Failed.",
		}, []string{"function", "phase"}),
	}, nil
}

// Run retrains until ctx ends, and returns once its goroutines have.
func (l *Loop) Run(ctx context.Context) error {
	var err error
	if l.counts, err = events.EnsureCountsBucket(ctx, l.js); err != nil {
		return err
	}
	for _, ensure := range []func(context.Context, jetstream.JetStream) (jetstream.Stream, error){events.EnsureLifecycleStream, events.EnsureFeedbackStream} {
		if _, err := ensure(ctx, l.js); err != nil {
			return err
		}
	}
	l.counter = functions.NewCounter(l.counts)
	l.drift = newDriftWatch(l.js, l.catalog, l.log)
	defer l.drift.stop()
	group, ctx := errgroup.WithContext(ctx)
	group.Go(func() error {
		if err := l.counter.Run(ctx, time.Second); err != nil {
			l.log.Warn("retrain: write the last feedback counts", "error", err)
		}
		return nil
	})
	group.Go(func() error {
		return events.ConsumeDurable(ctx, l.js, events.LifecycleStream, jetstream.ConsumerConfig{
			Durable: requestsConsumer, Description: "acts on retrain requests", FilterSubject: events.RetrainSubject("*"),
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxDeliver: 10,
		}, l.request)
	})
	group.Go(func() error {
		return events.ConsumeDurable(ctx, l.js, events.FeedbackStream, jetstream.ConsumerConfig{
			Durable: feedbackConsumer, Description: "counts feedback rows and misses", AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: time.Minute, MaxDeliver: 10,
		}, l.countFeedback)
	})
	group.Go(func() error {
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
	})
	return group.Wait()
}

// request acts on one retrain request event at once.
func (l *Loop) request(ctx context.Context, msg jetstream.Msg) error {
	ev, err := events.ReadEvent(ctx, msg.Headers(), msg.Data())
	if err != nil || ev.Type() != events.TypeRetrainRequested {
		return nil // the loop's own announcements, or not a CloudEvent
	}
	function := strings.TrimPrefix(msg.Subject(), events.RetrainSubject(""))
	var data struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(ev.Data(), &data)
	err = l.decideFor(ctx, function, []Request{{ID: ev.Source() + "#" + ev.ID(), Reason: data.Reason}}, time.Now())
	if errors.Is(err, functions.ErrNotFound) {
		return events.Permanent(err)
	}
	return err
}

func (l *Loop) tick(ctx context.Context, now time.Time) {
	fns, err := l.catalog.List(ctx)
	if err != nil {
		l.log.Warn("retrain: list functions", "error", err)
		return
	}
	watched := map[string]bool{}
	defer l.drift.retain(watched)
	for _, fn := range fns {
		if fn.Spec.Retrain == nil {
			continue
		}
		if fn.Spec.Retrain.Drift != nil {
			watched[fn.Metadata.Name] = true
		}
		l.drift.follow(ctx, fn)
		if err := l.decideFor(ctx, fn.Metadata.Name, nil, now); err != nil && ctx.Err() == nil {
			l.log.Warn("retrain", "function", fn.Metadata.Name, "error", err)
		}
	}
}

// decideFor observes a function, decides with Trigger, launches a run when
// it says so, and writes the retrain status when it changed.
func (l *Loop) decideFor(ctx context.Context, name string, requests []Request, now time.Time) error {
	l.decide.Lock()
	defer l.decide.Unlock()
	fn, err := l.catalog.Get(ctx, name)
	if err != nil {
		return err
	}
	if fn.Spec.Retrain == nil {
		l.log.Info("retrain request for a function without spec.retrain: dropped", "function", name)
		return nil
	}
	status := functions.RetrainStatus{}
	if fn.Status.Retrain != nil {
		status = *fn.Status.Retrain
	}
	obs, err := l.observe(ctx, fn, status, requests)
	if err != nil {
		return err
	}
	decision := Trigger(status, obs, *fn.Spec.Retrain, now)
	if obs.RunDone != nil {
		l.announce(ctx, name, obs.RunDone.Phase, status.Run, decision.Status.Result)
	}
	if decision.Train {
		decision.Status.Run = RunName(name, decision.Status)
		l.log.Info("retrain started", "function", name, "run", decision.Status.Run, "trigger", decision.Trigger, "reason", decision.Reason)
		if err := l.launch(ctx, fn, decision.Status.Run); err != nil {
			// Nothing is recorded: the request is delivered again, the next tick decides again.
			return fmt.Errorf("launch %s: %w", decision.Status.Run, err)
		}
		l.started.WithLabelValues(name, decision.Trigger).Inc()
		l.publish(ctx, name, "started", decision.Status.Run, map[string]string{"trigger": decision.Trigger, "reason": decision.Reason})
	}
	if reflect.DeepEqual(decision.Status, status) {
		return nil
	}
	_, err = l.catalog.Modify(ctx, name, func(fn *functions.Function) (bool, error) {
		fn.Status.Retrain = &decision.Status
		return true, nil
	})
	return err
}

// observe gathers what Trigger decides on.
func (l *Loop) observe(ctx context.Context, fn *functions.Function, status functions.RetrainStatus, requests []Request) (Observation, error) {
	name := fn.Metadata.Name
	obs := Observation{Requests: requests}
	if status.Run != "" {
		run, err := l.launcher.Status(ctx, status.Run)
		switch {
		case errors.Is(err, ErrRunNotFound):
			obs.RunDone = &RunStatus{Phase: Failed, Reason: ReasonTrainerFailed, Message: "the launcher no longer knows the run"}
		case err != nil:
			return Observation{}, err
		case run.Done():
			obs.RunDone = &run
		}
	}
	feedback, err := functions.ReadCounts(ctx, l.counts, name, events.FeedbackRevision)
	if err != nil {
		return Observation{}, err
	}
	obs.Feedback = feedback.Labelled
	if r := fn.Status.Rollout; r != nil && !r.Done() {
		obs.RollingOut = true
		return obs, nil
	}
	if serving, ok := fn.Status.Primary(); ok {
		answered, err := functions.ReadCounts(ctx, l.counts, name, serving.Name)
		if err != nil {
			return Observation{}, err
		}
		obs.Labelled, obs.Misses = answered.Labelled, answered.Misses
	}
	if drift := fn.Spec.Retrain.Drift; drift != nil {
		obs.Window = l.drift.window(name, drift.MinSamples)
	}
	return obs, nil
}

// launch starts the trainer of a run.
func (l *Loop) launch(ctx context.Context, fn *functions.Function, run string) error {
	env := maps.Clone(l.cfg.Env)
	if env == nil {
		env = map[string]string{}
	}
	env[EnvFunction], env[EnvRun] = fn.Metadata.Name, run
	args := append(append([]string{}, l.cfg.Args...), "--function", fn.Metadata.Name, "--run", run)
	launched := Run{Name: run, Function: fn.Metadata.Name, Args: args, Env: env, Deadline: fn.Spec.Retrain.Deadline.Duration}
	if l.cfg.Credentials != nil {
		var err error
		if launched.Credentials, err = l.cfg.Credentials(ctx, fn.Metadata.Name); err != nil {
			return fmt.Errorf("run %s: credentials: %w", run, err)
		}
	}
	return l.launcher.Launch(ctx, launched)
}

// announce says how a run ended.
func (l *Loop) announce(ctx context.Context, function string, phase Phase, run, result string) {
	what := "succeeded"
	if phase == Failed {
		what = "failed"
	}
	l.finished.WithLabelValues(function, string(phase)).Inc()
	l.log.Info("retrain "+what, "function", function, "run", run, "result", result)
	l.publish(ctx, function, what, run, map[string]string{"result": result})
}

// publish announces a step of a run as dev.sluice.retrain.<what>.
func (l *Loop) publish(ctx context.Context, function, what, run string, data map[string]string) {
	data["run"] = run
	err := events.PublishLifecycle(ctx, l.js, events.Lifecycle{
		Subject: events.RetrainSubject(function), Type: events.TypeRetrainPrefix + what, Source: "/sluice/retrain",
		ID: run + "-" + what, About: function, Data: data,
	})
	if err != nil {
		l.log.Warn("retrain: announce", "function", function, "run", run, "error", err)
	}
}

// countFeedback counts one feedback event's rows for the function, and,
// when it names a past request, its labels and misses for the revision
// that answered it: the accuracy the triggers and the rollout gates read.
func (l *Loop) countFeedback(ctx context.Context, msg jetstream.Msg) error {
	ev, err := events.ReadEvent(ctx, msg.Headers(), msg.Data())
	if err != nil {
		return nil
	}
	var feedback events.Feedback
	if json.Unmarshal(ev.Data(), &feedback) != nil || feedback.Validate() != nil {
		return nil
	}
	function := strings.TrimPrefix(msg.Subject(), events.FeedbackSubject(""))
	rows := functions.Counts{Labelled: int64(len(feedback.Labels))}
	if feedback.RequestID == "" {
		l.counter.Add(function, events.FeedbackRevision, rows)
		return nil
	}
	prediction, err := events.ReadPrediction(ctx, l.js, function, feedback.RequestID)
	if err != nil && !errors.Is(err, events.ErrNoPrediction) {
		return err // delivered again, and counted then, once
	}
	l.counter.Add(function, events.FeedbackRevision, rows)
	if err != nil {
		return nil // the request left the log: its rows count, its accuracy cannot
	}
	counts := functions.Counts{Labelled: int64(min(len(feedback.Labels), len(prediction.Labels)))}
	for i := range counts.Labelled {
		if feedback.Labels[i] != prediction.Labels[i] {
			counts.Misses++
		}
	}
	l.counter.Add(function, prediction.Revision, counts)
	return nil
}
