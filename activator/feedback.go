package activator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

// feedbackAccepted is the body of a 202 answer to feedback.
type feedbackAccepted struct {
	ID   string `json:"id"`
	Rows int    `json:"rows"`
}

// feedback serves POST /v1/functions/{name}/feedback: labelled rows, or the
// id of a past request with a label for each of its rows (events.Feedback).
// It is checked against the model and the prediction log, then kept in the
// feedback stream, where retraining and the accuracy gates read it.
func (a *Activator) feedback(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	var feedback events.Feedback
	decoder := json.NewDecoder(bytes.NewReader(body))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&feedback); err != nil {
		writeError(w, fmt.Errorf("%w: feedback: %v", errBadRequest, err))
		return
	}
	id, err := requestID(r)
	if err == nil {
		err = a.keepFeedback(r.Context(), r.PathValue("name"), id, "/sluice/activator/feedback", feedback)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, feedbackAccepted{ID: id, Rows: len(feedback.Labels)})
}

// feedbackEvent serves a TypeFeedback CloudEvent sent to POST /.
func (a *Activator) feedbackEvent(w http.ResponseWriter, r *http.Request, ev *event.Event) (string, int) {
	name, _ := ev.Extensions()[events.ExtensionModel].(string)
	var feedback events.Feedback
	decoder := json.NewDecoder(bytes.NewReader(ev.Data()))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&feedback); err != nil {
		return name, a.writeEventError(w, r, ev.ID(), fmt.Errorf("%w: data: %v", errBadEvent, err))
	}
	if err := a.keepFeedback(r.Context(), name, ev.ID(), ev.Source(), feedback); err != nil {
		return name, a.writeEventError(w, r, ev.ID(), err)
	}
	a.writeEvent(w, r, answerEvent(events.TypeFeedbackAccepted, ev.ID(), feedbackAccepted{ID: ev.ID(), Rows: len(feedback.Labels)}), http.StatusAccepted)
	return name, http.StatusAccepted
}

// keepFeedback checks feedback for the named function and stores it in the
// feedback stream as a TypeFeedback CloudEvent, once per source and id.
func (a *Activator) keepFeedback(ctx context.Context, name, id, source string, feedback events.Feedback) error {
	if err := authorize(ctx, ScopeFeedback, name); err != nil {
		return err
	}
	fn, err := a.find(ctx, name, "", "")
	if err != nil && !errors.Is(err, functions.ErrModelCannotRun) {
		return err
	}
	if fn == nil {
		fn, _ = a.registry.Lookup(name)
	}
	if err := checkFeedback(ctx, a, fn, feedback); err != nil {
		return err
	}
	ev := event.New()
	ev.SetID(id)
	ev.SetSource(source)
	ev.SetType(events.TypeFeedback)
	ev.SetTime(time.Now())
	ev.SetExtension(events.ExtensionModel, name)
	if err := ev.SetData(events.ContentTypeJSON, feedback); err != nil {
		return err
	}
	msg := nats.NewMsg(events.FeedbackSubject(name))
	if err := events.WriteEvent(ctx, msg, &ev); err != nil {
		return err
	}
	msg.Header.Set(events.HeaderMsgID, events.MsgID(source, id))
	if _, err := a.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("%w: keep the feedback: %v", errUnavailable, err)
	}
	return nil
}

// checkFeedback refuses feedback that does not fit the function: rows of
// the wrong width, or a request the prediction log does not have, or labels
// that are not one per row of that request.
func checkFeedback(ctx context.Context, a *Activator, fn *functions.Function, feedback events.Feedback) error {
	if err := feedback.Validate(); err != nil {
		return &oip.FieldError{Field: "feedback", Problem: err.Error()}
	}
	if feedback.RequestID != "" {
		prediction, err := readPrediction(ctx, a, fn.Metadata.Name, feedback.RequestID)
		switch {
		case errors.Is(err, events.ErrNoPrediction):
			return fmt.Errorf("%w: requestId: %v (answers are kept a week, when the function has spec.retrain or an accuracy gate)", errNotFound, err)
		case err != nil:
			return fmt.Errorf("%w: %v", errUnavailable, err)
		case len(prediction.Features) != len(feedback.Labels):
			return &oip.FieldError{Field: "labels", Problem: fmt.Sprintf("request %q had %d rows, got %d labels", feedback.RequestID, len(prediction.Features), len(feedback.Labels))}
		}
		return nil
	}
	width := featureWidth(fn)
	for i, row := range feedback.Features {
		if width > 0 && len(row) != width {
			return &oip.FieldError{Field: fmt.Sprintf("features[%d]", i), Problem: fmt.Sprintf("want %d values, one per feature of the model's input, got %d", width, len(row))}
		}
	}
	return nil
}

// readPrediction reads a request's logged prediction, waiting a little for
// one not there yet: the worker logs it as it answers, and feedback may
// follow the answer at once.
func readPrediction(ctx context.Context, a *Activator, function, requestID string) (events.Prediction, error) {
	for attempt := 0; ; attempt++ {
		prediction, err := events.ReadPrediction(ctx, a.js, function, requestID)
		if !errors.Is(err, events.ErrNoPrediction) || attempt == 4 {
			return prediction, err
		}
		select {
		case <-ctx.Done():
			return prediction, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// featureWidth is the width of the model's first input when it is a matrix
// of fixed width, else 0.
func featureWidth(fn *functions.Function) int {
	if fn.Status.Model == nil || len(fn.Status.Model.Signature.Inputs) == 0 {
		return 0
	}
	shape := fn.Status.Model.Signature.Inputs[0].Shape
	if len(shape) != 2 || shape[1] < 1 {
		return 0
	}
	return int(shape[1])
}
