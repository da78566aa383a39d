package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
)

// fetchOne takes the next request of the consumer.
func fetchOne(t *testing.T, consumer jetstream.Consumer) jetstream.Msg {
	t.Helper()
	batch, err := consumer.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	for msg := range batch.Messages() {
		return msg
	}
	require.NoError(t, batch.Error())
	t.Fatal("no request fetched")
	return nil
}

// queue provisions function's stream and the consumer of its revision "1".
func queue(t *testing.T, js jetstream.JetStream, function string) jetstream.Consumer {
	t.Helper()
	ctx := context.Background()
	_, err := events.EnsureStream(ctx, js, function, events.DefaultQueueConfig())
	require.NoError(t, err)
	consumer, err := events.EnsureConsumer(ctx, js, function, "1", events.DefaultQueueConfig())
	require.NoError(t, err)
	return consumer
}

func TestDeadLetterRoundTrip(t *testing.T) {
	_, _, js := natstest.JetStream(t)
	ctx := context.Background()
	stream, err := events.EnsureDeadLetterStream(ctx, js)
	require.NoError(t, err)
	info := stream.CachedInfo()
	require.Equal(t, []string{"sluice.dlq.>"}, info.Config.Subjects)
	require.Equal(t, jetstream.LimitsPolicy, info.Config.Retention)
	require.Equal(t, jetstream.DiscardOld, info.Config.Discard)
	require.Equal(t, 7*24*time.Hour, info.Config.MaxAge)
	require.Equal(t, int64(256<<20), info.Config.MaxBytes)

	iris, wine := queue(t, js, "iris"), queue(t, js, "wine")
	subject := events.RequestSubject("iris", "1")
	request := nats.NewMsg(subject)
	request.Data = []byte(`{"inputs":"bad"}`)
	request.Header.Set("ce-id", "req-1")
	request.Header.Set("X-Custom", "kept")
	request.Header.Set(events.HeaderMsgID, "req-1")
	_, err = js.PublishMsg(ctx, request)
	require.NoError(t, err)
	other := nats.NewMsg(events.RequestSubject("wine", "1"))
	other.Header.Set(events.HeaderMsgID, "req-1") // the same id in another stream
	_, err = js.PublishMsg(ctx, other)
	require.NoError(t, err)

	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	msg := fetchOne(t, iris)
	letter := events.DeadLetter{Function: "iris", Revision: "1", Reason: "inputs: bad", Attempts: 1, At: at}
	require.NoError(t, events.PublishDeadLetter(ctx, js, msg, letter))
	require.NoError(t, events.PublishDeadLetter(ctx, js, msg, letter), "publishing the same delivery again")
	require.NoError(t, msg.Term())
	require.NoError(t, events.PublishDeadLetter(ctx, js, fetchOne(t, wine), events.DeadLetter{Function: "wine", Revision: "1", Reason: "gave up", Attempts: 5}))

	all, err := events.ListDeadLetters(ctx, js, "")
	require.NoError(t, err)
	require.Len(t, all, 2, "a dead letter is stored once, and not taken for a duplicate of another function's")
	irisLetters, err := events.ListDeadLetters(ctx, js, "iris")
	require.NoError(t, err)
	require.Len(t, irisLetters, 1)
	got := irisLetters[0]
	require.Equal(t, "iris", got.Function)
	require.Equal(t, "1", got.Revision)
	require.Equal(t, "inputs: bad", got.Reason)
	require.Equal(t, 1, got.Attempts)
	require.Equal(t, at, got.At)
	require.Equal(t, subject, got.Subject)
	require.Equal(t, request.Data, got.Data)
	require.Equal(t, "kept", got.Header.Get("X-Custom"))
	require.Equal(t, "req-1", got.Header.Get(events.HeaderMsgID))

	shown, err := events.GetDeadLetter(ctx, js, got.Seq)
	require.NoError(t, err)
	require.Equal(t, got, shown)
	_, err = events.GetDeadLetter(ctx, js, 999)
	require.ErrorIs(t, err, events.ErrNoDeadLetter)

	// The replay lands on the original subject, within the de-duplication
	// window of the original request, with the original headers.
	require.NoError(t, events.ReplayDeadLetter(ctx, js, got.Seq))
	replayed := fetchOne(t, iris)
	require.Equal(t, subject, replayed.Subject())
	require.Equal(t, request.Data, replayed.Data())
	require.Equal(t, "kept", replayed.Headers().Get("X-Custom"))
	require.Equal(t, "req-1", replayed.Headers().Get("ce-id"))
	require.Equal(t, "req-1#replay-1", replayed.Headers().Get(events.HeaderMsgID))
	for key := range replayed.Headers() {
		require.NotContains(t, key, "Sluice-Dead", "no dead-letter header on a replay")
	}
	require.NoError(t, replayed.Ack())
	_, err = events.GetDeadLetter(ctx, js, got.Seq)
	require.ErrorIs(t, err, events.ErrNoDeadLetter, "a replayed dead letter is deleted")
	require.Error(t, events.ReplayDeadLetter(ctx, js, got.Seq), "a dead letter is replayed once")

	require.NoError(t, events.PurgeDeadLetters(ctx, js, "iris"), "nothing left of iris")
	left, err := events.ListDeadLetters(ctx, js, "")
	require.NoError(t, err)
	require.Len(t, left, 1)
	require.Equal(t, "wine", left[0].Function)
	require.NoError(t, events.PurgeDeadLetters(ctx, js, ""))
	left, err = events.ListDeadLetters(ctx, js, "")
	require.NoError(t, err)
	require.Empty(t, left)
}

func TestPublishDeadLetterNeedsAFunction(t *testing.T) {
	_, _, js := natstest.JetStream(t)
	ctx := context.Background()
	_, err := events.EnsureDeadLetterStream(ctx, js)
	require.NoError(t, err)
	consumer := queue(t, js, "iris")
	_, err = js.Publish(ctx, events.RequestSubject("iris", "1"), nil)
	require.NoError(t, err)
	err = events.PublishDeadLetter(ctx, js, fetchOne(t, consumer), events.DeadLetter{Function: "a.b"})
	require.ErrorContains(t, err, "function")
}
