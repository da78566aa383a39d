package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

// finish replies to the caller, if one waits, then settles the message, in
// the request's reply span.
func (w *Worker) finish(j *job) {
	ctx, span := tracer.Start(j.ctx, "reply")
	defer span.End()
	j.ctx = ctx // the answer's event names the reply span
	w.metrics.queueWait.Observe(j.waited.Seconds())
	if j.expired {
		w.metrics.requests.WithLabelValues("expired").Inc()
		w.count(j)
		w.settle(j, events.Permanent(errExpired))
		return
	}
	if j.recorded != nil {
		w.finishRecorded(j)
		return
	}
	var body []byte
	if j.err == nil {
		buffer := getBuffer()
		var err error
		if body, j.headerLength, err = oip.AppendInferenceResponseBinary(*buffer, w.response(j), j.binaryOutputs); err != nil {
			j.err = events.Permanent(fmt.Errorf("encode the answer: %w", err))
		}
		defer putBuffer(buffer, body)
	}
	if j.err == nil && len(body) > min(w.inlineAnswerBytes(), w.cfg.MaxAnswerBytes) {
		var err error
		if body, err = w.offload(j, body); err != nil {
			w.log.Warn("store a large answer", "request_id", j.eventID, "error", err)
			w.settle(j, err) // transient: the request is tried again
			return
		}
	}
	if j.record && j.eventID != "" {
		if err := w.record(j, body); err != nil {
			w.log.Warn("record result", "request_id", j.eventID, "error", err)
			w.settle(j, err) // transient: the request is tried again
			return
		}
	}
	w.logPrediction(j) // before the answer, so that feedback sent on it finds the prediction
	if j.replyTo != "" {
		err := w.answer(j.replyTo, j, body)
		if errors.Is(err, nats.ErrMaxPayload) { // its headers took it over
			j.err = events.Permanent(fmt.Errorf("%w: the answer (%d bytes) and its headers are more than NATS may carry", events.ErrAnswerTooLarge, len(body)))
			err = w.answer(j.replyTo, j, nil)
		}
		if err != nil {
			w.log.Warn("reply", "request_id", j.eventID, "error", err)
			w.settle(j, err) // transient: the request is tried again
			return
		}
	}
	outcome := "ok"
	if j.err != nil {
		outcome = "error"
		w.log.Info("request failed", "request_id", j.eventID, "error", j.err)
	}
	w.metrics.requests.WithLabelValues(outcome).Inc()
	w.count(j)
	w.settle(j, j.err)
}

// settle settles the message; a transient failure on the last delivery the
// consumer allows terminates it with the reason instead of leaving it stuck.
// A request terminated while nobody waits for its answer, and not merely
// expired, goes to the dead-letter stream first; if it cannot, it is not
// terminated but tried again.
func (w *Worker) settle(j *job, err error) {
	if err != nil && !events.IsPermanent(err) {
		if w.maxDeliver > 0 && j.delivered >= uint64(w.maxDeliver) {
			err = events.Permanent(fmt.Errorf("gave up after %d deliveries: %w", j.delivered, err))
		}
	}
	if events.IsPermanent(err) && j.replyTo == "" && !j.expired && w.cfg.JetStream != nil {
		if deadErr := w.deadLetter(j, err); deadErr != nil {
			w.log.Warn("dead letter", "request_id", j.eventID, "error", deadErr)
			err = deadErr // transient: the request stays in the queue rather than be lost
		}
	}
	w.held.release(j.msg)
	if settleErr := events.Settle(j.msg, err); settleErr != nil {
		w.log.Warn("settle", "request_id", j.eventID, "error", settleErr)
	}
}

