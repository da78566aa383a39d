package autoscaler

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
)

// A tick reads a revision's consumer only when its stream holds requests or
// stored one since the consumer was last read; the list of streams says so.
func TestDepthReadsOnlyQueuesThatMoved(t *testing.T) {
	_, _, js := natstest.JetStream(t)
	ctx := context.Background()
	_, err := events.EnsureStream(ctx, js, "iris", events.DefaultQueueConfig())
	require.NoError(t, err)
	_, err = events.EnsureConsumer(ctx, js, "iris", "1", events.DefaultQueueConfig())
	require.NoError(t, err)
	depth := newJetStreamDepth(js)
	list := func() map[string]events.QueueState {
		states, err := events.QueueStates(ctx, js)
		require.NoError(t, err)
		return states
	}

	q, err := depth.Depth(ctx, "iris", "1", list())
	require.NoError(t, err)
	require.Equal(t, queue{}, q)
	// With the consumer gone, only a read that skips it succeeds.
	require.NoError(t, js.DeleteConsumer(ctx, events.StreamName("iris"), events.ConsumerName("1")))
	q, err = depth.Depth(ctx, "iris", "1", list())
	require.NoError(t, err, "a quiet queue is not read again")
	require.Equal(t, queue{}, q)
	_, err = depth.Depth(ctx, "iris", "1", nil)
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "without the list (a poke) the consumer is read")

	_, err = events.EnsureConsumer(ctx, js, "iris", "1", events.DefaultQueueConfig())
	require.NoError(t, err)
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: events.RequestSubject("iris", "1"), Data: []byte("{}")})
	require.NoError(t, err)
	q, err = depth.Depth(ctx, "iris", "1", list())
	require.NoError(t, err)
	require.Equal(t, int64(1), q.pending, "a stream that stored a request is read")
	q, err = depth.Depth(ctx, "iris", "1", list())
	require.NoError(t, err)
	require.Equal(t, int64(1), q.pending, "and read while it holds one")
}

// A queue read while it held work is read again at the next tick, even when
// its stream is empty by then: the worker's delivery since must be seen (it
// is activity that keeps the revision up).
func TestDepthSeesDeliveriesAfterWork(t *testing.T) {
	_, _, js := natstest.JetStream(t)
	ctx := context.Background()
	_, err := events.EnsureStream(ctx, js, "iris", events.DefaultQueueConfig())
	require.NoError(t, err)
	consumer, err := events.EnsureConsumer(ctx, js, "iris", "1", events.DefaultQueueConfig())
	require.NoError(t, err)
	depth := newJetStreamDepth(js)
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: events.RequestSubject("iris", "1"), Data: []byte("{}")})
	require.NoError(t, err)
	// The consumer counts a stored request a moment after the publish's ack.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		states, err := events.QueueStates(ctx, js)
		require.NoError(c, err)
		q, err := depth.Depth(ctx, "iris", "1", states)
		require.NoError(c, err)
		assert.Equal(c, queue{pending: 1}, q)
	}, 5*time.Second, 10*time.Millisecond, "the request is seen waiting")

	msgs, err := consumer.Fetch(1)
	require.NoError(t, err)
	for msg := range msgs.Messages() {
		require.NoError(t, msg.DoubleAck(ctx))
	}
	states, err := events.QueueStates(ctx, js)
	require.NoError(t, err)
	require.Equal(t, events.QueueState{Msgs: 0, LastSeq: 1}, states["iris"])
	q, err := depth.Depth(ctx, "iris", "1", states)
	require.NoError(t, err)
	require.Equal(t, queue{delivered: 1}, q, "the delivery is seen")
}
