package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/train"
	"sluice.dev/sluice/worker"
	"sluice.dev/sluice/worker/onnx"
)

// waitFor bounds every wait of these tests; -race on two cores is slow.
const waitFor = 20 * time.Second

// iris is the classifier trained from deploy/demo/iris.csv, its ONNX file
// and the 150 rows it was trained on, once per test binary.
type iris struct {
	classifier *train.Classifier
	model      []byte
	rows       [][]float32
}

var loadIris = sync.OnceValues(func() (*iris, error) {
	classifier, data, _, err := train.FitFile(context.Background(), "../deploy/demo/iris.csv", "", train.DefaultConfig())
	if err != nil {
		return nil, err
	}
	model, err := classifier.ONNX()
	if err != nil {
		return nil, err
	}
	return &iris{classifier: classifier, model: model, rows: data.Float32Rows()}, nil
})

func irisFixture(t *testing.T) *iris {
	t.Helper()
	fixture, err := loadIris()
	require.NoError(t, err, "train the iris model")
	return fixture
}

// irisSpec is deploy/demo/iris.yaml, the demo function.
func irisSpec(t *testing.T) []byte {
	t.Helper()
	spec, err := os.ReadFile("../deploy/demo/iris.yaml")
	require.NoError(t, err)
	return spec
}

// platform is one deployed function on a real embedded nats-server.
type platform struct {
	server  *server.Server
	js      jetstream.JetStream
	client  *nats.Conn // the caller's connection: it publishes requests and receives replies
	catalog *functions.Catalog
	fn      *functions.Function
	model   []byte
	stream  jetstream.Stream
}

// deploy starts a nats-server and deploys the function in spec with model,
// through the Deployer as `sluice deploy` does.
func deploy(t *testing.T, spec, model []byte, queue events.QueueConfig) *platform {
	t.Helper()
	ctx := context.Background()
	srv, client, js := natstest.JetStream(t)
	catalog, err := functions.OpenCatalog(ctx, js)
	require.NoError(t, err)
	fn, err := functions.Parse(spec)
	require.NoError(t, err)
	fn, err = functions.NewDeployer(js, catalog, queue).Deploy(ctx, fn, model)
	require.NoError(t, err)
	require.NotNil(t, fn.Status.Model)
	stream, err := js.Stream(ctx, events.StreamName(fn.Metadata.Name))
	require.NoError(t, err)
	return &platform{server: srv, js: js, client: client, catalog: catalog, fn: fn, model: model, stream: stream}
}

func deployIris(t *testing.T) *platform {
	t.Helper()
	return deploy(t, irisSpec(t), irisFixture(t).model, events.DefaultQueueConfig())
}

// signature is the deployed model's signature, as the catalog records it.
func (p *platform) signature() oip.Signature { return p.fn.Status.Model.Signature }

// sessions loads n ONNX Runtime sessions of the deployed model.
func (p *platform) sessions(t *testing.T, n int) []worker.Model {
	t.Helper()
	require.NoError(t, onnx.Init(""), "the ONNX Runtime shared library is required: run `make deps`")
	models := make([]worker.Model, n)
	for i := range models {
		session, err := onnx.Load(p.model, p.signature(), onnx.SessionConfig{Device: p.fn.Spec.Runtime.Device, Threads: p.fn.Spec.Runtime.Threads})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, session.Close()) })
		models[i] = session
	}
	return models
}

// config is the worker configuration `sluice worker` derives from the function.
func (p *platform) config() worker.Config {
	cfg := worker.DefaultConfig()
	cfg.Function = p.fn.Metadata.Name
	cfg.Revision = p.fn.Status.Revision
	cfg.MaxBatchSize = p.fn.Spec.Batching.MaxBatchSize
	cfg.MaxDelay = p.fn.Spec.Batching.MaxDelay.Duration
	return cfg
}

// running is a Worker serving on its own connection, as a worker process does.
type running struct {
	worker   *worker.Worker
	conn     *nats.Conn
	registry *prometheus.Registry
	logs     *logBuffer
	cancel   context.CancelFunc
	done     chan error
}

