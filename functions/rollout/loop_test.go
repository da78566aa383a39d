package rollout_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/rollout"
	"sluice.dev/sluice/functions/train"
)

// rolloutPlatform is a function at revision 1 on a real nats-server, with
// the rollout loop running on a fast tick.
type rolloutPlatform struct {
	js       jetstream.JetStream
	catalog  *functions.Catalog
	deployer *functions.Deployer
	counter  *functions.Counter
	metrics  *prometheus.Registry
}

func startLoop(t *testing.T) *rolloutPlatform {
	t.Helper()
	_, _, js := natstest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	catalog, err := functions.OpenCatalog(ctx, js)
	require.NoError(t, err)
	counts, err := events.EnsureCountsBucket(ctx, js)
	require.NoError(t, err)
	p := &rolloutPlatform{
		js: js, catalog: catalog, deployer: functions.NewDeployer(js, catalog, events.DefaultQueueConfig()),
		counter: functions.NewCounter(counts), metrics: prometheus.NewRegistry(),
	}
	p.deploy(t, 1)
	cfg := rollout.DefaultConfig()
	cfg.Tick = 20 * time.Millisecond
	loop, err := rollout.NewLoop(js, catalog, cfg, p.metrics, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); require.NoError(t, loop.Run(ctx)) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return p
}

// deploy deploys iris with a fast rollout policy; no worker runs it here.
func (p *rolloutPlatform) deploy(t *testing.T, seed uint64) *functions.Function {
	t.Helper()
	fn, err := functions.Parse([]byte(`metadata: {name: iris}
spec:
  model: {path: iris.onnx}
  rollout: {steps: [10, 50, 100], interval: 1s, minRequests: 20, maxErrorRate: 0.05}
`))
	require.NoError(t, err)
	fn, err = p.deployer.Deploy(t.Context(), fn, irisModel(t, seed))
	require.NoError(t, err)
	return fn
}

// irisModel trains the demo classifier with a seed: two seeds, two model versions.
func irisModel(t *testing.T, seed uint64) []byte {
	t.Helper()
	cfg := train.DefaultConfig()
	cfg.Seed = seed
	classifier, _, _, err := train.FitFile(t.Context(), "../../deploy/demo/iris.csv", "", cfg)
	require.NoError(t, err)
	model, err := classifier.ONNX()
	require.NoError(t, err)
	return model
}

// serve counts requests for both revisions in their weights' proportion,
// the candidate failing one in every failEvery (0: never), until the
// rollout is over, and returns the weights it saw and the final status.
func (p *rolloutPlatform) serve(t *testing.T, failEvery int64) ([]int, functions.RolloutStatus) {
	t.Helper()
	var weights []int
	var requests int64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		fn, err := p.catalog.Get(t.Context(), "iris")
		require.NoError(t, err)
		status := *fn.Status.Rollout
		if len(weights) == 0 || weights[len(weights)-1] != status.Weight {
			weights = append(weights, status.Weight)
		}
		if status.Done() {
			return weights, status
		}
		for range 10 {
			requests++
			delta := functions.Counts{Requests: 1}
			if failEvery > 0 && requests%failEvery == 0 {
				delta.Errors = 1
			}
			revision := status.Stable
			if requests%100 < int64(status.Weight) {
				revision = status.Candidate
			} else {
				delta.Errors = 0
			}
			p.counter.Add("iris", revision, delta)
		}
		require.NoError(t, p.counter.Flush(t.Context()))
		time.Sleep(20 * time.Millisecond) // the pace of traffic, not a wait for a result
	}
	t.Fatalf("the rollout did not finish in 20s; weights %v", weights)
	return nil, functions.RolloutStatus{}
}

