// Package worker serves one revision of a function: it fetches requests from
// the revision's JetStream consumer, batches them dynamically, runs the model,
// replies to waiting callers and settles every message.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
)

// Model runs a batch of inputs through a loaded model. One Model is used by
// one goroutine at a time.
type Model interface {
	Run(inputs []oip.Tensor) ([]oip.Tensor, error)
}

// Config sets the identity of the revision served and how requests are batched.
type Config struct {
	Function string
	Revision string
	// MaxBatchSize requests at most are run together.
	MaxBatchSize int
	// MaxDelay is how long the first request of a batch waits for others.
	MaxDelay time.Duration
	// DrainTimeout bounds the drain on shutdown; what is left then goes back to the queue.
	DrainTimeout time.Duration
	// Results keeps the results of requests that ask to be recorded
	// (asynchronous calls, batch jobs); nil refuses such requests.
	Results ResultStore
	// Answers carries the answers too large for one NATS message (nil: they
	// are refused with 413).
	Answers jetstream.ObjectStore
	// MaxAnswerBytes bounds one answer; a larger one is refused with 413.
	MaxAnswerBytes int
	// JetStream publishes the dead letters of requests nobody waits for when
	// they are given up (nil: terminated without a trace), and the results
	// bound for a sink, into events.SinkStream (nil: refused).
	JetStream jetstream.JetStream
	// Counter counts each finished request for the rollout gates (nil: none
	// are), as slow when answered later than SlowAfter after it was
	// submitted (0: none is).
	Counter   Counter
	SlowAfter time.Duration
	// LogPredictions keeps each answer's rows and labels in the function's
	// prediction log (events.PredictionSubject), for feedback to name.
	LogPredictions bool
}

// ResultStore is where recorded results go: the results KV bucket.
type ResultStore interface {
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
}

// DefaultConfig batches up to 32 requests within 2ms.
func DefaultConfig() Config {
	return Config{MaxBatchSize: 32, MaxDelay: 2 * time.Millisecond, DrainTimeout: 30 * time.Second, MaxAnswerBytes: events.DefaultMaxAnswerBytes}
}

// Validate reports the first field that is wrong.
func (c Config) Validate() error {
	switch {
	case events.ValidateName(c.Function) != nil:
		return fmt.Errorf("worker: function: %w", events.ValidateName(c.Function))
	case c.Revision == "":
		return errors.New("worker: revision is required")
	case c.MaxBatchSize < 1:
		return fmt.Errorf("worker: MaxBatchSize must be at least 1, got %d", c.MaxBatchSize)
	case c.MaxDelay < 0:
		return fmt.Errorf("worker: MaxDelay must not be negative, got %s", c.MaxDelay)
	case c.MaxAnswerBytes < 1:
		return fmt.Errorf("worker: MaxAnswerBytes must be positive, got %d", c.MaxAnswerBytes)
	case c.DrainTimeout <= 0:
		return fmt.Errorf("worker: DrainTimeout must be positive, got %s", c.DrainTimeout)
	}
	return nil
}

// Worker serves one revision. Each Model runs batches on its own goroutine,
// so len(models) batches run at once.
type Worker struct {
	nc        *nats.Conn
	consumer  jetstream.Consumer
	models    []Model
	signature oip.Signature
	cfg       Config
	metrics   *metrics
	log       *slog.Logger
	ready     chan struct{} // closed once Run takes requests
	// held is every request taken and not yet settled; detached says why
	// the worker takes none now (its consumer is gone), empty while it does.
	held     *held
	detached atomic.Pointer[string]
	// source is the CloudEvent source of this worker's replies.
	source string
	// maxDeliver is how many deliveries a request gets; 0 when unknown.
	maxDeliver int
	// stackable says whether requests may share a model run: every input and
	// output has a batch dimension of any size first.
	stackable bool
}

