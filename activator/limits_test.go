package activator_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// unsized hides the length of a body, so the client sends it chunked.
type unsized struct{ io.Reader }

func TestBodyOverTheLimitIs413(t *testing.T) {
	s := newSetup()
	p := startPlatform(t, s)
	// Valid JSON up to the limit and beyond: only the size is wrong.
	padding := strings.Repeat(" ", int(s.config.MaxBodyBytes))
	oversized := irisBody[:len(irisBody)-1] + padding + "}"
	tests := []struct {
		name    string
		path    string
		header  http.Header
		chunked bool
	}{
		{name: "infer with Content-Length", path: "/v2/models/iris/infer", header: jsonHeader()},
		{name: "infer chunked", path: "/v2/models/iris/infer", header: jsonHeader(), chunked: true},
		{name: "cloudevent with Content-Length", path: "/", header: binaryHeader(nil)},
		{name: "cloudevent chunked", path: "/", header: binaryHeader(nil), chunked: true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			req := p.newRequest(t, http.MethodPost, test.path, test.header, oversized)
			if test.chunked {
				req.Body = io.NopCloser(unsized{strings.NewReader(oversized)})
				req.GetBody = nil
				req.ContentLength = -1
			}
			message := errorMessage(t, p.send(t, req), http.StatusRequestEntityTooLarge)
			require.Contains(t, message, "request body too large")
			require.Contains(t, message, "the limit is 4096")
			// Only a request with Content-Length is refused by its declared size, unread.
			declared := fmt.Sprintf("%d bytes,", len(oversized))
			if test.chunked {
				require.NotContains(t, message, declared)
			} else {
				require.Contains(t, message, declared)
			}
		})
	}
}

func TestTimeoutIs504AndTheLateReplyIsDropped(t *testing.T) {
	s := newSetup()
	s.requestTimeout = "300ms"
	p := startPlatform(t, s)

	sent := time.Now()
	answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", jsonHeader(), irisBody))
	request := takeRequest(t, p.js)
	message := errorMessage(t, receive(t, answers), http.StatusGatewayTimeout)
	require.GreaterOrEqual(t, time.Since(sent), 300*time.Millisecond)
	require.Contains(t, message, "request timeout of 300ms")
	require.Zero(t, counter(t, p.metrics, "sluice_activator_late_replies_total", nil))

	reply(t, p.js, request, 0, irisAnswer)
	require.NoError(t, request.Ack())
	require.Eventually(t, func() bool {
		return counter(t, p.metrics, "sluice_activator_late_replies_total", nil) == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1.0, counter(t, p.metrics, "sluice_activator_requests_total", map[string]string{"function": "iris", "code": "504"}))
}

func TestQueueFullIs429WithRetryAfter(t *testing.T) {
	s := newSetup()
	s.requestTimeout = "100ms"
	s.queue.MaxMsgs = 2
	p := startPlatform(t, s)

	// Nobody consumes: the first two requests wait in the queue until their
	// callers give up, and the third finds it full.
	for range 2 {
		require.Equal(t, http.StatusGatewayTimeout, p.infer(t, "/v2/models/iris/infer", irisBody).status)
	}
	answer := p.infer(t, "/v2/models/iris/infer", irisBody)
	message := errorMessage(t, answer, http.StatusTooManyRequests)
	require.Contains(t, message, "queue full")
	require.Contains(t, message, `model "iris"`)
	require.Equal(t, "1", answer.header.Get("Retry-After"))

	require.Equal(t, uint64(2), p.queued(t))
}

// The activator holds at most MaxInFlight requests; one more is refused with
// 429 as soon as its body is read, and the held one is still answered.
func TestTooManyInFlightIs429(t *testing.T) {
	s := newSetup()
	s.config.MaxInFlight = 1
	p := startPlatform(t, s)
	held := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", jsonHeader(), irisBody))
	request := takeRequest(t, p.js) // the first request is in the queue: its slot is taken

	refused := p.infer(t, "/v2/models/iris/infer", irisBody)
	require.Contains(t, errorMessage(t, refused, http.StatusTooManyRequests), "in flight")
	require.Equal(t, "1", refused.header.Get("Retry-After"))

	reply(t, p.js, request, 0, irisAnswer)
	require.Equal(t, http.StatusOK, receive(t, held).status)
	require.Equal(t, http.StatusOK, func() int {
		answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", jsonHeader(), irisBody))
		answerOnce(t, p.js, 0, irisAnswer)
		return receive(t, answers).status
	}(), "the slot is free again")
}

// Ids and headers have limits answered with 4xx before anything is queued,
// not a 503 when JetStream refuses the message's headers.
func TestHeaderLimits(t *testing.T) {
	p := startPlatform(t, newSetup())
	long := strings.Repeat("k", 300)

	oip := p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", http.Header{"Idempotency-Key": {long}}, irisBody)
	errorMessage(t, p.send(t, oip), http.StatusBadRequest, "Idempotency-Key: 300 bytes, at most 256")

	ce := p.newRequest(t, http.MethodPost, "/", binaryHeader(map[string]string{"Ce-Id": long}), irisBody)
	errorMessage(t, p.send(t, ce), http.StatusBadRequest, "id: 300 bytes, at most 256")
	ce = p.newRequest(t, http.MethodPost, "/", binaryHeader(map[string]string{"Ce-Source": "/" + strings.Repeat("s", 2000)}), irisBody)
	errorMessage(t, p.send(t, ce), http.StatusBadRequest, "source: 2001 bytes, at most 1024")

	huge := p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", http.Header{"Sluice-Sink-Uri": {"http://sink/" + strings.Repeat("x", 100<<10)}}, irisBody)
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, p.send(t, huge).status)
	require.Zero(t, p.queued(t))
}
