package activator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// wantsAsync reports whether the caller asked not to wait (RFC 7240 Prefer: respond-async).
func wantsAsync(r *http.Request) bool {
	for _, header := range r.Header.Values("Prefer") {
		for _, preference := range strings.Split(header, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(preference), "=")
			if strings.EqualFold(strings.TrimSpace(name), "respond-async") {
				return true
			}
		}
	}
	return false
}

// accepted is the body of a 202 answer.
type accepted struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Location string `json:"location"`
}

// accept queues ev for fn without waiting (enqueue) and answers 202 with
// where to fetch its result.
func (a *Activator) accept(ctx context.Context, w http.ResponseWriter, fn *functions.Function, ev *event.Event, sink string) error {
	if err := a.enqueue(ctx, fn, ev, sink); err != nil {
		return err
	}
	location := resultLocation(ev)
	w.Header().Set("Location", location)
	writeJSON(w, http.StatusAccepted, accepted{ID: ev.ID(), Status: events.ResultPending, Location: location})
	return nil
}

// enqueue queues ev for fn without waiting: it records the request as
// pending and publishes it asking the worker to record its result. A request
// already accepted (same source and id) is scored once: the caller gets the
// same answer and, later, the first result.
func (a *Activator) enqueue(ctx context.Context, fn *functions.Function, ev *event.Event, sink string) error {
	if sink == "" {
		sink = fn.Spec.Delivery.SinkURI
	} else if err := a.cfg.SinkAllow.CheckURI(sink); err != nil {
		return fmt.Errorf("%w: header %s: %v", errBadRequest, events.HeaderSinkURI, err)
	}
	key := events.ResultKey(ev.Source(), ev.ID())
	pending := events.EncodeResult(events.Result{
		ID: ev.ID(), Source: ev.Source(), Function: fn.Metadata.Name, Revision: fn.Status.Revision,
		Status: events.ResultPending, SubmittedAt: time.Now().UTC(),
	})
	err := a.untilStored(ctx, func(ctx context.Context) error {
		_, err := a.results.Create(ctx, key, pending)
		return err
	})
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		// Accepted before (or by an attempt above whose answer was lost):
		// while it is pending, within the stream's de-duplication window,
		// it is published again, which the stream stores once, so that a
		// request whose publish never happened (its activator died in
		// between) is not lost.
		if stillPending, err := a.sameFunction(ctx, key, fn.Metadata.Name, ev); err != nil || !stillPending {
			return err
		}
	case err != nil:
		return fmt.Errorf("%w: record the request: %v", errUnavailable, err)
	}
	a.waker.wake(fn.Metadata.Name, fn.Status.Revision)
	msg := nats.NewMsg(events.RequestSubject(fn.Metadata.Name, fn.Status.Revision))
	if err := events.WriteEvent(ctx, msg, ev); err != nil {
		return err
	}
	events.SetMessageTrace(ctx, msg)
	msg.Header.Set(events.HeaderRecord, "true")
	if sink != "" {
		msg.Header.Set(events.HeaderSinkURI, sink)
	}
	msg.Header.Set(events.HeaderMsgID, events.MsgID(ev.Source(), ev.ID()))
	if err := a.untilStored(ctx, func(ctx context.Context) error {
		_, err := a.js.PublishMsg(ctx, msg)
		return err
	}); err != nil {
		_ = a.results.Delete(context.Background(), key) // not queued: not pending either
		return a.publishError(fn.Metadata.Name, err)
	}
	a.storeFailure.Store(nil)
	return nil
}

// untilStored runs attempt, which stores something in JetStream, with
// storeTimeout, and again while it fails for a reason that passes (a stream
// leader being elected), for storeRetryFor at most.
func (a *Activator) untilStored(ctx context.Context, attempt func(context.Context) error) error {
	giveUp := time.Now().Add(storeRetryFor)
	for n := 0; ; n++ {
		try, cancel := context.WithTimeout(ctx, storeTimeout)
		err := attempt(try)
		cancel()
		if err == nil || !storeMayPass(err) || ctx.Err() != nil || time.Now().After(giveUp) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(storeRetry(n)):
		}
	}
}

// sameFunction accepts a request again only for the function it was
// accepted for: an id taken by another function's request is a conflict,
// not a 202 for a request that was never queued. It says whether the
// request is pending and young enough to be published again.
func (a *Activator) sameFunction(ctx context.Context, key, function string, ev *event.Event) (pending bool, _ error) {
	entry, err := a.results.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound): // a replica that has not caught up answered
		return true, nil
	case err != nil:
		return false, fmt.Errorf("%w: read the request's record: %v", errUnavailable, err)
	}
	recorded, err := events.DecodeResult(entry.Value())
	switch {
	case err != nil:
		return false, nil
	case recorded.Function != function:
		return false, fmt.Errorf("%w: request %q from %q was sent to another function: choose another id", errDuplicate, ev.ID(), ev.Source())
	}
	// Past the stream's de-duplication window a copy published again
	// would be stored again, and scored twice.
	return recorded.Status == events.ResultPending && time.Since(recorded.SubmittedAt) < events.DefaultQueueConfig().Duplicates, nil
}

// resultLocation is where the result of an accepted request is fetched.
func resultLocation(ev *event.Event) string {
	location := "/v1/requests/" + url.PathEscape(ev.ID())
	if ev.Source() != source {
		location += "?source=" + url.QueryEscape(ev.Source())
	}
	return location
}

// requestResult serves GET /v1/requests/{id}[?source=…]: 202 while pending,
// the answer a synchronous call would have given once done, or the error.
func (a *Activator) requestResult(w http.ResponseWriter, r *http.Request) {
	id, from := r.PathValue("id"), r.URL.Query().Get("source")
	if from == "" {
		from = source
	}
	entry, err := a.results.Get(r.Context(), events.ResultKey(from, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		writeError(w, fmt.Errorf("%w: no request %q from %q (results are kept for %s)", errNotFound, id, from, a.cfg.ResultTTL))
		return
	}
	if err != nil {
		writeError(w, fmt.Errorf("%w: read the result: %v", errUnavailable, err))
		return
	}
	result, err := events.DecodeResult(entry.Value())
	if err != nil {
		writeError(w, fmt.Errorf("read the result of %q: %w", id, err))
		return
	}
	if err := authorize(r.Context(), ScopePredict, result.Function); err != nil {
		writeError(w, err)
		return
	}
	switch result.Status {
	case events.ResultDone:
		body, headerLength := result.Answer()
		if result.Object != "" {
			if body, err = events.ReadAnswer(r.Context(), a.answers, result.Object, false); err != nil {
				writeError(w, fmt.Errorf("%w: %v", errUnavailable, err))
				return
			}
		}
		writeBody(w, body, headerLength)
	case events.ResultError:
		writeError(w, &workerError{status: result.Code, message: result.Error})
	default:
		writeJSON(w, http.StatusAccepted, accepted{ID: id, Status: result.Status, Location: r.URL.RequestURI()})
	}
}
