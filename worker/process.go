package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
)

// job is one request of a batch, from its message to its settlement.
type job struct {
	msg     jetstream.Msg
	eventID string
	source  string
	replyTo string
	// record asks for the result in the results bucket and on the results subject.
	record    bool
	submitted time.Time
	// delivered counts the deliveries of the request, this one included; 0 when unknown.
	delivered uint64
	// recorded is the answer an earlier delivery recorded, which this one
	// announces again instead of running the request again.
	recorded *events.Result
	req      *oip.InferenceRequest
	// binaryOutputs names the outputs a binary request wants in binary; nil
	// answers in JSON.
	binaryOutputs func(name string) bool
	outputs       []oip.Tensor
	// headerLength is the length of the answer's JSON header when it is binary.
	headerLength int
	// answerObject names the object of the answers store that holds an
	// answer too large for one NATS message.
	answerObject string
	err          error
	expired      bool
	waited       time.Duration
	// ctx holds span, the request's batch span (trace.go).
	ctx  context.Context
	span trace.Span
}

// process answers and settles every message of a batch. Requests whose inputs
// can be stacked run as ONE model run; the others run on their own.
func (w *Worker) process(model Model, msgs []jetstream.Msg) {
	start := time.Now()
	jobs := make([]*job, len(msgs))
	var ready []*job
	for i, msg := range msgs {
		jobs[i] = w.decode(msg, start)
		if jobs[i].err == nil && !jobs[i].expired && jobs[i].recorded == nil {
			ready = append(ready, jobs[i])
		}
	}
	for _, j := range jobs {
		w.startTrace(j, start, len(ready))
	}
	for _, group := range groupByShape(ready) {
		runStart := time.Now()
		w.run(model, group)
		traceRun(group, runStart, time.Now())
	}
	if len(ready) > 0 {
		w.metrics.batchSize.Observe(float64(len(ready)))
		w.metrics.inference.Observe(time.Since(start).Seconds())
	}
	// A job that records its result waits for the store to take it: those
	// are finished side by side, so that a batch waits about one store, not
	// one per request.
	var recording sync.WaitGroup
	for _, j := range jobs {
		finish := func() { w.finish(j); endTrace(j) }
		if j.record && len(jobs) > 1 {
			recording.Go(finish)
		} else {
			finish()
		}
	}
	recording.Wait()
}

// decode reads a request message; a request that cannot be served is marked
// with a Permanent error, one whose caller has stopped waiting as expired.
func (w *Worker) decode(msg jetstream.Msg, now time.Time) *job {
	j := &job{msg: msg, replyTo: msg.Headers().Get(events.HeaderReplyTo), record: msg.Headers().Get(events.HeaderRecord) == "true",
		ctx: context.Background(), span: noSpan}
	if meta, err := msg.Metadata(); err == nil {
		j.waited = now.Sub(meta.Timestamp)
		j.submitted, j.delivered = meta.Timestamp, meta.NumDelivered
	}
	if deadline, err := strconv.ParseInt(msg.Headers().Get(events.HeaderDeadline), 10, 64); err == nil && now.UnixNano() > deadline {
		j.expired = true
		return j
	}
	ev, err := events.ReadEvent(context.Background(), msg.Headers(), msg.Data())
	if err != nil {
		// The message itself is wrong, so it is the caller's error: 400.
		j.err = events.Permanent(&oip.FieldError{Field: "message", Problem: err.Error()})
		return j
	}
	j.eventID, j.source = ev.ID(), ev.Source()
	if ev.Type() != events.TypeInferenceRequest {
		j.err = events.Permanent(&oip.FieldError{Field: "type", Problem: fmt.Sprintf("want %q, got %q", events.TypeInferenceRequest, ev.Type())})
		return j
	}
	if j.record && j.delivered > 1 {
		if j.recorded = w.recordedResult(j); j.recorded != nil {
			return j
		}
	}
	if w.maxDeliver > 0 && j.delivered > uint64(w.maxDeliver) { // not run again: it may be what stopped them
		j.err = events.Permanent(fmt.Errorf("gave up after %d deliveries, the last never settled: its worker stopped, ran past the ack wait, or could not store the dead letter", w.maxDeliver))
		return j
	}
	req, _, err := events.DecodeRequestData(ev, oip.DefaultLimits())
	if err == nil {
		err = w.signature.Check(req)
	}
	if err == nil {
		err = w.checkAnswerSize(req)
	}
	if err == nil {
		j.binaryOutputs, err = req.BinaryOutputs()
	}
	if err != nil {
		j.err = events.Permanent(err)
		return j
	}
	j.req = req
	return j
}

