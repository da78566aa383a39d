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
//
// A tick first lists every function's stream (events.QueueStates: a few
// requests for all of them): a revision whose stream holds no request and
// has stored none since its consumer was last read has nothing waiting,
// nothing held and nothing delivered since, so its consumer is not read
// again. Only functions with work, or with work since the last tick, cost a
// request each.
type jetStreamDepth struct {
	js jetstream.JetStream

	mu        sync.Mutex // guards consumers and read
	consumers map[revisionKey]jetstream.Consumer
	read      map[revisionKey]consumerRead
}

// consumerRead is what a revision's consumer said when last read with
// nothing waiting or held, and the last sequence its stream had stored by
// the list of that tick.
type consumerRead struct {
	queue   queue
	lastSeq uint64
}

func newJetStreamDepth(js jetstream.JetStream) *jetStreamDepth {
	return &jetStreamDepth{js: js, consumers: map[revisionKey]jetstream.Consumer{}, read: map[revisionKey]consumerRead{}}
}

// Depth reads the revision's queue; streams, when not nil, is the tick's
// list of stream states, which spares the read of a quiet one.
func (d *jetStreamDepth) Depth(ctx context.Context, function, revision string, streams map[string]events.QueueState) (queue, error) {
	key := revisionKey{function, revision}
	state, listed := streams[function]
	d.mu.Lock()
	consumer, ok := d.consumers[key]
	last, wasRead := d.read[key]
	d.mu.Unlock()
	if listed && wasRead && state.Msgs == 0 && state.LastSeq == last.lastSeq {
		return queue{delivered: last.queue.delivered}, nil
	}
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
		delete(d.read, key)
		d.mu.Unlock()
		return queue{}, err
	}
	q := queue{pending: int64(info.NumPending), inFlight: int64(info.NumAckPending), delivered: info.Delivered.Stream}
	d.mu.Lock()
	if listed && state.Msgs == 0 && q.pending == 0 && q.inFlight == 0 {
		// Everything the stream had stored by the list was delivered and
		// acknowledged: until it stores another, nothing here can move.
		// (A stream that lists requests while the consumer counts none has
		// stored one the consumer has not counted yet: read it again.)
		d.read[key] = consumerRead{queue: q, lastSeq: state.LastSeq}
	} else {
		delete(d.read, key)
	}
	d.mu.Unlock()
	return q, nil
}

// forget drops what is kept of a revision no longer tracked.
func (d *jetStreamDepth) forget(key revisionKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.consumers, key)
	delete(d.read, key)
}