// start runs a Worker until the test ends or stop is called.
func (p *platform) start(t *testing.T, cfg worker.Config, models []worker.Model) *running {
	t.Helper()
	ctx := context.Background()
	conn := natstest.Connect(t, p.server)
	js, err := jetstream.New(conn)
	require.NoError(t, err)
	consumer, err := js.Consumer(ctx, events.StreamName(p.fn.Metadata.Name), events.ConsumerName(p.fn.Status.Revision))
	require.NoError(t, err)
	r := &running{conn: conn, registry: prometheus.NewRegistry(), logs: &logBuffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(r.logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := worker.New(conn, consumer, models, p.signature(), cfg, r.registry, log)
	require.NoError(t, err)
	r.worker = w
	runCtx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	go func() { r.done <- w.Run(runCtx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return; a second call does nothing.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			require.NoError(t, err)
			close(r.done)
		}
	case <-time.After(waitFor):
		t.Fatalf("worker.Run did not return %s after its context ended", waitFor)
	}
}

// logBuffer keeps what the worker logs, for tests that wait on a log line.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) contains(text string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Contains(b.buf.String(), text)
}

// testWriter shows the worker's log in the test output when -v is set, and
// drops it once the test is over.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// requestMsg is a request as the activator publishes it (activator/call.go):
// the request CloudEvent on the revision's subject, with the inbox the
// caller waits on, its deadline and the event id for de-duplication.
func requestMsg(t *testing.T, fn *functions.Function, id string, body []byte, replyTo string, deadline time.Time) *nats.Msg {
	t.Helper()
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("/sluice/activator")
	ev.SetType(events.TypeInferenceRequest)
	ev.SetTime(time.Now())
	ev.SetExtension(events.ExtensionModel, fn.Metadata.Name)
	ev.SetExtension(events.ExtensionModelVersion, fn.Status.Revision)
	ev.SetDataContentType("application/json")
	ev.DataEncoded = body
	msg := nats.NewMsg(events.RequestSubject(fn.Metadata.Name, fn.Status.Revision))
	require.NoError(t, events.WriteEvent(context.Background(), msg, &ev))
	msg.Header.Set(events.HeaderReplyTo, replyTo)
	msg.Header.Set(events.HeaderDeadline, strconv.FormatInt(deadline.UnixNano(), 10))
	msg.Header.Set(events.HeaderMsgID, id)
	return msg
}

// publish stores msgs in the function's stream, all at once, and waits for
// every acknowledgement.
func (p *platform) publish(t *testing.T, msgs ...*nats.Msg) {
	t.Helper()
	acks := make([]jetstream.PubAckFuture, len(msgs))
	for i, msg := range msgs {
		ack, err := p.js.PublishMsgAsync(msg)
		require.NoError(t, err)
		acks[i] = ack
	}
	for _, ack := range acks {
		select {
		case <-ack.Ok():
		case err := <-ack.Err():
			require.NoError(t, err)
		case <-time.After(waitFor):
			t.Fatal("no publish acknowledgement")
		}
	}
}

// body encodes an inference request.
func body(t *testing.T, req *oip.InferenceRequest) []byte {
	t.Helper()
	encoded, err := oip.AppendInferenceRequest(nil, req)
	require.NoError(t, err)
	return encoded
}

// irisRequest asks for the rows of iris starting at first, count of them, wrapping around.
func irisRequest(t *testing.T, id string, first, count int) (*oip.InferenceRequest, [][]float32) {
	t.Helper()
	fixture := irisFixture(t)
	rows := make([][]float32, count)
	for i := range rows {
		rows[i] = fixture.rows[(first+i)%len(fixture.rows)]
	}
	input, err := oip.NewTensor(train.InputName, []int64{int64(count), int64(len(rows[0]))}, slices.Concat(rows...))
	require.NoError(t, err)
	return &oip.InferenceRequest{ID: id, Inputs: []oip.Tensor{input}}, rows
}

// reply is a worker's answer, read as the activator reads it.
type reply struct {
	status    string // the Sluice-Status header of an error reply
	eventType string
	requestID string // the requestid extension: the request event's id
	response  *oip.InferenceResponse
	problem   string // the error of an error reply
	// headerLength is the length of the JSON header of a binary answer, 0 for JSON.
	headerLength int64
}

// inbox is where a test waits for replies, as the activator's inbox does.
type inbox struct {
	subject string
	msgs    chan *nats.Msg
}

func subscribe(t *testing.T, nc *nats.Conn) *inbox {
	t.Helper()
	in := &inbox{subject: nc.NewInbox(), msgs: make(chan *nats.Msg, 1<<14)}
	sub, err := nc.ChanSubscribe(in.subject, in.msgs)
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return in
}

// next waits for one reply.
func (in *inbox) next(t *testing.T) reply {
	t.Helper()
	select {
	case msg := <-in.msgs:
		return readReply(t, msg)
	case <-time.After(waitFor):
		t.Fatalf("no reply on %s within %s", in.subject, waitFor)
		return reply{}
	}
}

// collect waits for n replies and returns them by request id; a request
// answered twice fails the test.
func (in *inbox) collect(t *testing.T, n int) map[string]reply {
	t.Helper()
	replies := make(map[string]reply, n)
	for range n {
		r := in.next(t)
		_, dup := replies[r.requestID]
		require.False(t, dup, "request %q answered twice", r.requestID)
		replies[r.requestID] = r
	}
	return replies
}

// requireNoReply checks that nothing arrived on the inbox, after a round
// trip to the server so that anything already sent has come in.
func (in *inbox) requireNoReply(t *testing.T, nc *nats.Conn) {
	t.Helper()
	require.NoError(t, nc.Flush())
	select {
	case msg := <-in.msgs:
		t.Fatalf("unexpected reply: %+v", readReply(t, msg))
	default:
	}
}

func readReply(t *testing.T, msg *nats.Msg) reply {
	t.Helper()
	r, err := parseReply(msg)
	require.NoError(t, err)
	return r
}

// parseReply reads a reply as the activator does; it may run off the test goroutine.
func parseReply(msg *nats.Msg) (reply, error) {
	ev, err := events.ReadEvent(context.Background(), msg.Header, msg.Data)
	if err != nil {
		return reply{}, fmt.Errorf("a reply is a CloudEvent: %w", err)
	}
	r := reply{status: msg.Header.Get(events.HeaderStatus), eventType: ev.Type()}
	if id, ok := ev.Extensions()[events.ExtensionRequestID]; ok {
		r.requestID = fmt.Sprint(id)
	}
	if r.headerLength, err = events.InferenceHeaderLength(ev); err != nil {
		return reply{}, err
	}
	switch {
	case ev.Type() == events.TypeInferenceResponse && r.headerLength > 0:
		r.response, err = oip.DecodeInferenceResponseBinary(ev.Data(), r.headerLength, oip.DefaultLimits())
	case ev.Type() == events.TypeInferenceResponse:
		r.response, err = oip.DecodeInferenceResponse(ev.Data(), oip.DefaultLimits())
	case ev.Type() == events.TypeInferenceError:
		var problem struct{ Error string }
		err = ev.DataAs(&problem)
		r.problem = problem.Error
	default:
		err = fmt.Errorf("reply of type %q", ev.Type())
	}
	return r, err
}

// requireIrisAnswer checks a response against PredictProba for each of its
// rows, in order.
func requireIrisAnswer(t *testing.T, r reply, rows [][]float32) {
	t.Helper()
	require.Equal(t, events.TypeInferenceResponse, r.eventType, "error reply: %s %s", r.status, r.problem)
	require.Empty(t, r.status)
	fixture := irisFixture(t)
	classes := len(fixture.classifier.Classes())
	probabilities := outputNamed(t, r.response.Outputs, train.ProbabilitiesName)
	require.Equal(t, []int64{int64(len(rows)), int64(classes)}, probabilities.Shape)
	labels := outputNamed(t, r.response.Outputs, train.LabelName)
	require.Equal(t, []int64{int64(len(rows))}, labels.Shape)
	for i, row := range rows {
		want := fixture.classifier.PredictProba(row)
		require.InDeltaSlice(t, want, probabilities.Data.([]float32)[i*classes:(i+1)*classes], 1e-5, "row %d", i)
		require.Equal(t, int64(slices.Index(want, slices.Max(want))), labels.Data.([]int64)[i], "label of row %d", i)
	}
}

func outputNamed(t *testing.T, outputs []oip.Tensor, name string) oip.Tensor {
	t.Helper()
	index := slices.IndexFunc(outputs, func(tensor oip.Tensor) bool { return tensor.Name == name })
	require.GreaterOrEqual(t, index, 0, "output %q missing", name)
	return outputs[index]
}

// streamEmpty waits until every request has left the stream and none is
// held by the consumer: each was acknowledged or terminated.
func (p *platform) streamEmpty(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	require.Eventually(t, func() bool {
		info, err := p.stream.Info(ctx)
		return err == nil && info.State.Msgs == 0
	}, waitFor, 5*time.Millisecond, "requests left in the stream")
	consumer, err := p.js.Consumer(ctx, events.StreamName(p.fn.Metadata.Name), events.ConsumerName(p.fn.Status.Revision))
	require.NoError(t, err)
	info, err := consumer.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.NumPending+uint64(info.NumAckPending), "requests still pending")
}

