package activator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

// source is the CloudEvent source of the requests the activator publishes.
const source = "/sluice/activator"

// lookup checks that the caller may predict with the function named, finds
// it, and makes the request's one routing
// decision (functions.Status.Route, by the version asked for or the traffic
// table, with the caller's route key): the Function returned names that
// revision and its model in Status.Revision and Status.Model. A function or
// version the view does not hold yet is read from the catalog, so what a
// returned deploy wrote answers at once.
func (a *Activator) lookup(ctx context.Context, name, version, routeKey string) (*functions.Function, error) {
	if err := authorize(ctx, ScopePredict, name); err != nil {
		return nil, err
	}
	return a.find(ctx, name, version, routeKey)
}

// find is lookup for a caller already authorized.
func (a *Activator) find(ctx context.Context, name, version, routeKey string) (*functions.Function, error) {
	fn, ok := a.registry.Lookup(name)
	if !ok || fn.Status.Model == nil || (version != "" && !hasRevision(fn, version)) {
		var err error
		if fn, ok, err = a.registry.Refresh(ctx, name); err != nil {
			return nil, fmt.Errorf("%w: read the function catalog: %v", errUnavailable, err)
		}
	}
	if !ok || fn.Status.Model == nil {
		return nil, fmt.Errorf("%w: model %q is not deployed", errNotFound, name)
	}
	revision, err := fn.Status.Route(version, routeKey, rand.Float64())
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", name, err)
	}
	if revision.Name == fn.Status.Revision {
		return fn, nil
	}
	view := *fn
	view.Status.Revision, view.Status.Model = revision.Name, &revision.Model
	return &view, nil
}

func hasRevision(fn *functions.Function, name string) bool {
	_, ok := fn.Status.FindRevision(name)
	return ok
}

// limitBody refuses a body over the limit before reading it when
// Content-Length says so, and makes reading fail as soon as the limit is passed.
func (a *Activator) limitBody(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength > a.cfg.MaxBodyBytes {
		return fmt.Errorf("%w: %d bytes, the limit is %d", errTooLarge, r.ContentLength, a.cfg.MaxBodyBytes)
	}
	r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes)
	return nil
}

// bodyError names a read that passed the body limit as such.
func (a *Activator) bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return fmt.Errorf("%w: the limit is %d bytes", errTooLarge, a.cfg.MaxBodyBytes)
	}
	return err
}

// readBody reads a request body within the limit; one bufferBody read is
// not read again.
func (a *Activator) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if read, ok := r.Body.(*readBody); ok {
		return read.data, nil
	}
	if err := a.limitBody(w, r); err != nil {
		return nil, err
	}
	// Grown as bytes arrive: a Content-Length alone reserves at most 64 KiB.
	body := bytes.NewBuffer(make([]byte, 0, min(max(r.ContentLength, 512), 64<<10)))
	if _, err := body.ReadFrom(r.Body); err != nil {
		var timeout net.Error
		switch err := a.bodyError(err); {
		case errors.Is(err, errTooLarge):
			return nil, err
		case errors.As(err, &timeout) && timeout.Timeout():
			return nil, fmt.Errorf("%w: the whole body must arrive within %s", errSlowBody, a.cfg.BodyTimeout)
		}
		return nil, fmt.Errorf("%w: read body: %v", errBadRequest, err)
	}
	return body.Bytes(), nil
}

// readBody is a request body read whole, for the handler to read again.
type readBody struct {
	*bytes.Reader
	data []byte
}

func (*readBody) Close() error { return nil }

// bufferBody reads r's body whole within BodyTimeout, and leaves it in
// r.Body for the handler.
func (a *Activator) bufferBody(w http.ResponseWriter, r *http.Request) error {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(a.cfg.BodyTimeout))
	data, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	r.Body, r.ContentLength = &readBody{Reader: bytes.NewReader(data), data: data}, int64(len(data))
	return nil
}

// requestEvent wraps an OIP request body into a request CloudEvent for fn;
// headerLength is the length of its JSON inference header when the body is
// in the binary tensor data extension, else 0.
func requestEvent(fn *functions.Function, id string, body []byte, headerLength int) *event.Event {
	ev := event.New()
	ev.SetID(id)
	ev.SetSource(source)
	ev.SetType(events.TypeInferenceRequest)
	ev.SetTime(time.Now())
	ev.SetExtension(events.ExtensionModel, fn.Metadata.Name)
	ev.SetExtension(events.ExtensionModelVersion, fn.Status.Revision)
	events.SetInferenceData(&ev, body, headerLength)
	return &ev
}

