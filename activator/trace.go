package activator

import (
	"context"
	"net/http"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"sluice.dev/sluice/events"
)

// tracer is this package's, from the global provider: a no-op until an
// exporter is configured (cmd/sluice/tracing.go).
var tracer = otel.Tracer("sluice.dev/sluice/activator")

// traced starts the receive span of a request that may reach the queue: a
// child of the caller's traceparent (or, for a CloudEvent in binary mode
// without one, of its ce-traceparent), named in the answer's traceparent
// header so that a caller without a tracer of its own still learns the trace
// id. Its context goes with the request onto the queue (events.SetMessageTrace).
// With no exporter and no traceparent it costs a header lookup.
func traced(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		parent := events.ExtractTrace(r.Context(), propagation.HeaderCarrier(r.Header))
		if r.Header.Get("Traceparent") == "" && r.Header.Get("Ce-Traceparent") != "" {
			parent = events.MessageTrace(r.Context(), nats.Header(r.Header)) // the same ce- headers as on the queue
		}
		ctx, span := tracer.Start(parent, "receive", trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		if !span.SpanContext().IsValid() { // nothing recorded, nothing to pass on
			next(w, r)
			return
		}
		events.InjectTrace(ctx, propagation.HeaderCarrier(w.Header()))
		if !span.IsRecording() {
			next(w, r.WithContext(ctx))
			return
		}
		span.SetAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path),
			attribute.String("http.route", r.Pattern))
		recorder := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next(recorder, r.WithContext(ctx))
		endReceive(span, recorder.code)
	}
}

// endReceive records the status a request was answered with.
func endReceive(span trace.Span, code int) {
	span.SetAttributes(attribute.Int("http.response.status_code", code))
	if code >= http.StatusInternalServerError {
		span.SetStatus(codes.Error, http.StatusText(code))
	}
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// tracedGRPC is traced for gRPC calls: the caller's traceparent metadata is
// the parent, and the answer's header metadata names the receive span.
func tracedGRPC(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	ctx, span := tracer.Start(events.ExtractTrace(ctx, metadataCarrier(md)), "receive", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	if !span.SpanContext().IsValid() {
		return handler(ctx, req)
	}
	answer := metadata.MD{}
	events.InjectTrace(ctx, metadataCarrier(answer))
	_ = grpc.SetHeader(ctx, answer)
	span.SetAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.method", info.FullMethod))
	resp, err := handler(ctx, req)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return resp, err
}

// metadataCarrier is trace context in gRPC metadata.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	if values := metadata.MD(c).Get(key); len(values) > 0 {
		return values[0]
	}
	return ""
}
func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }
func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for key := range c {
		keys = append(keys, strings.ToLower(key))
	}
	return keys
}