// checkAnswerSize refuses, before it runs, a request whose answer is sure
// to be over MaxAnswerBytes: when every output has the batch dimension first
// and sizes for the others, the answer holds at least rows times the bytes
// of one row of each fixed-size output, in binary.
func (w *Worker) checkAnswerSize(req *oip.InferenceRequest) error {
	if !w.stackable {
		return nil
	}
	var rowBytes int64
	for _, spec := range w.signature.Outputs {
		if len(req.Outputs) > 0 && !slices.ContainsFunc(req.Outputs, func(o oip.RequestedOutput) bool { return o.Name == spec.Name }) {
			continue
		}
		size := int64(spec.Datatype.Size())
		for _, d := range spec.Shape[1:] {
			size *= max(d, 0) // a dimension of any size may be 0
		}
		rowBytes += size
	}
	rows := req.Inputs[0].Shape[0]
	if limit := int64(w.cfg.MaxAnswerBytes); rowBytes > 0 && rows > limit/rowBytes {
		return events.Permanent(fmt.Errorf("%w: the answer to %d rows takes at least %d bytes a row, the limit is %d bytes: request at most %d rows",
			events.ErrAnswerTooLarge, rows, rowBytes, limit, limit/rowBytes))
	}
	return nil
}

// maxStackedElements bounds the input elements of one stacked model run:
// as many as one request may send, so a batch of large requests does not
// become one huge tensor.
var maxStackedElements = oip.DefaultLimits().MaxElements

// groupByShape puts together the requests whose inputs have the same names,
// datatypes and dimensions but the first, so they can be stacked along it,
// up to maxStackedElements input elements a group.
func groupByShape(jobs []*job) [][]*job {
	var groups [][]*job
	var sizes []int64           // input elements of each group
	filling := map[string]int{} // the group of each key that takes more
	for _, j := range jobs {
		key, stackable := shapeKey(j.req.Inputs)
		size := int64(0)
		for _, t := range j.req.Inputs {
			size += int64(t.Len())
		}
		g, ok := filling[key]
		if !stackable || !ok || sizes[g]+size > maxStackedElements { // a scalar cannot be stacked: its own group
			groups, sizes, g = append(groups, nil), append(sizes, 0), len(groups)
			if stackable {
				filling[key] = g
			}
		}
		groups[g], sizes[g] = append(groups[g], j), sizes[g]+size
	}
	return groups
}

// shapeKey names what inputs must share to be stacked: names, datatypes and
// every dimension but the first. Inputs with a scalar are not stackable.
func shapeKey(inputs []oip.Tensor) (string, bool) {
	key := make([]byte, 0, 64)
	for _, t := range inputs {
		if len(t.Shape) == 0 {
			return "", false
		}
		key = append(append(append(append(key, t.Name...), '|'), t.Datatype...), '|')
		for _, d := range t.Shape[1:] {
			key = append(strconv.AppendInt(key, d, 10), ',')
		}
		key = append(key, ';')
	}
	return string(key), true
}

// run scores a group in one model run and splits the outputs back per request.
// If the stacked run fails or its outputs cannot be split, each request runs
// on its own, so one bad request cannot fail the others.
func (w *Worker) run(model Model, group []*job) {
	if len(group) > 1 && w.stackable {
		if err := w.runStacked(model, group); err == nil {
			return
		}
	}
	for _, j := range group {
		outputs, err := model.Run(j.req.Inputs)
		if err != nil {
			j.err = events.Permanent(fmt.Errorf("model: %w", err))
			continue
		}
		j.outputs = outputs
	}
}

func (w *Worker) runStacked(model Model, group []*job) error {
	first := group[0].req.Inputs
	inputs := make([]oip.Tensor, len(first))
	parts := make([]oip.Tensor, len(group))
	rows := make([]int64, len(group))
	for i, input := range first {
		for k, j := range group {
			parts[k], _ = oip.FindTensor(j.req.Inputs, input.Name)
			rows[k] = parts[k].Shape[0]
		}
		stacked, err := oip.ConcatRows(parts)
		if err != nil {
			return err
		}
		inputs[i] = stacked
	}
	outputs, err := model.Run(inputs)
	if err != nil {
		return err
	}
	split := make([][]oip.Tensor, len(outputs))
	for i, output := range outputs {
		if split[i], err = oip.SplitRows(output, rows); err != nil {
			return err
		}
	}
	for k, j := range group {
		j.outputs = make([]oip.Tensor, len(outputs))
		for i := range outputs {
			j.outputs[i] = split[i][k]
		}
	}
	return nil
}

var errExpired = errors.New("deadline passed before the request was scored: the caller has stopped waiting")