// deadLetter keeps a request that is given up while nobody waits for its
// answer in the dead-letter stream, with the reason it was given up.
func (w *Worker) deadLetter(j *job, reason error) error {
	attempts := max(int(j.delivered), 1)
	if w.maxDeliver > 0 {
		attempts = min(attempts, w.maxDeliver) // a delivery past the limit only dead-letters
	}
	letter := events.DeadLetter{Function: w.cfg.Function, Revision: w.cfg.Revision, Reason: reason.Error(), Attempts: attempts}
	// A dead letter that cannot be stored leaves the request in the queue,
	// delivered again later; a few quick tries spare that wait.
	var err error
	for try, pause := 0, 100*time.Millisecond; try < 3; try, pause = try+1, 4*pause {
		if try > 0 {
			time.Sleep(pause)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = events.PublishDeadLetter(ctx, w.cfg.JetStream, j.msg, letter)
		cancel()
		if err == nil {
			w.metrics.dead.Inc()
			return nil
		}
	}
	return fmt.Errorf("dead letter: %w", err)
}

// inlineAnswerBytes is the largest answer a reply carries itself: the most a
// NATS message may hold, less room for its headers.
func (w *Worker) inlineAnswerBytes() int {
	return int(w.nc.MaxPayload()) - 64<<10
}

// offload puts an answer too large for one NATS message into the answers
// store, and returns the body the messages then carry: none. An answer over
// MaxAnswerBytes, or one this worker has no store for, becomes j's error.
func (w *Worker) offload(j *job, body []byte) ([]byte, error) {
	switch {
	case len(body) > w.cfg.MaxAnswerBytes:
		j.err = events.Permanent(fmt.Errorf("%w: the answer takes %d bytes, the limit is %d: request fewer rows or outputs", events.ErrAnswerTooLarge, len(body), w.cfg.MaxAnswerBytes))
		return nil, nil
	case w.cfg.Answers == nil:
		j.err = events.Permanent(fmt.Errorf("%w: the answer takes %d bytes, more than a NATS message carries (%d), and this worker has no answers store: request fewer rows or outputs", events.ErrAnswerTooLarge, len(body), w.nc.MaxPayload()))
		return nil, nil
	}
	name := w.cfg.Function + "/" + nuid.Next()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := w.cfg.Answers.PutBytes(ctx, name, body); err != nil {
		return nil, fmt.Errorf("answers store: %w", err)
	}
	j.answerObject = name
	return nil, nil
}

// answer publishes to subject the response CloudEvent with body, or the
// error event of j.err.
func (w *Worker) answer(subject string, j *job, body []byte) error {
	msg, err := w.message(subject, j, body)
	if err != nil {
		return err
	}
	return w.nc.PublishMsg(msg)
}

// message is the response CloudEvent with body, or the error event of j.err.
func (w *Worker) message(subject string, j *job, body []byte) (*nats.Msg, error) {
	ev := event.New()
	ev.SetID(nuid.Next())
	ev.SetSource(w.source)
	ev.SetExtension(events.ExtensionModel, w.cfg.Function)
	ev.SetExtension(events.ExtensionModelVersion, w.cfg.Revision)
	if j.eventID != "" {
		ev.SetExtension(events.ExtensionRequestID, j.eventID)
	}
	msg := nats.NewMsg(subject)
	if j.err != nil {
		ev.SetType(events.TypeInferenceError)
		body, _ = json.Marshal(map[string]string{"error": j.err.Error()})
		events.SetInferenceData(&ev, body, 0)
		msg.Header = nats.Header{events.HeaderStatus: []string{strconv.Itoa(statusOf(j.err))}}
	} else {
		ev.SetType(events.TypeInferenceResponse)
		events.SetInferenceData(&ev, body, j.headerLength)
	}
	if err := events.WriteEvent(context.Background(), msg, &ev); err != nil {
		return nil, err
	}
	events.SetMessageTrace(j.ctx, msg)
	if j.err == nil && j.answerObject != "" {
		msg.Header.Set(events.HeaderAnswerObject, j.answerObject)
	}
	return msg, nil
}

// announce publishes a recorded result on the function's results subject,
// for live subscribers, and, when the request names a sink, durably into the
// sink stream, for delivery.
func (w *Worker) announce(j *job, body []byte) error {
	msg, err := w.message(events.ResultSubject(w.cfg.Function), j, body)
	if err != nil {
		return err
	}
	if sink := j.msg.Headers().Get(events.HeaderSinkURI); sink != "" { // the same event, kept for delivery
		durable := nats.NewMsg(events.SinkSubject(w.cfg.Function))
		durable.Header, durable.Data = maps.Clone(msg.Header), msg.Data
		durable.Header.Set(events.HeaderSinkURI, sink)
		durable.Header.Set(events.HeaderMsgID, "sink#"+events.MsgID(j.source, j.eventID)) // announced again: delivered once
		if _, err := w.cfg.JetStream.PublishMsg(context.Background(), durable); err != nil {
			return err
		}
	}
	return w.nc.PublishMsg(msg)
}

// recordedResult is the answer an earlier delivery of j recorded, or nil: a
// worker that recorded it may have stopped before it acknowledged it. A
// recorded error is not taken: it may be that of the request a dead letter
// replays, which runs again.
func (w *Worker) recordedResult(j *job) *events.Result {
	if w.cfg.Results == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	entry, err := w.cfg.Results.Get(ctx, events.ResultKey(j.source, j.eventID))
	if err != nil {
		return nil // not recorded, or the bucket does not answer: the request runs
	}
	result, err := events.DecodeResult(entry.Value())
	if err != nil || result.Status != events.ResultDone {
		return nil
	}
	return &result
}

// finishRecorded settles a request whose answer an earlier delivery
// recorded: the answer is announced again, since the worker that recorded
// it may have stopped before announcing it, and the request is acknowledged
// without running again.
func (w *Worker) finishRecorded(j *job) {
	body, headerLength := j.recorded.Answer()
	j.headerLength = headerLength
	if err := w.announce(j, body); err != nil {
		w.log.Warn("announce a recorded result", "request_id", j.eventID, "error", err)
		w.settle(j, err) // transient: the request is tried again
		return
	}
	w.metrics.requests.WithLabelValues("recorded").Inc()
	w.settle(j, nil)
}

// statusOf is the HTTP status a failed request is answered with: 400 for
// input the model cannot take, 413 for an answer over the limit, 503 when the
// model cannot run at all, 500 for anything else.
func statusOf(err error) int {
	var field *oip.FieldError
	switch {
	case errors.As(err, &field):
		return http.StatusBadRequest
	case errors.Is(err, functions.ErrModelCannotRun):
		return http.StatusServiceUnavailable
	case errors.Is(err, events.ErrAnswerTooLarge):
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// record writes the request's result to the results bucket and announces it
// on the function's results subject, before the request is acknowledged.
func (w *Worker) record(j *job, body []byte) error {
	if w.cfg.Results == nil {
		return events.Permanent(errors.New("this worker records no results: its request asked for one"))
	}
	if j.msg.Headers().Get(events.HeaderSinkURI) != "" && w.cfg.JetStream == nil {
		return events.Permanent(errors.New("this worker delivers no results to sinks: its request named one"))
	}
	result := events.Result{
		ID: j.eventID, Source: j.source, Function: w.cfg.Function, Revision: w.cfg.Revision,
		Status: events.ResultDone, Code: http.StatusOK,
		SubmittedAt: j.submitted, CompletedAt: time.Now().UTC(),
	}
	switch {
	case j.err != nil:
		result.Status, result.Code, result.Error = events.ResultError, statusOf(j.err), j.err.Error()
	case j.answerObject != "":
		result.Object, result.HeaderLength = j.answerObject, j.headerLength
	case j.headerLength > 0:
		result.Binary, result.HeaderLength = body, j.headerLength
	default:
		result.Response = body
	}
	buffer := getBuffer()
	data := events.AppendResult(*buffer, result)
	defer putBuffer(buffer, data)
	if _, err := w.cfg.Results.Put(context.Background(), events.ResultKey(j.source, j.eventID), data); err != nil {
		return fmt.Errorf("results bucket: %w", err)
	}
	return w.announce(j, body)
}

func (w *Worker) response(j *job) *oip.InferenceResponse {
	outputs := j.outputs
	if len(j.req.Outputs) > 0 {
		outputs = make([]oip.Tensor, 0, len(j.req.Outputs))
		for _, want := range j.req.Outputs {
			output, _ := oip.FindTensor(j.outputs, want.Name)
			outputs = append(outputs, output)
		}
	}
	return &oip.InferenceResponse{
		ModelName:    w.cfg.Function,
		ModelVersion: w.cfg.Revision,
		ID:           j.req.ID,
		Outputs:      outputs,
	}
}

// buffers holds the buffers that answers and result records are encoded
// into. Whatever a worker does with those bytes (a NATS publish, a store
// put) copies them before finish returns, so the buffers are used again:
// a batch run's answers of hundreds of kilobytes would otherwise each be a
// fresh allocation, zeroed, then collected.
var buffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuffer is the largest buffer kept for another answer.
const maxPooledBuffer = 4 << 20

// getBuffer is an empty buffer from the pool.
func getBuffer() *[]byte { return buffers.Get().(*[]byte) }

// putBuffer gives back buffer, emptied, once nothing refers to used, what
// was encoded into it.
func putBuffer(buffer *[]byte, used []byte) {
	if cap(used) > maxPooledBuffer {
		return
	}
	*buffer = used[:0]
	buffers.Put(buffer)
}
