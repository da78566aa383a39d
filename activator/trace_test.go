package activator

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
)

// With no exporter, the receive span is the API's no-op: a caller's trace
// context passes through unchanged (to the queue and into the answer), and
// a request without one gets none and the handler its own request.
func TestTraceContextPassesThroughWhenTracingIsOff(t *testing.T) {
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var seen trace.SpanContext
	var same bool
	handler := traced(func(w http.ResponseWriter, r *http.Request) {
		seen = trace.SpanContextFromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})

	r := httptest.NewRequest(http.MethodPost, "/v2/models/iris/infer", nil)
	r.Header.Set("Traceparent", traceparent)
	w := httptest.NewRecorder()
	handler(w, r)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", seen.TraceID().String())
	require.Equal(t, "00f067aa0ba902b7", seen.SpanID().String(), "no span of ours in between")
	require.Equal(t, traceparent, w.Header().Get("Traceparent"))

	r = httptest.NewRequest(http.MethodPost, "/v2/models/iris/infer", nil)
	w = httptest.NewRecorder()
	handler = traced(func(_ http.ResponseWriter, got *http.Request) { same = got == r })
	handler(w, r)
	require.True(t, same, "no context is made for a request without trace context")
	require.Empty(t, w.Header().Get("Traceparent"))
}
