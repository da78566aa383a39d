package worker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

// Counter counts what became of the requests of each revision, for the
// rollout gates (functions.Counter).
type Counter interface {
	Add(function, revision string, delta functions.Counts)
}

// count adds one finished request to the revision's counts: an error when
// it failed for a reason of the server's (the model, the worker, the
// caller's deadline passing in the queue), slow when it was answered later
// than SlowAfter after it was submitted.
func (w *Worker) count(j *job) {
	if w.cfg.Counter == nil || j.recorded != nil {
		return
	}
	delta := functions.Counts{Requests: 1}
	if j.expired || (j.err != nil && statusOf(j.err) >= http.StatusInternalServerError) {
		delta.Errors = 1
	}
	if w.cfg.SlowAfter > 0 && !j.submitted.IsZero() && time.Since(j.submitted) > w.cfg.SlowAfter {
		delta.Slow = 1
	}
	w.cfg.Counter.Add(w.cfg.Function, w.cfg.Revision, delta)
}

// logPrediction keeps what the model was given and what it answered in the
// function's prediction log, so that feedback may name the request. It asks
// for no acknowledgement: a prediction lost is feedback that cannot be
// matched, not a failed request.
func (w *Worker) logPrediction(j *job) {
	if !w.cfg.LogPredictions || j.err != nil || j.recorded != nil || j.eventID == "" {
		return
	}
	prediction, ok := predictionOf(j)
	if !ok {
		return
	}
	prediction.Revision = w.cfg.Revision
	data, err := json.Marshal(prediction)
	if err != nil {
		return
	}
	msg := nats.NewMsg(events.PredictionSubject(w.cfg.Function, j.eventID))
	msg.Data = data
	if err := w.nc.PublishMsg(msg); err != nil {
		w.log.Debug("log the prediction", "request_id", j.eventID, "error", err)
	}
}

// predictionOf reads a request's rows and their labels: the rows of its
// first input when that is a numeric matrix or vector, and the label of each
// row from the output named "class", else "label", when it has one per row.
func predictionOf(j *job) (events.Prediction, bool) {
	if len(j.req.Inputs) == 0 {
		return events.Prediction{}, false
	}
	input := j.req.Inputs[0]
	values, ok := input.Float64s()
	if !ok || len(input.Shape) == 0 || len(input.Shape) > 2 {
		return events.Prediction{}, false
	}
	rows, width := 1, len(values)
	if len(input.Shape) == 2 {
		rows, width = int(input.Shape[0]), int(input.Shape[1])
	}
	prediction := events.Prediction{ID: j.eventID, Features: make([][]float64, rows)}
	for row := range rows {
		prediction.Features[row] = values[row*width : (row+1)*width]
	}
	for _, name := range []string{"class", "label"} {
		if output, found := oip.FindTensor(j.outputs, name); found {
			if labels := labelsOf(output); len(labels) == rows {
				prediction.Labels = labels
				break
			}
		}
	}
	return prediction, true
}

// labelsOf reads a label output: strings, or integers written as text.
func labelsOf(t oip.Tensor) []string {
	switch data := t.Data.(type) {
	case []string:
		return data
	case []int64:
		labels := make([]string, len(data))
		for i, v := range data {
			labels[i] = fmt.Sprint(v)
		}
		return labels
	}
	return nil
}
