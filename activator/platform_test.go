package activator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/activator"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/train"
)

// irisBody is a valid OIP v2 request for the iris model: one row of four features.
const irisBody = `{"id":"r1","inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`

// irisAnswer is what the test, playing the worker, replies to a request.
const irisAnswer = `{"model_name":"iris","model_version":"1","id":"r1","outputs":[{"name":"label","shape":[1],"datatype":"INT64","data":[0]}]}`

// irisModel is the ONNX model trained from deploy/demo/iris.csv, once per test binary.
var irisModel = sync.OnceValues(func() ([]byte, error) {
	classifier, _, _, err := train.FitFile(context.Background(), "../deploy/demo/iris.csv", "", train.DefaultConfig())
	if err != nil {
		return nil, err
	}
	return classifier.ONNX()
})

// setup says how to build a platform; newSetup gives the usual one.
type setup struct {
	// requestTimeout is the function's spec.timeouts.request.
	requestTimeout string
	queue          events.QueueConfig
	config         activator.Config
}

func newSetup() setup {
	cfg := activator.DefaultConfig()
	cfg.MaxBodyBytes = 4096
	cfg.ShutdownTimeout = 10 * time.Second
	return setup{requestTimeout: "10s", queue: events.DefaultQueueConfig(), config: cfg}
}

// platform is an activator in front of a real nats-server on which the iris
// function is deployed. Nobody serves iris: a test that needs an answer plays
// the worker itself with answerOnce.
type platform struct {
	url     string
	js      jetstream.JetStream // the test's own connection, the worker's side
	metrics *prometheus.Registry
	run     *running
	client  *http.Client
	calls   sync.WaitGroup // requests sent with sendAsync
}

// running is an activator's Run in its goroutine.
type running struct {
	addr     string
	grpcAddr string
	stop     context.CancelFunc // cancels Run's context
	done     chan struct{}      // closed when Run has returned
	err      error              // what Run returned, once done is closed
}

// wait waits for Run to return and returns its error.
func (r *running) wait() error {
	<-r.done
	return r.err
}

// startPlatform starts nats-server, deploys iris, runs the registry and the
// activator, and stops them in order when the test ends.
func startPlatform(t *testing.T, s setup) *platform {
	t.Helper()
	srv, _, js := natstest.JetStream(t)
	catalog, err := functions.OpenCatalog(t.Context(), js)
	require.NoError(t, err)
	deployIris(t, functions.NewDeployer(js, catalog, s.queue), s.requestTimeout)

	registry := functions.NewRegistry(catalog)
	registryCtx, stopRegistry := context.WithCancel(context.Background())
	registryDone := make(chan error, 1)
	go func() { registryDone <- registry.Run(registryCtx) }()
	t.Cleanup(func() {
		stopRegistry()
		require.NoError(t, <-registryDone)
	})
	select {
	case <-registry.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("registry did not sync within 10s")
	}

	p := &platform{js: js, metrics: prometheus.NewRegistry(), client: &http.Client{Timeout: 30 * time.Second}}
	p.run = runActivator(t, natstest.Connect(t, srv), registry, s.config, p.metrics)
	p.url = "http://" + p.run.addr
	t.Cleanup(func() {
		p.run.stop()
		require.NoError(t, p.run.wait())
		p.calls.Wait()
		p.client.CloseIdleConnections()
	})
	return p
}

// deployIris deploys the iris function as deploy/demo/iris.yaml does, with the given request timeout.
func deployIris(t *testing.T, deployer *functions.Deployer, requestTimeout string) {
	t.Helper()
	model, err := irisModel()
	require.NoError(t, err)
	fn, err := functions.Parse(fmt.Appendf(nil, `
apiVersion: sluice.dev/v1alpha1
kind: Function
metadata:
  name: iris
spec:
  model: {path: ./iris.onnx}
  runtime: {device: cpu}
  scaling: {minReplicas: 0, maxReplicas: 4, targetQueueDepth: 16, activationQueueDepth: 1, scaleToZeroAfter: 30s}
  batching: {maxBatchSize: 32, maxDelay: 2ms}
  timeouts: {request: %s}
`, requestTimeout))
	require.NoError(t, err)
	deployed, err := deployer.Deploy(t.Context(), fn, model)
	require.NoError(t, err)
	require.Equal(t, "1", deployed.Status.Revision)
}

