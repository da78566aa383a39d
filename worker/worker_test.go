package worker_test

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/onnxfile"
	"sluice.dev/sluice/functions/train"
	"sluice.dev/sluice/worker"
)

func TestWorkerAnswers(t *testing.T) {
	tests := []struct {
		name     string
		sessions int
		callers  int // goroutines publishing at the same time
		requests int // per caller
		rows     int // per request
	}{
		{name: "one request of one row", sessions: 1, callers: 1, requests: 1, rows: 1},
		{name: "one request of all 150 rows", sessions: 1, callers: 1, requests: 1, rows: 150},
		{name: "concurrent callers on one session", sessions: 1, callers: 8, requests: 8, rows: 3},
		{name: "concurrent callers on two sessions", sessions: 2, callers: 8, requests: 8, rows: 2},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			p := deployIris(t)
			p.start(t, p.config(), p.sessions(t, test.sessions))
			in := subscribe(t, p.client)

			want := map[string][][]float32{}
			msgs := make([][]*nats.Msg, test.callers)
			for caller := range test.callers {
				for request := range test.requests {
					id := fmt.Sprintf("caller-%d-request-%d", caller, request)
					req, rows := irisRequest(t, id, 7*(caller*test.requests+request), test.rows)
					want[id] = rows
					msgs[caller] = append(msgs[caller], requestMsg(t, p.fn, id, body(t, req), in.subject, time.Now().Add(time.Minute)))
				}
			}
			var callers sync.WaitGroup
			failed := make(chan error, test.callers*test.requests)
			for _, callerMsgs := range msgs {
				callers.Go(func() {
					for _, msg := range callerMsgs {
						if _, err := p.js.PublishMsg(t.Context(), msg); err != nil {
							failed <- err
						}
					}
				})
			}
			callers.Wait()
			close(failed)
			for err := range failed {
				require.NoError(t, err)
			}

			replies := in.collect(t, len(want))
			for id, rows := range want {
				r, ok := replies[id]
				require.True(t, ok, "no reply to %s", id)
				requireIrisAnswer(t, r, rows)
				require.Equal(t, id, r.response.ID, "the response carries the request's id")
				require.Equal(t, p.fn.Metadata.Name, r.response.ModelName)
				require.Equal(t, p.fn.Status.Revision, r.response.ModelVersion)
			}
			p.streamEmpty(t)
		})
	}
}

func TestWorkerBatches(t *testing.T) {
	tests := []struct {
		name string
		// startFirst starts the worker before the requests come; otherwise
		// they wait in the stream for it.
		startFirst bool
	}{
		{name: "requests queued before the worker starts"},
		{name: "requests arriving at once while the worker runs", startFirst: true},
	}
	const requests = 64
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			p := deployIris(t)
			cfg := p.config()
			cfg.MaxDelay = 20 * time.Millisecond
			in := subscribe(t, p.client)
			msgs := make([]*nats.Msg, requests)
			want := map[string][][]float32{}
			for i := range msgs {
				id := fmt.Sprintf("request-%02d", i)
				// Each request has its own rows and 1 to 4 of them, so a
				// batch split at the wrong place gives someone else's answer.
				req, rows := irisRequest(t, id, 13*i, 1+i%4)
				want[id] = rows
				msgs[i] = requestMsg(t, p.fn, id, body(t, req), in.subject, time.Now().Add(time.Minute))
			}
			var w *running
			if test.startFirst {
				w = p.start(t, cfg, p.sessions(t, 1))
			}
			p.publish(t, msgs...)
			if !test.startFirst {
				w = p.start(t, cfg, p.sessions(t, 1))
			}

			replies := in.collect(t, requests)
			for id, rows := range want {
				requireIrisAnswer(t, replies[id], rows)
				require.Equal(t, id, replies[id].response.ID)
			}
			p.streamEmpty(t)
			batches, single := histogram(t, w.registry, "sluice_worker_batch_size", 1)
			require.Greater(t, batches-single, uint64(0), "no batch held more than one request (%d batches)", batches)
			require.Less(t, batches, uint64(requests), "fewer batches than requests")
			require.Equal(t, float64(requests), counter(t, w.registry, "sluice_worker_requests_total", "outcome", "ok"))
		})
	}
}

// recorder is a Model that records the shape of the first input of every run.
type recorder struct {
	model worker.Model
	mu    sync.Mutex
	runs  [][]int64
}

func (r *recorder) Run(inputs []oip.Tensor) ([]oip.Tensor, error) {
	r.mu.Lock()
	r.runs = append(r.runs, slices.Clone(inputs[0].Shape))
	r.mu.Unlock()
	return r.model.Run(inputs)
}

func (r *recorder) shapes() [][]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.runs)
}