// Ready is closed once Run has started taking requests.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// New returns a Worker that takes requests from consumer and answers on nc.
func New(nc *nats.Conn, consumer jetstream.Consumer, models []Model, signature oip.Signature, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(models) == 0 {
		return nil, errors.New("worker: at least one model is required")
	}
	return &Worker{
		ready:      make(chan struct{}),
		held:       newHeld(),
		source:     "/sluice/functions/" + cfg.Function + "/revisions/" + cfg.Revision,
		maxDeliver: maxDeliver(consumer),
		stackable:  stackable(signature),
		nc:         nc, consumer: consumer, models: models, signature: signature, cfg: cfg,
		metrics: newMetrics(reg, cfg.Function, cfg.Revision),
		log:     log.With("function", cfg.Function, "revision", cfg.Revision),
	}, nil
}

// Run serves until ctx ends, then drains: it stops fetching, finishes and
// settles every request it holds, and returns once all of that is done. When
// the drain takes longer than DrainTimeout, requests not yet handed to the
// batcher go back to the queue; the batches under way are still finished.
func (w *Worker) Run(ctx context.Context) error {
	// incoming is never closed: the consumer's callback may still be running
	// when the drain gives up. stopped says no more messages will come, and
	// abandoned makes a callback that is still waiting give its message back.
	incoming := make(chan jetstream.Msg, w.cfg.MaxBatchSize)
	stopped := make(chan struct{})
	abandoned := make(chan struct{})
	consume, err := w.consume(incoming, abandoned)
	if err != nil {
		return err
	}
	progressDone := make(chan struct{})
	defer close(progressDone)
	go w.held.keepAlive(progressInterval(w.consumer), progressDone)
	batches := make(chan []jetstream.Msg, len(w.models))
	group := new(errgroup.Group)
	group.Go(func() error {
		defer close(batches)
		w.batch(incoming, stopped, batches)
		return nil
	})
	for _, model := range w.models {
		group.Go(func() error {
			for batch := range batches {
				w.process(model, batch)
			}
			return nil
		})
	}
	w.log.Info("serving", "max_batch_size", w.cfg.MaxBatchSize, "max_delay", w.cfg.MaxDelay, "sessions", len(w.models))
	close(w.ready)
	consume = w.keepConsuming(ctx, consume, incoming, abandoned)
	w.log.Info("draining")
	if consume == nil { // the consumer is gone: nothing more comes
		close(abandoned)
	} else {
		consume.Drain()
		if reason := w.awaitDrain(consume); reason != "" {
			close(abandoned)
			consume.Stop()
			w.log.Warn(reason + "; requests not yet batched go back to the queue, those still in the client buffer after their ack wait")
		}
	}
	close(stopped)
	err = group.Wait()
	w.log.Info("drained")
	return err
}

// errDraining sends a request back to the queue, for another worker.
var errDraining = errors.New("worker: draining: the request goes back to the queue")

// take hands msg from the consumer to the batcher or, once the drain has
// given up waiting, back to the queue.
func (w *Worker) take(msg jetstream.Msg, incoming chan<- jetstream.Msg, abandoned <-chan struct{}) {
	w.held.take(msg)
	select {
	case <-abandoned:
	default:
		select {
		case incoming <- msg:
			return
		case <-abandoned:
		}
	}
	w.held.release(msg)
	if err := events.Settle(msg, errDraining); err != nil {
		w.log.Warn("settle", "error", err)
	}
}

// batch groups incoming messages: a batch closes when it holds MaxBatchSize
// messages, MaxDelay after its first message arrived, or at once when no other
// request is waiting — neither here nor in the stream — so a lone request at
// low load never waits for a batch that is not coming. Once stopped is closed
// it batches what is left in incoming without waiting, and returns.
func (w *Worker) batch(incoming <-chan jetstream.Msg, stopped <-chan struct{}, batches chan<- []jetstream.Msg) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var first jetstream.Msg
		select {
		case first = <-incoming:
		case <-stopped:
			select {
			case first = <-incoming:
			default:
				return
			}
		}
		batch := []jetstream.Msg{first}
		timer.Reset(w.cfg.MaxDelay)
	collect:
		for len(batch) < w.cfg.MaxBatchSize {
			if len(incoming) == 0 && nothingPending(batch[len(batch)-1]) {
				break
			}
			select {
			case msg := <-incoming:
				batch = append(batch, msg)
			case <-timer.C:
				break collect
			case <-stopped:
				if len(incoming) == 0 { // and nothing more comes
					break collect
				}
			}
		}
		timer.Stop()
		batches <- batch
	}
}

