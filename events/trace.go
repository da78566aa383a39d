package events

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// Traces cross the queue in W3C trace context, as the CloudEvents
// distributed-tracing extension: a request event's traceparent (and
// tracestate) attributes name the span that published it, so they travel
// as ce-traceparent headers through JetStream, and a worker's answer
// names the span that wrote it. The propagator is always on, whether or not
// spans are recorded: with no exporter configured a caller's trace context
// passes through unchanged, and the spans cost nothing.
var traceContext = propagation.TraceContext{}

// ExtractTrace is ctx with the trace context in carrier (an HTTP or gRPC
// request's headers): ctx itself when there is none.
func ExtractTrace(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	return traceContext.Extract(ctx, carrier)
}

// InjectTrace writes ctx's span into carrier (an answer's headers) as
// traceparent and tracestate, when it has a valid one.
func InjectTrace(ctx context.Context, carrier propagation.TextMapCarrier) {
	traceContext.Inject(ctx, carrier)
}

// MessageTrace is ctx with the trace context of a binary-mode NATS
// message's ce-traceparent header, read without reading the event.
func MessageTrace(ctx context.Context, header nats.Header) context.Context {
	return traceContext.Extract(ctx, messageCarrier{header})
}

// SetMessageTrace sets the ce-traceparent and ce-tracestate headers of a
// binary-mode NATS message to ctx's span, when it has a valid one; else
// the message keeps the event's own.
func SetMessageTrace(ctx context.Context, msg *nats.Msg) {
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	traceContext.Inject(ctx, messageCarrier{msg.Header})
}

// messageCarrier is trace context in a NATS message's ce- headers.
type messageCarrier struct{ header nats.Header }

func (c messageCarrier) Get(key string) string {
	return (&natsMessage{header: c.header}).get(headerPrefix + key)
}
func (c messageCarrier) Set(key, value string) { c.header.Set(headerPrefix+key, value) }
func (c messageCarrier) Keys() []string        { return traceContext.Fields() }
