package autoscaler_test

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

	"sluice.dev/sluice/autoscaler"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/train"
)

// countingScaler records the replicas asked for and reports them all ready:
// the loop under test is the autoscaler, not a scaler (those have their own tests).
type countingScaler struct {
	mu       sync.Mutex
	replicas map[string]int
	calls    []int
}

func (s *countingScaler) Scale(_ context.Context, function, revision string, replicas int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replicas[function+"/"+revision] = replicas
	s.calls = append(s.calls, replicas)
	return nil
}

func (s *countingScaler) Ready(_ context.Context, function, revision string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replicas[function+"/"+revision], nil
}

func (s *countingScaler) get(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replicas[key]
}

func irisModel(t *testing.T) []byte {
	t.Helper()
	classifier, _, _, err := train.FitFile(context.Background(), "../deploy/demo/iris.csv", "", train.DefaultConfig())
	require.NoError(t, err)
	model, err := classifier.ONNX()
	require.NoError(t, err)
	return model
}

// startAutoscaler deploys iris (scale to zero after 1s, target depth 4, at
// most 3 replicas) and runs the registry and the autoscaler with tick, its
// configuration changed by tune.
func startAutoscaler(t *testing.T, tick time.Duration, tune ...func(*autoscaler.Config)) (jetstream.JetStream, *countingScaler) {
	t.Helper()
	_, nc, js := natstest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	catalog, err := functions.OpenCatalog(ctx, js)
	require.NoError(t, err)
	fn, err := functions.Parse([]byte(`metadata: {name: iris}
spec:
  model: {path: ./iris.onnx}
  scaling: {minReplicas: 0, maxReplicas: 3, targetQueueDepth: 4, activationQueueDepth: 1, scaleToZeroAfter: 1s}
`))
	require.NoError(t, err)
	_, err = functions.NewDeployer(js, catalog, events.DefaultQueueConfig()).Deploy(ctx, fn, irisModel(t))
	require.NoError(t, err)

	registry := functions.NewRegistry(catalog)
	scaler := &countingScaler{replicas: map[string]int{}}
	cfg := autoscaler.DefaultConfig()
	cfg.Tick = tick
	cfg.StableWindow, cfg.PanicWindow = time.Second, 200*time.Millisecond
	for _, f := range tune {
		f(&cfg)
	}
	loop, err := autoscaler.New(nc, js, registry, scaler, cfg, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = registry.Run(ctx) }()
	go func() { defer wg.Done(); require.NoError(t, loop.Run(ctx)) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	<-registry.Synced()
	return js, scaler
}

func TestAutoscalerFollowsQueueDepth(t *testing.T) {
	js, scaler := startAutoscaler(t, 50*time.Millisecond)
	ctx := context.Background()
	require.Never(t, func() bool { return scaler.get("iris/1") > 0 }, 300*time.Millisecond, 20*time.Millisecond,
		"an idle function stays at zero")

	for range 12 { // depth 12 at target 4 wants 3 replicas
		_, err := js.Publish(ctx, events.RequestSubject("iris", "1"), []byte("{}"))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return scaler.get("iris/1") == 3 }, 5*time.Second, 10*time.Millisecond)

	stream, err := js.Stream(ctx, events.StreamName("iris"))
	require.NoError(t, err)
	require.NoError(t, stream.Purge(ctx)) // the work is done
	require.Eventually(t, func() bool { return scaler.get("iris/1") == 0 }, 10*time.Second, 20*time.Millisecond,
		"after scaleToZeroAfter with an empty queue the function goes back to zero")

	status := scaleStatus(t, js)
	require.Equal(t, 0, status.Desired)
	require.NotEmpty(t, status.Reason)
}

