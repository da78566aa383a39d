package events_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
)

func TestSettle(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		redeliver bool
	}{
		{"success acks", nil, false},
		{"permanent error terminates", events.Permanent(errors.New("bad input")), false},
		{"wrapped permanent error terminates", errors.Join(errors.New("ctx"), events.Permanent(errors.New("bad"))), false},
		{"transient error redelivers", errors.New("connection lost"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, js := natstest.JetStream(t)
			ctx := context.Background()
			cfg := events.DefaultQueueConfig()
			_, err := events.EnsureStream(ctx, js, "fn", cfg)
			require.NoError(t, err)
			consumer, err := events.EnsureConsumer(ctx, js, "fn", "1", cfg)
			require.NoError(t, err)
			_, err = js.Publish(ctx, events.RequestSubject("fn", "1"), []byte("x"))
			require.NoError(t, err)

			batch, err := consumer.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
			require.NoError(t, err)
			msg := <-batch.Messages()
			require.NotNil(t, msg)
			require.NoError(t, events.Settle(msg, tc.err))

			again, err := consumer.Fetch(1, jetstream.FetchMaxWait(time.Second))
			require.NoError(t, err)
			redelivered := <-again.Messages()
			require.Equal(t, tc.redeliver, redelivered != nil)
			if redelivered != nil {
				meta, err := redelivered.Metadata()
				require.NoError(t, err)
				require.EqualValues(t, 2, meta.NumDelivered)
			}
		})
	}
}

func TestRetryDelayGrowsAndIsBounded(t *testing.T) {
	require.Equal(t, 100*time.Millisecond, events.RetryDelay(1))
	require.Equal(t, 200*time.Millisecond, events.RetryDelay(2))
	require.Equal(t, 400*time.Millisecond, events.RetryDelay(3))
	require.Equal(t, 10*time.Second, events.RetryDelay(100))
}

func TestIsPermanent(t *testing.T) {
	require.False(t, events.IsPermanent(errors.New("x")))
	require.True(t, events.IsPermanent(events.Permanent(errors.New("x"))))
	require.Nil(t, events.Permanent(nil))
}