// requestIDHeader on a synchronous answer carries its request's id: the
// id that feedback names the request by.
const requestIDHeader = "Sluice-Request-Id"

// requestID is the caller's Idempotency-Key, or a new unique id.
func requestID(r *http.Request) (string, error) {
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		return key, checkLength("Idempotency-Key", key, maxIDBytes)
	}
	return nuid.Next(), nil
}

// Limits of what becomes a NATS header of the request: JetStream refuses a
// message whose headers pass 64 KiB, and the activator's HTTP server takes
// at most maxHeaderBytes of headers (431 beyond).
const (
	maxIDBytes     = 256  // a request id: Idempotency-Key, or a CloudEvent's id
	maxSourceBytes = 1024 // a CloudEvent's source
	maxHeaderBytes = 32 << 10
)

// checkLength refuses a value over max bytes with a 400 naming field.
func checkLength(field, value string, max int) error {
	if len(value) > max {
		return &oip.FieldError{Field: field, Problem: fmt.Sprintf("%d bytes, at most %d", len(value), max)}
	}
	return nil
}

// call sends ev to the revision fn routes it to and waits for the answer
// until the function's request timeout. When that revision is a rollout's
// candidate and the version was not pinned, the candidate has half the time,
// and a request it fails for a reason of the server's is sent once more to
// the stable revision: no caller sees a canary's failure, and the candidate's
// workers still count it against it. A rollout in shadow gets a copy (shadow).
func (a *Activator) call(ctx context.Context, fn *functions.Function, ev *event.Event, pinned bool) (*nats.Msg, error) {
	timeout := fn.Spec.Timeouts.Request.Duration
	stable, canary := stableOf(fn)
	if pinned || !canary {
		compare := a.shadow(ctx, fn, ev, pinned)
		reply, err := a.send(ctx, fn, ev, timeout, "")
		compare(reply, err)
		return reply, err
	}
	reply, err := a.send(ctx, fn, ev, timeout/2, "")
	if !serverSide(err) || ctx.Err() != nil {
		return reply, err
	}
	a.log.Info("the candidate failed a request: sending it to the stable revision", "function", fn.Metadata.Name,
		"request_id", ev.ID(), "candidate", fn.Status.Revision, "stable", stable.Status.Revision, "error", err)
	a.metrics.canaryRetries.WithLabelValues(fn.Metadata.Name).Inc()
	retry := ev.Clone()
	retry.SetExtension(events.ExtensionModelVersion, stable.Status.Revision)
	return a.send(ctx, stable, &retry, timeout-timeout/2, "#retry")
}

// stableOf is the view of fn routed to its rollout's stable revision, when
// fn was routed to a candidate that is rolling out.
func stableOf(fn *functions.Function) (*functions.Function, bool) {
	rollout := fn.Status.Rollout
	if rollout == nil || rollout.Done() || fn.Status.Revision != rollout.Candidate {
		return nil, false
	}
	revision, ok := fn.Status.FindRevision(rollout.Stable)
	if !ok || revision.State == functions.RevisionFailed {
		return nil, false
	}
	view := *fn
	view.Status.Revision, view.Status.Model = revision.Name, &revision.Model
	return &view, true
}

// serverSide says whether a request failed for a reason of the server's: an
// error answer of 500 or more, no answer in time, a queue that does not answer.
func serverSide(err error) bool {
	var worker *workerError
	switch {
	case err == nil:
		return false
	case errors.As(err, &worker):
		return worker.status >= http.StatusInternalServerError
	}
	return errors.Is(err, errTimeout) || errors.Is(err, errUnavailable) || errors.Is(err, functions.ErrModelCannotRun)
}

