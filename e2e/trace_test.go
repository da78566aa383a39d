package e2e

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP trace receiver: what every process exports.
type collector struct {
	mu    sync.Mutex
	spans []span
}

// span is what the trace test reads of an exported span.
type span struct {
	service, name, trace, id, parent string
}

func startCollector(t *testing.T) (*collector, string) {
	c := &collector{}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var request collectortrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &request)
		}
		if r.URL.Path != "/v1/traces" || err != nil {
			http.Error(w, "want an OTLP trace export on /v1/traces", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, resource := range request.ResourceSpans {
			service := ""
			for _, attr := range resource.GetResource().GetAttributes() {
				if attr.Key == "service.name" {
					service = attr.GetValue().GetStringValue()
				}
			}
			for _, scope := range resource.ScopeSpans {
				for _, s := range scope.Spans {
					c.spans = append(c.spans, span{service: service, name: s.Name, trace: hex.EncodeToString(s.TraceId),
						id: hex.EncodeToString(s.SpanId), parent: hex.EncodeToString(s.ParentSpanId)})
				}
			}
		}
		c.mu.Unlock()
		answer, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(answer)
	}))
	t.Cleanup(server.Close)
	return c, server.URL
}

// trace is the spans of traceID by name, once every name wanted has come.
func (c *collector) trace(t *testing.T, traceID string, names ...string) map[string]span {
	t.Helper()
	found := map[string]span{}
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, s := range c.spans {
			if s.trace == traceID {
				found[s.name] = s
			}
		}
		for _, name := range names {
			if _, ok := found[name]; !ok {
				return false
			}
		}
		return true
	}, 15*time.Second, 50*time.Millisecond, "spans of trace %s: want %v, have %v", traceID, names, found)
	return found
}

// One trace from the client to the worker and back: the caller's
// traceparent is the parent of the activator's receive span, which the
// request carries through JetStream to the worker, whose queue wait, batch,
// inference and reply spans follow it; the answer names the receive span
// (traceparent) and, for a CloudEvent, the worker's reply (ce-traceparent).
// Every process exports by OTLP, configured by the standard variables.
func TestOneTraceFromClientToWorkerAndBack(t *testing.T) {
	spans, endpoint := startCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	p := startPlatform(t)

	const traceID, client = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	code, body, header := p.postBinary(t, "/v2/models/iris/infer", []byte(irisRequest), http.Header{"Traceparent": {"00-" + traceID + "-" + client + "-01"}})
	require.Equal(t, http.StatusOK, code, "%s", body)
	trace := spans.trace(t, traceID, "receive", "queue wait", "batch", "inference", "reply")
	receive := trace["receive"]
	require.Equal(t, client, receive.parent, "the caller's span is the parent")
	require.Equal(t, "sluice-up", receive.service)
	require.Equal(t, "00-"+traceID+"-"+receive.id+"-01", header.Get("Traceparent"), "the answer names the receive span")
	for _, name := range []string{"queue wait", "batch"} {
		require.Equal(t, receive.id, trace[name].parent, "%s follows the receive span across the queue", name)
		require.Equal(t, "sluice-worker", trace[name].service)
	}
	for _, name := range []string{"inference", "reply"} {
		require.Equal(t, trace["batch"].id, trace[name].parent, "%s is part of the request's batch", name)
	}

	// A CloudEvent in binary mode: its ce-traceparent is the parent when no
	// traceparent header comes, and the answer event names the reply span.
	const ceTrace = "0af7651916cd43dd8448eb211c80319c"
	ceHeader := http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"trace-1"}, "Ce-Source": {"/e2e"}, "Ce-Type": {"dev.sluice.inference.request"},
		"Ce-Model": {"iris"}, "Content-Type": {"application/json"}, "Ce-Traceparent": {"00-" + ceTrace + "-b7ad6b7169203331-01"}}
	code, body, header = p.postBinary(t, "/", []byte(irisRequest), ceHeader)
	require.Equal(t, http.StatusOK, code, "%s", body)
	trace = spans.trace(t, ceTrace, "receive", "batch", "reply")
	require.Equal(t, "b7ad6b7169203331", trace["receive"].parent)
	require.True(t, strings.HasPrefix(header.Get("Ce-Traceparent"), "00-"+ceTrace+"-"+trace["reply"].id), "the answer event names the worker's reply span: %s", header.Get("Ce-Traceparent"))
}
