// Package worker serves one revision of a function: it fetches requests from
// the revision's JetStream consumer, batches them dynamically, runs the model,
// replies to waiting callers and settles every message.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"sluice.dev/sluice/events"
)

// Model runs a batch of inputs through a loaded model. One Model is used by
// one goroutine at a time.
type Model interface {
	Run(inputs []events.Tensor) ([]events.Tensor, error)
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
}

// DefaultConfig batches up to 32 requests within 2ms.
func DefaultConfig() Config {
	return Config{MaxBatchSize: 32, MaxDelay: 2 * time.Millisecond, DrainTimeout: 30 * time.Second}
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
	signature events.Signature
	cfg       Config
	metrics   *metrics
	log       *slog.Logger
}

// New returns a Worker that takes requests from consumer and answers on nc.
func New(nc *nats.Conn, consumer jetstream.Consumer, models []Model, signature events.Signature, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(models) == 0 {
		return nil, errors.New("worker: at least one model is required")
	}
	return &Worker{
		nc: nc, consumer: consumer, models: models, signature: signature, cfg: cfg,
		metrics: newMetrics(reg, cfg.Function, cfg.Revision),
		log:     log.With("function", cfg.Function, "revision", cfg.Revision),
	}, nil
}

// Run serves until ctx ends, then drains: it stops fetching, finishes and
// settles every request it holds, and returns once all of that is done.
func (w *Worker) Run(ctx context.Context) error {
	incoming := make(chan jetstream.Msg, w.cfg.MaxBatchSize)
	consume, err := w.consumer.Consume(
		func(msg jetstream.Msg) { incoming <- msg },
		jetstream.PullMaxMessages(2*w.cfg.MaxBatchSize*len(w.models)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				w.log.Warn("consume", "error", err)
			}
		}),
	)
	if err != nil {
		return fmt.Errorf("worker: consume: %w", err)
	}
	batches := make(chan []jetstream.Msg, len(w.models))
	group := new(errgroup.Group)
	group.Go(func() error {
		defer close(batches)
		w.batch(incoming, batches)
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
	<-ctx.Done()
	w.log.Info("draining")
	consume.Drain()
	select {
	case <-consume.Closed():
	case <-time.After(w.cfg.DrainTimeout):
		consume.Stop()
		w.log.Warn("drain timed out; unsettled requests return to the queue after their ack wait")
	}
	close(incoming)
	err = group.Wait()
	w.log.Info("drained")
	return err
}

// batch groups incoming messages: a batch closes when it holds MaxBatchSize
// messages, MaxDelay after its first message arrived, or at once when no other
// request is waiting — neither here nor in the stream — so a lone request at
// low load never waits for a batch that is not coming.
func (w *Worker) batch(incoming <-chan jetstream.Msg, batches chan<- []jetstream.Msg) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		first, ok := <-incoming
		if !ok {
			return
		}
		batch := []jetstream.Msg{first}
		timer.Reset(w.cfg.MaxDelay)
	collect:
		for len(batch) < w.cfg.MaxBatchSize {
			if len(incoming) == 0 && nothingPending(batch[len(batch)-1]) {
				break
			}
			select {
			case msg, ok := <-incoming:
				if !ok {
					break collect
				}
				batch = append(batch, msg)
			case <-timer.C:
				break collect
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
