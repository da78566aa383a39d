package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice.dev/sluice/activator"
	"sluice.dev/sluice/autoscaler"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
)

// wakeRecorder is a Scaler that records when each function was first scaled up.
type wakeRecorder struct {
	mu    sync.Mutex
	woken map[string]time.Time
}

func (r *wakeRecorder) Scale(_ context.Context, function, _ string, replicas int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.woken[function]; !ok && replicas > 0 {
		r.woken[function] = time.Now()
	}
	return nil
}

func (r *wakeRecorder) Ready(context.Context, string, string) (int, error) { return 0, nil }

// BenchmarkDecisionLatency is the time from a request arriving at the
// activator for a function at zero to the autoscaler's scale call, through
// the poke: p50 and p99 over 50 functions (goal < 50ms; KEDA polls every 30s).
func BenchmarkDecisionLatency(b *testing.B) {
	const count = 50
	for b.Loop() {
		latencies := measureWakes(b, count)
		slices.Sort(latencies)
		b.ReportMetric(float64(latencies[count/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(latencies[count*99/100].Microseconds())/1000, "p99-ms")
	}
}

func measureWakes(b *testing.B, count int) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, nc, js := natstest.JetStream(b)
	catalog, err := functions.OpenCatalog(ctx, js)
	if err != nil {
		b.Fatal(err)
	}
	_, model := trainIris(b)
	version, err := catalog.PutModel(ctx, "shared", model, nil)
	if err != nil {
		b.Fatal(err)
	}
	queue := events.DefaultQueueConfig()
	queue.MaxBytes = 1 << 20
	deployer := functions.NewDeployer(js, catalog, queue)
	for i := range count {
		fn, err := functions.Parse([]byte(fmt.Sprintf("metadata: {name: fn-%d}\nspec: {model: {uri: %s}, timeouts: {request: 2s}}\n", i, version.Object)))
		if err == nil {
			_, err = deployer.Deploy(ctx, fn, nil)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	registry := functions.NewRegistry(catalog)
	recorder := &wakeRecorder{woken: map[string]time.Time{}}
	quiet := slog.New(slog.DiscardHandler)
	loop, err := autoscaler.New(nc, js, registry, recorder, autoscaler.DefaultConfig(), prometheus.NewRegistry(), quiet)
	if err != nil {
		b.Fatal(err)
	}
	server, err := activator.New(nc, registry, activator.DefaultConfig(), prometheus.NewRegistry(), quiet)
	if err != nil {
		b.Fatal(err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, run := range []func(context.Context) error{registry.Run, loop.Run, func(ctx context.Context) error { return server.Run(ctx, listener) }} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	<-registry.Synced()
	time.Sleep(500 * time.Millisecond) // the autoscaler and activator subscribe
	sent := map[string]time.Time{}
	body := `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`
	for i := range count {
		name := fmt.Sprintf("fn-%d", i)
		sent[name] = time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post("http://"+listener.Addr().String()+"/v2/models/"+name+"/infer", "application/json", strings.NewReader(body))
			if err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(20 * time.Millisecond) // one at a time: latency, not a burst
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		recorder.mu.Lock()
		done := len(recorder.woken) == count
		recorder.mu.Unlock()
		if done {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	recorder.mu.Lock()
	defer recorder.mu.Unlock()
	if len(recorder.woken) != count {
		b.Fatalf("%d of %d functions were woken", len(recorder.woken), count)
	}
	latencies := make([]time.Duration, 0, count)
	for name, at := range recorder.woken {
		latencies = append(latencies, at.Sub(sent[name]))
	}
	return latencies
}