// runActivator runs an activator on a loopback port; the caller stops it and waits.
func runActivator(t *testing.T, nc *nats.Conn, registry *functions.Registry, cfg activator.Config, metrics *prometheus.Registry) *running {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	server, err := activator.New(nc, registry, cfg, metrics, log)
	require.NoError(t, err)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	grpcListener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	server.ListenGRPC(grpcListener)
	ctx, stop := context.WithCancel(context.Background())
	run := &running{addr: listener.Addr().String(), grpcAddr: grpcListener.Addr().String(), stop: stop, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.err = server.Run(ctx, listener)
	}()
	return run
}

// response is an HTTP answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// newRequest builds a request to the activator; a nil header sends none.
func (p *platform) newRequest(t *testing.T, method, path string, header http.Header, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, p.url+path, strings.NewReader(body))
	require.NoError(t, err)
	for name, values := range header {
		req.Header[name] = values
	}
	return req
}

func (p *platform) roundTrip(req *http.Request) response {
	resp, err := p.client.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body, err: err}
}

// send sends req and waits for the answer.
func (p *platform) send(t *testing.T, req *http.Request) response {
	t.Helper()
	answer := p.roundTrip(req)
	require.NoError(t, answer.err)
	return answer
}

// sendAsync sends req from a goroutine the platform joins at cleanup, for a
// request the test must answer while it waits.
func (p *platform) sendAsync(req *http.Request) <-chan response {
	answers := make(chan response, 1)
	p.calls.Go(func() { answers <- p.roundTrip(req) })
	return answers
}

// get sends a GET to path.
func (p *platform) get(t *testing.T, path string) response {
	t.Helper()
	return p.send(t, p.newRequest(t, http.MethodGet, path, nil, ""))
}

// infer posts an OIP v2 request body to path.
func (p *platform) infer(t *testing.T, path, body string) response {
	t.Helper()
	return p.send(t, p.newRequest(t, http.MethodPost, path, jsonHeader(), body))
}

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

// receive waits for an answer of sendAsync.
func receive(t *testing.T, answers <-chan response) response {
	t.Helper()
	select {
	case answer := <-answers:
		require.NoError(t, answer.err)
		return answer
	case <-time.After(20 * time.Second):
		t.Fatal("no HTTP answer within 20s")
		return response{}
	}
}

// errorMessage checks that answer has the given status and a JSON
// {"error": "..."} body whose message holds each of parts, and returns the message.
func errorMessage(t *testing.T, answer response, status int, parts ...string) string {
	t.Helper()
	require.Equal(t, status, answer.status, "body: %s", answer.body)
	var body struct {
		Error string `json:"error"`
	}
	if strings.HasPrefix(answer.header.Get("Content-Type"), "application/cloudevents+json") { // the error of a structured CloudEvent
		var structured struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		require.NoError(t, json.Unmarshal(answer.body, &structured), "body: %s", answer.body)
		require.Equal(t, events.TypeInferenceError, structured.Type)
		answer.body = structured.Data
	} else {
		require.Equal(t, "application/json", answer.header.Get("Content-Type"))
	}
	require.NoError(t, json.Unmarshal(answer.body, &body), "body: %s", answer.body)
	require.NotEmpty(t, body.Error)
	for _, part := range parts {
		require.Contains(t, body.Error, part)
	}
	return body.Error
}

// queued is how many requests the function's stream holds.
func (p *platform) queued(t *testing.T) uint64 {
	t.Helper()
	stream, err := p.js.Stream(t.Context(), events.StreamName("iris"))
	require.NoError(t, err)
	info, err := stream.Info(t.Context())
	require.NoError(t, err)
	return info.State.Msgs
}

