package worker

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"sluice.dev/sluice/events"
)

// tracer is this package's, from the global provider: a no-op until an
// exporter is configured (cmd/sluice/tracing.go).
var tracer = otel.Tracer("sluice.dev/sluice/worker")

// noSpan is a job's span until startTrace opens one.
var noSpan = trace.SpanFromContext(context.Background())

// A request's spans in the worker, children of the span that published it
// (its ce-traceparent): queue wait, from its publication to the batch that
// took it; batch, from then until it is settled, and within it inference,
// the model run it was part of (one run serves a whole stacked group, so its
// span is in the trace of each), and reply, writing and sending the answer,
// whose event names the reply span. With no exporter the spans are no-ops,
// and the answer carries the request's own trace context.

// startTrace opens j's queue wait and batch spans; start is when its batch began.
func (w *Worker) startTrace(j *job, start time.Time, batchSize int) {
	parent := events.MessageTrace(context.Background(), j.msg.Headers())
	if !j.submitted.IsZero() {
		_, queued := tracer.Start(parent, "queue wait", trace.WithTimestamp(j.submitted), trace.WithSpanKind(trace.SpanKindConsumer))
		queued.End(trace.WithTimestamp(start))
	}
	j.ctx, j.span = tracer.Start(parent, "batch", trace.WithTimestamp(start))
	if j.span.IsRecording() {
		j.span.SetAttributes(attribute.String("sluice.function", w.cfg.Function), attribute.String("sluice.revision", w.cfg.Revision),
			attribute.String("sluice.request_id", j.eventID), attribute.Int("sluice.batch.size", batchSize),
			attribute.Int64("messaging.message.delivery_count", int64(j.delivered)))
	}
}

// traceRun records the model run of group, from start to end, in the trace of each request.
func traceRun(group []*job, start, end time.Time) {
	for _, j := range group {
		if !j.span.IsRecording() {
			continue
		}
		_, span := tracer.Start(j.ctx, "inference", trace.WithTimestamp(start))
		span.SetAttributes(attribute.Int("sluice.inference.requests", len(group)))
		if j.err != nil {
			span.SetStatus(codes.Error, j.err.Error())
		}
		span.End(trace.WithTimestamp(end))
	}
}

// endTrace closes j's batch span, with its outcome.
func endTrace(j *job) {
	switch {
	case j.expired:
		j.span.SetStatus(codes.Error, errExpired.Error())
	case j.err != nil:
		j.span.SetStatus(codes.Error, j.err.Error())
	}
	j.span.End()
}