// nothingPending reports whether the stream held no further request for this
// consumer when msg was delivered.
func nothingPending(msg jetstream.Msg) bool {
	meta, err := msg.Metadata()
	return err == nil && meta.NumPending == 0
}

func maxDeliver(consumer jetstream.Consumer) int {
	return events.MaxDeliverOf(consumer.CachedInfo())
}

// stackable reports whether the model has inputs and every input and output
// has a first dimension of any size: only then do stacked requests get their
// own rows back.
func stackable(signature oip.Signature) bool {
	if len(signature.Inputs) == 0 {
		return false
	}
	for _, spec := range append(slices.Clone(signature.Inputs), signature.Outputs...) {
		if len(spec.Shape) == 0 || spec.Shape[0] != -1 {
			return false
		}
	}
	return true
}

// awaitDrain waits for the consumer's drain to finish, and says why it gave
// up if it did: the drain timed out, or NATS is gone, so nothing held could be
// settled anyway (JetStream redelivers it after its ack wait).
func (w *Worker) awaitDrain(consume jetstream.ConsumeContext) string {
	timeout := time.NewTimer(w.cfg.DrainTimeout)
	defer timeout.Stop()
	check := time.NewTicker(100 * time.Millisecond)
	defer check.Stop()
	for {
		select {
		case <-consume.Closed():
			return ""
		case <-timeout.C:
			return "drain timed out"
		case <-check.C:
			if w.nc.IsClosed() || !w.nc.IsConnected() {
				return "NATS connection lost while draining"
			}
		}
	}
}

// consume starts taking the consumer's requests into incoming.
func (w *Worker) consume(incoming chan<- jetstream.Msg, abandoned <-chan struct{}) (jetstream.ConsumeContext, error) {
	consume, err := w.consumer.Consume(
		func(msg jetstream.Msg) { w.take(msg, incoming, abandoned) },
		jetstream.PullMaxMessages(2*w.cfg.MaxBatchSize*len(w.models)),
		// A pull request lives 5 s and the server says every second that it
		// still holds it: when the consumer's leader dies or is cut off, the
		// worker pulls from the new leader within 2 s, not 30.
		jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				w.log.Warn("consume", "error", err)
			}
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("worker: consume: %w", err)
	}
	return consume, nil
}

// keepConsuming returns once ctx ends, with the consumption to drain; nil
// when there is none. When the consumer is deleted under the worker (its
// stream deleted and made again, by an operator or a restore), the worker
// says so in Health and takes requests again as soon as the control plane
// has made the consumer again.
func (w *Worker) keepConsuming(ctx context.Context, consume jetstream.ConsumeContext, incoming chan<- jetstream.Msg, abandoned <-chan struct{}) jetstream.ConsumeContext {
	for {
		select {
		case <-ctx.Done():
			return consume
		case <-consume.Closed():
		}
		reason := fmt.Sprintf("consumer %s of stream %s stopped delivering (deleted, or refused): taking requests again once it answers",
			events.ConsumerName(w.cfg.Revision), events.StreamName(w.cfg.Function))
		w.detached.Store(&reason)
		w.log.Warn(reason)
		retry := time.NewTicker(time.Second)
		for consume = nil; consume == nil; {
			select {
			case <-ctx.Done():
				retry.Stop()
				return nil
			case <-retry.C:
			}
			if _, err := w.consumer.Info(ctx); err != nil {
				continue
			}
			consume, _ = w.consume(incoming, abandoned)
		}
		retry.Stop()
		w.detached.Store(nil)
		w.log.Info("the consumer answers again: taking requests")
	}
}

// Health says why the worker takes no requests now; nil while it does.
func (w *Worker) Health() error {
	select {
	case <-w.ready:
	default:
		return errors.New("not taking requests yet")
	}
	if reason := w.detached.Load(); reason != nil {
		return errors.New(*reason)
	}
	if !w.nc.IsConnected() {
		return errors.New("not connected to NATS: " + w.nc.Status().String())
	}
	return nil
}