// A machine's bound on the replicas of one revision (sluice up's
// --max-workers) holds the decision back, and the status says why.
func TestAutoscalerKeepsWithinMaxReplicas(t *testing.T) {
	js, scaler := startAutoscaler(t, 50*time.Millisecond, func(cfg *autoscaler.Config) { cfg.MaxReplicas = 2 })
	ctx := context.Background()
	for range 12 { // depth 12 at target 4 wants 3 replicas
		_, err := js.Publish(ctx, events.RequestSubject("iris", "1"), []byte("{}"))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return scaler.get("iris/1") == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Never(t, func() bool { return scaler.get("iris/1") > 2 }, 500*time.Millisecond, 20*time.Millisecond)

	status := scaleStatus(t, js)
	require.Equal(t, 2, status.Desired, "the status shows what runs")
	require.Contains(t, status.Reason, "wants 3, this machine runs at most 2 of one revision")

	cfg := autoscaler.DefaultConfig()
	cfg.MaxReplicas = -1
	require.ErrorContains(t, cfg.Validate(), "MaxReplicas")
}

// scaleStatus is the status the autoscaler wrote for iris's revision 1.
func scaleStatus(t *testing.T, js jetstream.JetStream) events.ScaleStatus {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), events.ScaleBucket)
	require.NoError(t, err)
	entry, err := kv.Get(t.Context(), events.ScaleKey("iris", "1"))
	require.NoError(t, err)
	var status events.ScaleStatus
	require.NoError(t, json.Unmarshal(entry.Value(), &status))
	return status
}

func TestPokeWakesAFunctionAtOnce(t *testing.T) {
	// With an hour between ticks, only a poke can wake the function. The
	// activator repeats its poke while a function has no ready replica, so
	// this test does too (the first may precede the autoscaler's subscription).
	js, scaler := startAutoscaler(t, time.Hour)
	announced, err := js.Conn().SubscribeSync(events.ScaleEventSubject("iris"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		require.NoError(t, js.Conn().Publish(events.PokeSubject, []byte(events.ScaleKey("iris", "1"))))
		return scaler.get("iris/1") == 1
	}, 5*time.Second, 10*time.Millisecond, "a poke naming the revision wakes it without waiting for a tick")
	require.NoError(t, js.Conn().Publish(events.PokeSubject, []byte("no-such-function")))

	msg, err := announced.NextMsg(5 * time.Second)
	require.NoError(t, err, "every scale decision is announced as a CloudEvent")
	ev, err := events.ReadEvent(context.Background(), msg.Header, msg.Data)
	require.NoError(t, err)
	require.Equal(t, events.TypeScalePrefix+"from_zero", ev.Type())
	var status events.ScaleStatus
	require.NoError(t, json.Unmarshal(ev.Data(), &status))
	require.Equal(t, 1, status.Desired)
	require.Contains(t, status.Reason, "poked")
}

// TestARolloutScalesBothRevisions: while a rollout runs, its stable revision
// and its candidate keep a replica even idle; once it is over the old
// revision drains to zero.
func TestARolloutScalesBothRevisions(t *testing.T) {
	js, scaler := startAutoscaler(t, 50*time.Millisecond)
	ctx := t.Context()
	catalog, err := functions.OpenCatalog(ctx, js)
	require.NoError(t, err)
	fn, err := catalog.Get(ctx, "iris")
	require.NoError(t, err)
	candidate := fn.Status.Revisions[0]
	candidate.Name = "2"
	fn.Status.Revisions = append(fn.Status.Revisions, candidate)
	fn.Status.Revision = "2"
	fn.Status.Rollout = &functions.RolloutStatus{Stable: "1", Candidate: "2", Phase: functions.RolloutProgressing, Weight: 100}
	fn.Status.Traffic = fn.Status.Rollout.Traffic()
	require.NoError(t, catalog.Put(ctx, fn))
	_, err = events.EnsureConsumer(ctx, js, "iris", "2", events.DefaultQueueConfig())
	require.NoError(t, err)

	require.Eventually(t, func() bool { return scaler.get("iris/1") == 1 && scaler.get("iris/2") == 1 }, 5*time.Second, 10*time.Millisecond,
		"the stable revision and the candidate keep a replica while the rollout runs, even with no traffic")

	fn, err = catalog.Get(ctx, "iris")
	require.NoError(t, err)
	fn.Status.Rollout.Phase = functions.RolloutPromoted
	require.NoError(t, catalog.Put(ctx, fn))
	require.Eventually(t, func() bool { return scaler.get("iris/1") == 0 }, 10*time.Second, 20*time.Millisecond,
		"after the rollout the old revision drains and scales to zero")
}
