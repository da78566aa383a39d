package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events"
)

// maxAttempts bounds the publishes of one request that fail for another
// reason than a full queue; a full queue is waited out for as long as it takes.
const maxAttempts = 20

// publishing is an asynchronous publish the acker waits for.
type publishing struct {
	chunk  *chunk
	msg    *nats.Msg
	future jetstream.PubAckFuture
}

// produce reads the rows, cuts them into chunks and publishes each one that
// is not done yet, holding a slot per chunk until the writer has written it.
func (j *job) produce(ctx context.Context, chunks chan<- *chunk, acks chan<- publishing, slots chan struct{}) error {
	misses, lookups := 0, max(j.cfg.InFlight, 32)
	for index := 0; ; index++ {
		c, err := j.readChunk(index)
		if err != nil || c == nil {
			return err
		}
		if c.skip == c.rows {
			continue // written by an earlier run
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		if c.good == 0 {
			c.resolve(nil, 0, nil)
		} else if misses < lookups && j.lookup(ctx, c) {
			misses = 0
		} else {
			misses++
			if err := j.publish(ctx, c, acks); err != nil {
				return err
			}
		}
		select {
		case chunks <- c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readChunk reads the next RowsPerRequest rows, reporting the bad ones; it
// returns nil at the end of the input.
func (j *job) readChunk(index int) (*chunk, error) {
	var c *chunk
	for c == nil || c.rows < j.cfg.RowsPerRequest {
		row, err := j.rows.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", j.cfg.Input, err)
		}
		j.rowsRead.Add(1)
		if c == nil {
			c = newChunk(index, j.batchID, row.Index, j.cfg.RowsPerRequest, len(row.Features))
		}
		if row.Index < j.done {
			c.skip++
		}
		if err := c.add(row, j.input); err != nil && row.Index >= j.done && j.cfg.Errors != nil {
			fmt.Fprintf(j.cfg.Errors, "%s:%d: %v\n", j.cfg.Input, row.Line, err)
		}
	}
	return c, nil
}

// lookup resolves c from the results bucket, where an earlier run's request
// may have left it, and reports whether it was there.
func (j *job) lookup(ctx context.Context, c *chunk) bool {
	entry, err := j.results.Get(ctx, events.ResultKey(j.source, c.id))
	if err != nil {
		return false
	}
	result, err := events.DecodeResult(entry.Value())
	if err != nil {
		return false
	}
	switch result.Status {
	case events.ResultDone:
		body, headerLength := result.Answer()
		c.resolve(body, headerLength, nil)
	case events.ResultError:
		c.resolve(nil, 0, errors.New(result.Error))
	default:
		return false
	}
	j.take(c.id)
	j.fromBucket.Add(1)
	return true
}

// publish registers c as pending and publishes its request asynchronously.
func (j *job) publish(ctx context.Context, c *chunk, acks chan<- publishing) error {
	msg, err := j.message(ctx, c)
	if err != nil {
		return err
	}
	j.mu.Lock()
	j.pending[c.id] = c
	j.mu.Unlock()
	c.published = time.Now()
	j.requests.Add(1)
	future, err := j.js.PublishMsgAsync(msg)
	if err != nil { // stalled: wait here, which holds back the reader too
		return j.publishRetry(ctx, msg, err)
	}
	select {
	case acks <- publishing{chunk: c, msg: msg, future: future}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// message is c's request CloudEvent, to be recorded, de-duplicated by its source and id.
func (j *job) message(ctx context.Context, c *chunk) (*nats.Msg, error) {
	body, headerLength, err := c.request(j.input)
	if err != nil {
		return nil, fmt.Errorf("chunk %d: %w", c.index, err)
	}
	c.values = nil // in the request now
	if limit := j.js.Conn().MaxPayload(); int64(len(body)) > limit-4096 {
		return nil, fmt.Errorf("a request of %d rows is %d bytes, more than NATS carries (%d): lower RowsPerRequest", c.good, len(body), limit)
	}
	ev := event.New()
	ev.SetID(c.id)
	ev.SetSource(j.source)
	ev.SetType(events.TypeInferenceRequest)
	ev.SetExtension(events.ExtensionModel, j.cfg.Function)
	events.SetInferenceData(&ev, body, headerLength)
	msg := nats.NewMsg(j.subject)
	if err := events.WriteEvent(ctx, msg, &ev); err != nil {
		return nil, err
	}
	msg.Header.Set(events.HeaderRecord, "true")
	msg.Header.Set(events.HeaderMsgID, events.MsgID(j.source, c.id))
	return msg, nil
}

// settleAcks waits for each asynchronous publish; a refused one is
// published again, synchronously, until it is stored.
func (j *job) settleAcks(ctx context.Context, acks <-chan publishing) error {
	for p := range acks {
		select {
		case <-p.future.Ok():
		case err := <-p.future.Err():
			if err := j.publishRetry(ctx, p.msg, err); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// publishRetry publishes msg until it is stored, backing off while the
// queue is full; first is the error of the first attempt.
func (j *job) publishRetry(ctx context.Context, msg *nats.Msg, first error) error {
	backoff, err := 10*time.Millisecond, first
	for attempt := 1; ; attempt++ {
		full := events.IsQueueFull(err) || errors.Is(err, jetstream.ErrTooManyStalledMsgs)
		if full {
			j.queueFull.Add(1)
		} else if attempt >= maxAttempts {
			return fmt.Errorf("publish %s: %w", msg.Header.Get(events.HeaderMsgID), err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, j.cfg.MaxBackoff)
		if _, err = j.js.PublishMsg(ctx, msg); err == nil {
			return nil
		}
	}
}

// errorMessage is the message of an error event's {"error": "…"} body.
func errorMessage(body []byte) string {
	var answer struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &answer) != nil || answer.Error == "" {
		return "the function failed: " + string(body)
	}
	return answer.Error
}
