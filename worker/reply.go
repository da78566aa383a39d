package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"sluice.dev/sluice/events"
)

// finish replies to the caller, if one waits, then settles the message.
func (w *Worker) finish(j *job) {
	w.metrics.queueWait.Observe(j.waited.Seconds())
	if j.expired {
		w.metrics.requests.WithLabelValues("expired").Inc()
		w.settle(j, events.Permanent(errExpired))
		return
	}
	var body []byte
	if j.err == nil {
		var err error
		if body, err = events.AppendInferenceResponse(nil, w.response(j)); err != nil {
			j.err = events.Permanent(fmt.Errorf("encode the answer: %w", err))
		}
	}
	if j.replyTo != "" {
		err := w.reply(j, body)
		if errors.Is(err, nats.ErrMaxPayload) {
			j.err = events.Permanent(fmt.Errorf("the answer (%d bytes) is larger than NATS may carry: request fewer rows or outputs", len(body)))
			err = w.reply(j, nil)
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
	w.settle(j, j.err)
}

// settle settles the message; a transient failure on the last delivery the
// consumer allows terminates it with the reason instead of leaving it stuck.
func (w *Worker) settle(j *job, err error) {
	if err != nil && !events.IsPermanent(err) {
		if meta, metaErr := j.msg.Metadata(); metaErr == nil && w.maxDeliver > 0 && meta.NumDelivered >= uint64(w.maxDeliver) {
			err = events.Permanent(fmt.Errorf("gave up after %d deliveries: %w", meta.NumDelivered, err))
		}
	}
	if settleErr := events.Settle(j.msg, err); settleErr != nil {
		w.log.Warn("settle", "request_id", j.eventID, "error", settleErr)
	}
}

// reply publishes the response CloudEvent with body, or the error event of
// j.err, to the caller's inbox.
func (w *Worker) reply(j *job, body []byte) error {
	ev := event.New()
	ev.SetID(nuid.Next())
	ev.SetSource(w.source)
	ev.SetExtension(events.ExtensionModel, w.cfg.Function)
	ev.SetExtension(events.ExtensionModelVersion, w.cfg.Revision)
	if j.eventID != "" {
		ev.SetExtension(events.ExtensionRequestID, j.eventID)
	}
	ev.SetDataContentType("application/json")
	msg := nats.NewMsg(j.replyTo)
	if j.err != nil {
		status := http.StatusInternalServerError
		var field *events.FieldError
		if errors.As(j.err, &field) {
			status = http.StatusBadRequest
		}
		ev.SetType(events.TypeInferenceError)
		body, _ = json.Marshal(map[string]string{"error": j.err.Error()})
		msg.Header = nats.Header{events.HeaderStatus: []string{strconv.Itoa(status)}}
	} else {
		ev.SetType(events.TypeInferenceResponse)
	}
	ev.DataEncoded = body
	if err := events.WriteEvent(context.Background(), msg, &ev); err != nil {
		return err
	}
	return w.nc.PublishMsg(msg)
}

func (w *Worker) response(j *job) *events.InferenceResponse {
	outputs := j.outputs
	if len(j.req.Outputs) > 0 {
		outputs = make([]events.Tensor, 0, len(j.req.Outputs))
		for _, want := range j.req.Outputs {
			output, _ := events.FindTensor(j.outputs, want.Name)
			outputs = append(outputs, output)
		}
	}
	return &events.InferenceResponse{
		ModelName:    w.cfg.Function,
		ModelVersion: w.cfg.Revision,
		ID:           j.req.ID,
		Outputs:      outputs,
	}
}