func TestLoopPromotesAGoodCandidateStepByStep(t *testing.T) {
	p := startLoop(t)
	announced := p.watchEvents(t)
	fn := p.deploy(t, 2)
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 90}, {Revision: "2", Weight: 10}}, fn.Status.Traffic)

	weights, status := p.serve(t, 0)
	require.Equal(t, []int{10, 50, 100}, weights)
	require.Equal(t, functions.RolloutPromoted, status.Phase, status.Reason)
	require.Equal(t, "2", status.Stable)
	fn, err := p.catalog.Get(t.Context(), "iris")
	require.NoError(t, err)
	require.Equal(t, functions.Traffic{{Revision: "2", Weight: 100}}, fn.Status.Traffic)
	require.Equal(t, []string{"dev.sluice.rollout.stepped", "dev.sluice.rollout.stepped", "dev.sluice.rollout.promoted"}, announced.types(t, 3))
	require.Equal(t, map[string]float64{"sluice_rollout_weight/2": 100, "sluice_rollout_weight/1": 0, "sluice_rollouts_total/promoted": 1}, p.gathered(t))
}

// gathered reads the loop's metrics as name/label value → value.
func (p *rolloutPlatform) gathered(t *testing.T) map[string]float64 {
	t.Helper()
	families, err := p.metrics.Gather()
	require.NoError(t, err)
	values := map[string]float64{}
	for _, family := range families {
		for _, metric := range family.GetMetric() {
			label := metric.GetLabel()[len(metric.GetLabel())-1].GetValue() // revision or outcome
			values[family.GetName()+"/"+label] = metric.GetGauge().GetValue() + metric.GetCounter().GetValue()
		}
	}
	return values
}

func TestLoopRollsBackAFailingCandidate(t *testing.T) {
	p := startLoop(t)
	announced := p.watchEvents(t)
	p.deploy(t, 2)

	_, status := p.serve(t, 3) // a third of the candidate's requests fail
	require.Equal(t, functions.RolloutRolledBack, status.Phase)
	require.Contains(t, status.Reason, "gate failed: errors Fail")
	fn, err := p.catalog.Get(t.Context(), "iris")
	require.NoError(t, err)
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 100}}, fn.Status.Traffic, "all traffic back on the stable revision")
	require.Equal(t, []string{"dev.sluice.rollout.rolled_back"}, announced.types(t, 1))
}

func TestLoopRollsBackACandidateThatCannotRun(t *testing.T) {
	p := startLoop(t)
	p.deploy(t, 2)
	require.NoError(t, p.catalog.SetRevisionState(t.Context(), "iris", "2", functions.RevisionFailed, "Could not find an implementation for Add(6)"))
	require.Eventually(t, func() bool {
		fn, err := p.catalog.Get(t.Context(), "iris")
		return err == nil && fn.Status.Rollout.Phase == functions.RolloutRolledBack
	}, 5*time.Second, 10*time.Millisecond)
}

// eventWatch reads the rollout's lifecycle events as they are stored.
type eventWatch struct{ messages <-chan jetstream.Msg }

func (p *rolloutPlatform) watchEvents(t *testing.T) eventWatch {
	t.Helper()
	_, err := events.EnsureLifecycleStream(t.Context(), p.js)
	require.NoError(t, err)
	consumer, err := p.js.OrderedConsumer(t.Context(), events.LifecycleStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.RolloutSubject("iris")}})
	require.NoError(t, err)
	messages := make(chan jetstream.Msg, 16)
	consumeCtx, err := consumer.Consume(func(msg jetstream.Msg) { messages <- msg })
	require.NoError(t, err)
	t.Cleanup(consumeCtx.Stop)
	return eventWatch{messages: messages}
}

func (w eventWatch) types(t *testing.T, n int) []string {
	t.Helper()
	var types []string
	for range n {
		select {
		case msg := <-w.messages:
			ev, err := events.ReadEvent(t.Context(), msg.Headers(), msg.Data())
			require.NoError(t, err)
			var status functions.RolloutStatus
			require.NoError(t, json.Unmarshal(ev.Data(), &status))
			require.Equal(t, "iris/2", ev.Subject())
			types = append(types, ev.Type())
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d rollout events: %v", len(types), n, types)
		}
	}
	return types
}