// echoModel returns x unchanged as y, and the sum of each row of x as total,
// for inputs of any width.
func echoModel(t *testing.T) []byte {
	t.Helper()
	model, err := onnxfile.Model{
		OpsetVersion: 11, // ReduceSum takes its axes as an attribute up to opset 12
		Graph: onnxfile.Graph{
			Nodes: []onnxfile.Node{
				{OpType: "Identity", Name: "same", Inputs: []string{"x"}, Outputs: []string{"y"}},
				{OpType: "ReduceSum", Name: "sum", Inputs: []string{"x"}, Outputs: []string{"total"},
					Attributes: []onnxfile.Attribute{onnxfile.IntsAttribute("axes", 1), onnxfile.IntAttribute("keepdims", 0)}},
			},
			Inputs: []onnxfile.ValueInfo{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, -1}}},
			Outputs: []onnxfile.ValueInfo{
				{Name: "y", Datatype: oip.FP32, Shape: []int64{-1, -1}},
				{Name: "total", Datatype: oip.FP32, Shape: []int64{-1}},
			},
		},
	}.Marshal()
	require.NoError(t, err)
	return model
}

const echoSpec = `
apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {name: echo}
spec:
  model: {path: ./echo.onnx}
  batching: {maxBatchSize: 32, maxDelay: 20ms}
`

func TestWorkerRunsEachTrailingShapeSeparately(t *testing.T) {
	p := deploy(t, []byte(echoSpec), echoModel(t), events.DefaultQueueConfig())
	in := subscribe(t, p.client)
	shapes := [][]int64{{1, 2}, {2, 3}, {1, 5}, {3, 2}, {2, 5}, {1, 3}, {2, 2}, {1, 5}, {4, 3}, {1, 1}}
	want := map[string][]float32{}
	var msgs []*nats.Msg
	var next float32
	for i, shape := range shapes {
		id := fmt.Sprintf("request-%d", i)
		data := make([]float32, shape[0]*shape[1])
		for j := range data {
			next++
			data[j] = next
		}
		want[id] = data
		x, err := oip.NewTensor("x", shape, data)
		require.NoError(t, err)
		msgs = append(msgs, requestMsg(t, p.fn, id, body(t, &oip.InferenceRequest{ID: id, Inputs: []oip.Tensor{x}}), in.subject, time.Now().Add(time.Minute)))
	}
	p.publish(t, msgs...)
	model := &recorder{model: p.sessions(t, 1)[0]}
	w := p.start(t, p.config(), []worker.Model{model})

	replies := in.collect(t, len(shapes))
	for i, shape := range shapes {
		id := fmt.Sprintf("request-%d", i)
		r := replies[id]
		require.Equal(t, events.TypeInferenceResponse, r.eventType, "%s: %s %s", id, r.status, r.problem)
		y := outputNamed(t, r.response.Outputs, "y")
		require.Equal(t, shape, y.Shape, id)
		require.Equal(t, want[id], y.Data, id)
		total := outputNamed(t, r.response.Outputs, "total")
		require.Equal(t, []int64{shape[0]}, total.Shape, id)
		for row := range shape[0] {
			var sum float32
			for _, v := range want[id][row*shape[1] : (row+1)*shape[1]] {
				sum += v
			}
			require.Equal(t, sum, total.Data.([]float32)[row], "%s row %d", id, row)
		}
	}
	p.streamEmpty(t)

	// Every request ran, and no run mixed widths; the ones of one width ran stacked.
	widths := map[int64]int64{} // width → rows asked for
	for _, shape := range shapes {
		widths[shape[1]] += shape[0]
	}
	ran := map[int64]int64{}
	for _, shape := range model.shapes() {
		ran[shape[1]] += shape[0]
	}
	require.Equal(t, widths, ran, "rows run by width")
	require.Less(t, len(model.shapes()), len(shapes), "requests of one width ran together: %v", model.shapes())
	batches, _ := histogram(t, w.registry, "sluice_worker_batch_size", 1)
	require.Less(t, int(batches), len(shapes))
}

func TestWorkerReturnsRequestedOutputs(t *testing.T) {
	p := deployIris(t)
	p.start(t, p.config(), p.sessions(t, 1))
	in := subscribe(t, p.client)
	tests := []struct {
		name    string
		outputs []string
		want    []string
	}{
		{name: "label only", outputs: []string{train.LabelName}, want: []string{train.LabelName}},
		{name: "probabilities only", outputs: []string{train.ProbabilitiesName}, want: []string{train.ProbabilitiesName}},
		{name: "in the order asked", outputs: []string{train.LabelName, train.ProbabilitiesName}, want: []string{train.LabelName, train.ProbabilitiesName}},
	}
	for i, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			id := fmt.Sprintf("request-%d", i)
			req, rows := irisRequest(t, id, 50*i, 3)
			for _, name := range test.outputs {
				req.Outputs = append(req.Outputs, oip.RequestedOutput{Name: name})
			}
			p.publish(t, requestMsg(t, p.fn, id, body(t, req), in.subject, time.Now().Add(time.Minute)))
			r := in.next(t)
			require.Equal(t, id, r.requestID)
			require.Equal(t, events.TypeInferenceResponse, r.eventType, r.problem)
			var names []string
			for _, output := range r.response.Outputs {
				names = append(names, output.Name)
			}
			require.Equal(t, test.want, names)

			// What is there is right.
			fixture := irisFixture(t)
			for _, output := range r.response.Outputs {
				for row, features := range rows {
					want := fixture.classifier.PredictProba(features)
					switch output.Name {
					case train.LabelName:
						require.Equal(t, int64(slices.Index(want, slices.Max(want))), output.Data.([]int64)[row])
					case train.ProbabilitiesName:
						require.InDeltaSlice(t, want, output.Data.([]float32)[row*len(want):(row+1)*len(want)], 1e-5)
					}
				}
			}
		})
	}
	p.streamEmpty(t)
}