// streamMsgs is how many requests the stream still holds.
func (p *platform) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	info, err := p.stream.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

// metrics reads the series of the metric name from the registry; none when it has none yet.
func metrics(t *testing.T, registry *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	families, err := registry.Gather()
	require.NoError(t, err)
	for _, family := range families {
		if family.GetName() == name {
			return family.GetMetric()
		}
	}
	return nil
}

// histogram reads a histogram of the registry: how many observations, and
// how many of them were at most le.
func histogram(t *testing.T, registry *prometheus.Registry, name string, le float64) (count, atMost uint64) {
	t.Helper()
	series := metrics(t, registry, name)
	require.Len(t, series, 1, "metric %s", name)
	h := series[0].GetHistogram()
	for _, bucket := range h.GetBucket() {
		if bucket.GetUpperBound() == le {
			return h.GetSampleCount(), bucket.GetCumulativeCount()
		}
	}
	t.Fatalf("histogram %s has no bucket le=%v", name, le)
	return 0, 0
}

// counter reads one series of a counter vector of the registry, 0 if it has none yet.
func counter(t *testing.T, registry *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	for _, metric := range metrics(t, registry, name) {
		for _, pair := range metric.GetLabel() {
			if pair.GetName() == label && pair.GetValue() == value {
				return metric.GetCounter().GetValue()
			}
		}
	}
	return 0
}
