package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
)

func TestEnsureStreamAndConsumer(t *testing.T) {
	_, _, js := natstest.JetStream(t)
	ctx := context.Background()
	cfg := events.DefaultQueueConfig()
	stream, err := events.EnsureStream(ctx, js, "iris", cfg)
	require.NoError(t, err)
	info := stream.CachedInfo()
	require.Equal(t, "SLUICE_FN_iris", info.Config.Name)
	require.Equal(t, jetstream.WorkQueuePolicy, info.Config.Retention)
	require.Equal(t, jetstream.DiscardNew, info.Config.Discard)
	require.Equal(t, []string{"sluice.fn.iris.req.>"}, info.Config.Subjects)

	consumer, err := events.EnsureConsumer(ctx, js, "iris", "1", cfg)
	require.NoError(t, err)
	require.Equal(t, "sluice.fn.iris.req.1", consumer.CachedInfo().Config.FilterSubject)

	// Idempotent: provisioning again changes nothing and does not fail.
	_, err = events.EnsureStream(ctx, js, "iris", cfg)
	require.NoError(t, err)
	_, err = events.EnsureConsumer(ctx, js, "iris", "1", cfg)
	require.NoError(t, err)

	require.NoError(t, events.DeleteStream(ctx, js, "iris"))
	require.NoError(t, events.DeleteStream(ctx, js, "iris"), "deleting a missing stream is not an error")
}

func TestConsumerRedeliversWithoutLimitAndKeepsTheWorkersLimit(t *testing.T) {
	_, _, js := natstest.JetStream(t)
	ctx := context.Background()
	cfg := events.DefaultQueueConfig()
	_, err := events.EnsureStream(ctx, js, "iris", cfg)
	require.NoError(t, err)
	// A consumer made when JetStream itself enforced the limit…
	legacy, err := js.CreateOrUpdateConsumer(ctx, events.StreamName("iris"), jetstream.ConsumerConfig{
		Durable: events.ConsumerName("1"), FilterSubject: events.RequestSubject("iris", "1"),
		AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 4,
	})
	require.NoError(t, err)
	require.Equal(t, 4, events.MaxDeliverOf(legacy.CachedInfo()))
	// …is updated in place: unlimited redelivery, the limit in its metadata.
	cfg.MaxDeliver = 3
	consumer, err := events.EnsureConsumer(ctx, js, "iris", "1", cfg)
	require.NoError(t, err)
	info, err := consumer.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, -1, info.Config.MaxDeliver)
	require.Equal(t, "3", info.Config.Metadata[events.MetadataMaxDeliver])
	require.Equal(t, 3, events.MaxDeliverOf(info))
	require.Zero(t, events.MaxDeliverOf(nil))
}

func TestQueueFullIsRecognised(t *testing.T) {
	_, _, js := natstest.JetStream(t)
	ctx := context.Background()
	cfg := events.DefaultQueueConfig()
	cfg.MaxMsgs = 2
	_, err := events.EnsureStream(ctx, js, "small", cfg)
	require.NoError(t, err)
	for range 2 {
		_, err := js.Publish(ctx, events.RequestSubject("small", "1"), []byte("x"))
		require.NoError(t, err)
	}
	_, err = js.Publish(ctx, events.RequestSubject("small", "1"), []byte("x"))
	require.Error(t, err)
	require.True(t, events.IsQueueFull(err), "error %v", err)
	require.False(t, events.IsQueueFull(context.DeadlineExceeded))
}

func TestQueueConfigValidate(t *testing.T) {
	cases := map[string]func(*events.QueueConfig){
		"MaxMsgs":       func(c *events.QueueConfig) { c.MaxMsgs = 0 },
		"MaxBytes":      func(c *events.QueueConfig) { c.MaxBytes = -1 },
		"AckWait":       func(c *events.QueueConfig) { c.AckWait = time.Millisecond },
		"MaxDeliver":    func(c *events.QueueConfig) { c.MaxDeliver = 0 },
		"MaxAckPending": func(c *events.QueueConfig) { c.MaxAckPending = 0 },
		"Replicas":      func(c *events.QueueConfig) { c.Replicas = 0 },
	}
	require.NoError(t, events.DefaultQueueConfig().Validate())
	for field, breakIt := range cases {
		t.Run(field, func(t *testing.T) {
			cfg := events.DefaultQueueConfig()
			breakIt(&cfg)
			require.ErrorContains(t, cfg.Validate(), field)
		})
	}
}

func TestValidateName(t *testing.T) {
	for _, good := range []string{"iris", "a", "fraud-v2", "x1"} {
		require.NoError(t, events.ValidateName(good), good)
	}
	for _, bad := range []string{"", "Iris", "-a", "a-", "a.b", "a b", "a*", "a>", string(make([]byte, 64))} {
		require.Error(t, events.ValidateName(bad), "%q", bad)
	}
}