func TestConfigValidate(t *testing.T) {
	valid := worker.DefaultConfig()
	valid.Function, valid.Revision = "iris", "1"
	tests := []struct {
		name   string
		change func(*worker.Config)
		want   string
	}{
		{name: "valid", change: func(*worker.Config) {}},
		{name: "bad function name", change: func(c *worker.Config) { c.Function = "Iris!" }, want: "worker: function"},
		{name: "no revision", change: func(c *worker.Config) { c.Revision = "" }, want: "revision is required"},
		{name: "no batch", change: func(c *worker.Config) { c.MaxBatchSize = 0 }, want: "MaxBatchSize must be at least 1, got 0"},
		{name: "negative delay", change: func(c *worker.Config) { c.MaxDelay = -time.Millisecond }, want: "MaxDelay must not be negative"},
		{name: "no drain time", change: func(c *worker.Config) { c.DrainTimeout = 0 }, want: "DrainTimeout must be positive"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			cfg := valid
			test.change(&cfg)
			err := cfg.Validate()
			if test.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, test.want)
			_, err = worker.New(nil, nil, []worker.Model{&recorder{}}, oip.Signature{}, cfg, prometheus.NewRegistry(), slog.Default())
			require.ErrorContains(t, err, test.want, "New validates its Config")
		})
	}
	t.Run("no models", func(t *testing.T) {
		_, err := worker.New(nil, nil, nil, oip.Signature{}, valid, prometheus.NewRegistry(), slog.Default())
		require.ErrorContains(t, err, "at least one model")
	})
}

// A request that asks for binary outputs gets them, whether it came in the
// binary tensor data extension or in JSON; one that does not gets JSON.
// They share one model run.
func TestWorkerAnswersBinaryRequestsInBinary(t *testing.T) {
	p := deployIris(t)
	cfg := p.config()
	cfg.MaxDelay = time.Second // so the two requests make one batch
	in := subscribe(t, p.client)
	var msgs []*nats.Msg
	want := map[string][][]float32{}
	for _, id := range []string{"binary", "json", "plain"} {
		req, rows := irisRequest(t, id, 0, 3)
		if id != "plain" {
			req.Parameters = map[string]any{"binary_data_output": true}
		}
		want[id] = rows
		data, headerLength := body(t, req), 0
		if id == "binary" {
			var err error
			data, headerLength, err = oip.AppendInferenceRequestBinary(nil, req, func(string) bool { return true })
			require.NoError(t, err)
			require.Positive(t, headerLength)
		}
		msg := requestMsg(t, p.fn, id, data, in.subject, time.Now().Add(time.Minute))
		if headerLength > 0 {
			msg.Header.Set("content-type", events.ContentTypeBinary)
			msg.Header.Set("ce-"+events.ExtensionHeaderLength, strconv.Itoa(headerLength))
		}
		msgs = append(msgs, msg)
	}
	p.publish(t, msgs...)
	p.start(t, cfg, p.sessions(t, 1))
	replies := in.collect(t, 3)
	for id, rows := range want {
		requireIrisAnswer(t, replies[id], rows)
	}
	require.Positive(t, replies["binary"].headerLength, "a binary request asking binary outputs is answered in binary")
	require.Positive(t, replies["json"].headerLength, "so is a JSON one")
	require.Zero(t, replies["plain"].headerLength, "a request asking nothing is answered in JSON")
	p.streamEmpty(t)
}

// With no exporter the worker's spans are no-ops: the answer's
// ce-traceparent is the request's own, so the caller's trace goes on.
func TestWorkerAnswerCarriesTheRequestsTraceContext(t *testing.T) {
	p := deployIris(t)
	p.start(t, p.config(), p.sessions(t, 1))
	in := subscribe(t, p.client)
	req, _ := irisRequest(t, "traced", 0, 1)
	msg := requestMsg(t, p.fn, "traced", body(t, req), in.subject, time.Now().Add(time.Minute))
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	msg.Header.Set("ce-traceparent", traceparent)
	_, err := p.js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)
	select {
	case answer := <-in.msgs:
		require.Equal(t, traceparent, answer.Header.Get("ce-traceparent"))
	case <-time.After(waitFor):
		t.Fatal("no answer")
	}
}
