package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sink is a real HTTP server receiving result CloudEvents; it fails the
// first failures POSTs with 503.
type sink struct {
	mu        sync.Mutex
	failures  int
	attempts  int
	delivered []http.Header
	bodies    [][]byte
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.attempts <= s.failures {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	s.delivered = append(s.delivered, r.Header.Clone())
	s.bodies = append(s.bodies, body)
	w.WriteHeader(http.StatusAccepted)
}

func (s *sink) counts() (attempts, delivered int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts, len(s.delivered)
}

// The result of an asynchronous call goes to the sink its request names, as
// a CloudEvent: a sink that fails at first gets it after retries, once.
func TestSinkDeliveryRetries(t *testing.T) {
	receiver := &sink{failures: 2}
	server := httptest.NewServer(receiver)
	defer server.Close()
	p := startPlatform(t, "--sink-backoff", "100ms", "--sink-attempts", "4", "--sink-allow", "127.0.0.1")

	header := http.Header{"Prefer": {"respond-async"}, "Idempotency-Key": {"sink-1"}, "Sluice-Sink-Uri": {server.URL}}
	code, body := p.post(t, "/v2/models/iris/infer", irisRequest, header)
	require.Equal(t, http.StatusAccepted, code, "%s", body)

	require.Eventually(t, func() bool { _, delivered := receiver.counts(); return delivered == 1 }, 30*time.Second, 20*time.Millisecond)
	attempts, _ := receiver.counts()
	require.Equal(t, 3, attempts, "two failures, then the delivery")
	receiver.mu.Lock()
	require.Equal(t, "dev.sluice.inference.response", receiver.delivered[0].Get("Ce-Type"))
	require.Equal(t, "sink-1", receiver.delivered[0].Get("Ce-Requestid"))
	requireIrisAnswer(t, receiver.bodies[0])
	receiver.mu.Unlock()
	require.Never(t, func() bool { _, delivered := receiver.counts(); return delivered > 1 }, time.Second, 50*time.Millisecond,
		"delivered once")
}

// A sink that never accepts gets every attempt, then the result goes to the
// dead-letter stream, where `sluice dlq list` shows it with the reason.
func TestSinkDeliveryDeadLetters(t *testing.T) {
	receiver := &sink{failures: 1 << 30}
	server := httptest.NewServer(receiver)
	defer server.Close()
	p := startPlatform(t, "--sink-backoff", "50ms", "--sink-attempts", "3", "--sink-allow", "127.0.0.1")

	header := http.Header{"Prefer": {"respond-async"}, "Idempotency-Key": {"sink-2"}, "Sluice-Sink-Uri": {server.URL}}
	code, _ := p.post(t, "/v2/models/iris/infer", irisRequest, header)
	require.Equal(t, http.StatusAccepted, code)
	var listed string
	require.Eventually(t, func() bool {
		listed = sluice(t, "dlq", "list", "--nats-url", natsURL(t, p))
		return strings.Contains(listed, "iris") && strings.Contains(listed, "sink delivery failed")
	}, 30*time.Second, 100*time.Millisecond)
	attempts, delivered := receiver.counts()
	require.Equal(t, 3, attempts)
	require.Zero(t, delivered)
}

// A caller may not make the platform reach into its own network: a sink on
// loopback, a private network or the cloud metadata address is refused at
// once, unless --sink-allow permits it. A sink behind a name — here the
// function's own, localhost — is checked against what the name resolves to
// when delivery connects, and dead-lettered at the first refusal.
func TestSinksInsideThePlatformsNetworkAreRefused(t *testing.T) {
	receiver := &sink{}
	server := httptest.NewServer(receiver)
	defer server.Close()
	named := "http://localhost:" + server.URL[strings.LastIndex(server.URL, ":")+1:] + "/hook"
	spec := "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: iris}\nspec:\n  model: {path: ./iris.onnx}\n  delivery: {sinkURI: '" + named + "'}\n"
	p := startPlatformWith(t, []byte(spec), "--sink-backoff", "50ms", "--sink-attempts", "5")

	for sink, kind := range map[string]string{
		server.URL: "loopback", "http://localhost:9/hook": "loopback",
		"http://169.254.169.254/latest/meta-data/": "link-local", "http://10.0.0.7/hook": "private",
	} {
		header := http.Header{"Prefer": {"respond-async"}, "Sluice-Sink-Uri": {sink}}
		code, body := p.post(t, "/v2/models/iris/infer", irisRequest, header)
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", sink, body)
		require.Contains(t, string(body), "header Sluice-Sink-URI", sink)
		require.Contains(t, string(body), kind, sink)
	}

	code, body := p.post(t, "/v2/models/iris/infer", irisRequest, http.Header{"Prefer": {"respond-async"}})
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	require.Eventually(t, func() bool {
		return strings.Contains(sluice(t, "dlq", "list", "--nats-url", natsURL(t, p)), "sink delivery failed")
	}, 30*time.Second, 100*time.Millisecond)
	shown := sluice(t, "dlq", "show", "1", "--nats-url", natsURL(t, p))
	require.Contains(t, shown, "sink address refused: 127.0.0.1 is a loopback address")
	require.Contains(t, shown, "after 1 attempts", "a refused address is not retried")
	attempts, _ := receiver.counts()
	require.Zero(t, attempts, "nothing reached the loopback server")
}