// takeRequest fetches one request from the queue of iris revision 1, as a worker would.
func takeRequest(t *testing.T, js jetstream.JetStream) jetstream.Msg {
	t.Helper()
	return takeRequestOf(t, js, "1")
}

// takeRequestOf fetches one request from the queue of an iris revision.
func takeRequestOf(t *testing.T, js jetstream.JetStream, revision string) jetstream.Msg {
	t.Helper()
	consumer, err := js.Consumer(t.Context(), events.StreamName("iris"), events.ConsumerName(revision))
	require.NoError(t, err)
	batch, err := consumer.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	require.NoError(t, err)
	msg, ok := <-batch.Messages()
	require.True(t, ok, "no request in the queue within 10s: %v", batch.Error())
	return msg
}

// reply answers a request taken with takeRequest as the worker does: a
// response CloudEvent, or with status not 0 an error event with Sluice-Status,
// sent to the request's Sluice-Reply-To inbox.
func reply(t *testing.T, js jetstream.JetStream, request jetstream.Msg, status int, body string) {
	t.Helper()
	replyData(t, js, request, status, []byte(body), 0)
}

// replyData replies as reply does, in binary when headerLength is not 0.
func replyData(t *testing.T, js jetstream.JetStream, request jetstream.Msg, status int, body []byte, headerLength int) {
	t.Helper()
	requestEvent, err := events.ReadEvent(t.Context(), request.Headers(), request.Data())
	require.NoError(t, err)
	replyTo := request.Headers().Get(events.HeaderReplyTo)
	require.NotEmpty(t, replyTo, "request has no %s header", events.HeaderReplyTo)

	ev := event.New()
	ev.SetID("reply-" + requestEvent.ID())
	ev.SetSource("/sluice/functions/iris/revisions/1")
	ev.SetType(events.TypeInferenceResponse)
	ev.SetExtension(events.ExtensionModel, "iris")
	ev.SetExtension(events.ExtensionRequestID, requestEvent.ID())
	events.SetInferenceData(&ev, body, headerLength)
	msg := nats.NewMsg(replyTo)
	if status != 0 {
		ev.SetType(events.TypeInferenceError)
		msg.Header = nats.Header{events.HeaderStatus: {fmt.Sprint(status)}}
	}
	require.NoError(t, events.WriteEvent(t.Context(), msg, &ev))
	require.NoError(t, js.Conn().PublishMsg(msg))
}

// answerOnce plays the worker for one request: take it, reply, ack. It
// returns the request message as it was in the queue.
func answerOnce(t *testing.T, js jetstream.JetStream, status int, body string) jetstream.Msg {
	t.Helper()
	return answerOnceOf(t, js, "1", status, body)
}

// answerOnceOf plays the worker of an iris revision for one request.
func answerOnceOf(t *testing.T, js jetstream.JetStream, revision string, status int, body string) jetstream.Msg {
	t.Helper()
	request := takeRequestOf(t, js, revision)
	reply(t, js, request, status, body)
	require.NoError(t, request.Ack())
	return request
}

// counter sums the counter name over the series whose labels include labels.
func counter(t *testing.T, metrics *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := metrics.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, family := range families {
		if family.GetName() != name {
			continue
		}
	series:
		for _, metric := range family.GetMetric() {
			for key, value := range labels {
				if !hasLabel(metric.GetLabel(), key, value) {
					continue series
				}
			}
			sum += metric.GetCounter().GetValue()
		}
	}
	return sum
}

// labelPair is a Prometheus label as Gather returns it.
type labelPair interface {
	GetName() string
	GetValue() string
}

func hasLabel[P labelPair](pairs []P, name, value string) bool {
	for _, pair := range pairs {
		if pair.GetName() == name && pair.GetValue() == value {
			return true
		}
	}
	return false
}
