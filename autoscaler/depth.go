package autoscaler

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events"
)

// jetStreamDepth reads a revision's queue depth from its consumer's info, as
// the consumer's leader reports it: NumPending is what waits, NumAckPending
// what workers hold. Consumer handles are kept between reads.
type jetStreamDepth struct {
	js jetstream.JetStream

	mu        sync.Mutex // guards consumers
	consumers map[revisionKey]jetstream.Consumer
}

func newJetStreamDepth(js jetstream.JetStream) *jetStreamDepth {
	return &jetStreamDepth{js: js, consumers: map[revisionKey]jetstream.Consumer{}}
}

// Depth reads the revision's queue.
func (d *jetStreamDepth) Depth(ctx context.Context, function, revision string) (queue, error) {
	key := revisionKey{function, revision}
	d.mu.Lock()
	consumer, ok := d.consumers[key]
	d.mu.Unlock()
	if !ok {
		var err error
		consumer, err = d.js.Consumer(ctx, events.StreamName(function), events.ConsumerName(revision))
		if err != nil {
			return queue{}, err
		}
		d.mu.Lock()
		d.consumers[key] = consumer
		d.mu.Unlock()
	}
	info, err := consumer.Info(ctx)
	if err != nil {
		d.mu.Lock()
		delete(d.consumers, key) // re-resolve next time: the stream may have been recreated
		d.mu.Unlock()
		return queue{}, err
	}
	return queue{pending: int64(info.NumPending), inFlight: int64(info.NumAckPending), delivered: info.Delivered.Stream}, nil
}