// send publishes ev to the stream of fn's revision and waits for the
// worker's reply for timeout. The late reply of a request that timed out is
// dropped. attempt tells a second try of the same event from the first, so
// that the stream does not take it for a duplicate.
func (a *Activator) send(ctx context.Context, fn *functions.Function, ev *event.Event, timeout time.Duration, attempt string) (*nats.Msg, error) {
	replyTo, replies, stopWaiting := a.inbox.register(fn.Metadata.Name)
	defer stopWaiting()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	arrived := time.Now()
	cold := a.waker.wake(fn.Metadata.Name, fn.Status.Revision)
	msg, err := requestMessage(ctx, fn.Metadata.Name, fn.Status.Revision, ev, replyTo, deadline, attempt)
	if err != nil {
		return nil, err
	}
	ack, err := a.js.PublishMsgAsync(msg)
	if err != nil {
		return nil, a.publishError(fn.Metadata.Name, err)
	}
	acked, failed := ack.Ok(), ack.Err()
	// While the stream cannot store the request for a reason that passes,
	// it is published again (storeRetryFor); retry fires for the next attempt.
	var retry <-chan time.Time
	attempts, giveUp := 0, time.Now().Add(storeRetryFor)
	for {
		select {
		case reply := <-replies:
			if cold {
				a.metrics.coldStart.WithLabelValues(fn.Metadata.Name).Observe(time.Since(arrived).Seconds())
			}
			if name := reply.Header.Get(events.HeaderAnswerObject); name != "" {
				data, err := events.ReadAnswer(ctx, a.answers, name, true)
				if err != nil {
					return nil, fmt.Errorf("%w: %v", errUnavailable, err)
				}
				reply.Data = data
			}
			return reply, replyError(reply)
		case pubAck := <-acked:
			a.storeFailure.Store(nil)
			if pubAck.Duplicate && attempts == 0 { // on a later attempt, the duplicate of an earlier one

				return nil, fmt.Errorf("%w: request id %q from %q was already accepted", errDuplicate, ev.ID(), ev.Source())
			}
			acked = nil
		case err := <-failed:
			if !storeMayPass(err) || time.Now().After(giveUp) {
				return nil, a.publishError(fn.Metadata.Name, err)
			}
			failed, retry = nil, time.After(storeRetry(attempts))
		case <-retry:
			attempts++
			if ack, err = a.js.PublishMsgAsync(msg); err != nil {
				return nil, a.publishError(fn.Metadata.Name, err)
			}
			acked, failed, retry = ack.Ok(), ack.Err(), nil
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && cold {
				return nil, fmt.Errorf("%w: model %q had no ready replica and none answered within its request timeout of %s; the request stays queued until it expires", errTimeout, fn.Metadata.Name, timeout)
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("%w: no answer from model %q within its request timeout of %s", errTimeout, fn.Metadata.Name, timeout)
			}
			return nil, ctx.Err()
		}
	}
}

// requestMessage is the message of a synchronous request for a revision:
// ev, where to reply, and when the caller stops waiting.
func requestMessage(ctx context.Context, function, revision string, ev *event.Event, replyTo string, deadline time.Time, attempt string) (*nats.Msg, error) {
	msg := nats.NewMsg(events.RequestSubject(function, revision))
	if err := events.WriteEvent(ctx, msg, ev); err != nil {
		return nil, err
	}
	events.SetMessageTrace(ctx, msg)
	msg.Header.Set(events.HeaderReplyTo, replyTo)
	msg.Header.Set(events.HeaderDeadline, strconv.FormatInt(deadline.UnixNano(), 10))
	msg.Header.Set(events.HeaderMsgID, events.MsgID(ev.Source(), ev.ID())+attempt)
	return msg, nil
}

// publishError is what the caller is told of a request the queue did not
// take; one it could not store is remembered for readiness.
func (a *Activator) publishError(function string, err error) error {
	switch {
	case events.IsQueueFull(err), errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return fmt.Errorf("%w: model %q has as many requests waiting as it may buffer; retry later", errQueueFull, function)
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: the request is larger than the queue may carry", errTooLarge)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: the queue of model %q does not answer: %v", errUnavailable, function, err)
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("%w: the queue of model %q did not store the request within %s (its NATS storage may be full, or its stream without a leader); retry later", errUnavailable, function, storeTimeout)
	default:
		err = fmt.Errorf("%w: publish request for model %q: %v", errUnavailable, function, err)
	}
	a.storeFailure.Store(&storeFault{err: err, at: time.Now()}) // until a request is stored again
	return err
}

// replyError turns an error reply of the worker into a *workerError.
func replyError(reply *nats.Msg) error {
	code := reply.Header.Get(events.HeaderStatus)
	if code == "" {
		return nil
	}
	status, err := strconv.Atoi(code)
	if err != nil || status < 400 {
		status = http.StatusInternalServerError
	}
	message := string(reply.Data)
	var body struct {
		Error string `json:"error"`
	}
	if jsonErr := json.Unmarshal(reply.Data, &body); jsonErr == nil && body.Error != "" {
		message = body.Error
	}
	return &workerError{status: status, message: message}
}
