package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// permanentError marks a failure the request itself caused: trying again cannot help.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as caused by the request itself (bad input, a model that
// rejects it), so Settle terminates the message instead of redelivering it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// NotAnswering reports whether err says NATS or JetStream did not answer,
// or not in time: a server restarting, a stream or consumer whose leader is
// being elected. Such a failure passes; trying again is the cure.
func NotAnswering(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrAsyncPublishTimeout) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// RetryDelay is how long a message waits before its next delivery after a
// transient failure: it doubles with each delivery, from 100ms up to 10s.
func RetryDelay(delivered uint64) time.Duration {
	delay := 100 * time.Millisecond
	for i := uint64(1); i < delivered && delay < 10*time.Second; i++ {
		delay *= 2
	}
	return min(delay, 10*time.Second)
}

// Settle is the one place that decides the fate of a JetStream message once
// its work is done: Ack on success, Term with the reason for a Permanent
// error, and Nak with a growing delay for anything else.
func Settle(msg jetstream.Msg, err error) error {
	switch {
	case err == nil:
		if ackErr := msg.Ack(); ackErr != nil {
			return fmt.Errorf("ack: %w", ackErr)
		}
	case IsPermanent(err):
		if termErr := msg.TermWithReason(err.Error()); termErr != nil {
			return fmt.Errorf("term: %w", termErr)
		}
	default:
		var delivered uint64 = 1
		if meta, metaErr := msg.Metadata(); metaErr == nil {
			delivered = meta.NumDelivered
		}
		if nakErr := msg.NakWithDelay(RetryDelay(delivered)); nakErr != nil {
			return fmt.Errorf("nak: %w", nakErr)
		}
	}
	return nil
}

// ConsumeDurable hands the messages of the durable consumer cfg of stream to
// handle, one at a time, and settles each with what handle returns, until
// ctx ends; it returns once the message in hand is settled. It suits the
// control plane's events, which are few and acted on in order. While NATS
// cannot be reached it keeps asking.
func ConsumeDurable(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig, handle func(context.Context, jetstream.Msg) error) error {
	consumer, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("consumer %s of %s: %w", cfg.Durable, stream, err)
	}
	for ctx.Err() == nil {
		batch, err := consumer.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil { // NATS away for a while: ask again
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for msg := range batch.Messages() {
			_ = Settle(msg, handle(ctx, msg)) // a failed settle is delivered again after AckWait
		}
	}
	return nil
}
