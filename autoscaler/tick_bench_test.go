package autoscaler

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/train"
)

// idleScaler is a Scaler for the benchmark: every revision stays at zero.
type idleScaler struct{}

func (idleScaler) Scale(context.Context, string, string, int) error   { return nil }
func (idleScaler) Ready(context.Context, string, string) (int, error) { return 0, nil }

// BenchmarkTick1000Functions is what one autoscaler tick costs with 1,000
// functions registered: a consumer.Info per revision and a decision each.
// It reports the time of one tick and the heap the autoscaler holds.
func BenchmarkTick1000Functions(b *testing.B) {
	const count = 1000
	_, nc, js := natstest.JetStream(b)
	ctx := context.Background()
	catalog, err := functions.OpenCatalog(ctx, js)
	if err != nil {
		b.Fatal(err)
	}
	object := storeIrisModel(b, ctx, catalog)
	queue := events.DefaultQueueConfig()
	queue.MaxBytes = 1 << 20 // JetStream reserves MaxBytes of storage per stream
	deployer := functions.NewDeployer(js, catalog, queue)
	for i := range count {
		fn, err := functions.Parse([]byte(fmt.Sprintf("metadata: {name: fn-%d}\nspec: {model: {uri: %s}}\n", i, object)))
		if err == nil {
			_, err = deployer.Deploy(ctx, fn, nil)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	registry := functions.NewRegistry(catalog)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = registry.Run(runCtx) }()
	<-registry.Synced()
	for len(registry.Names()) < count {
		time.Sleep(10 * time.Millisecond)
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	loop, err := New(nc, js, registry, idleScaler{}, DefaultConfig(), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if loop.status, err = events.EnsureScaleBucket(ctx, js); err != nil {
		b.Fatal(err)
	}
	loop.tick(ctx, time.Now()) // the first tick resolves the consumers
	cpuBefore := cpuTime(b)
	b.ResetTimer()
	for b.Loop() {
		loop.tick(ctx, time.Now())
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpuBefore
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/tick")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/tick")
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "MiB-heap-growth")
	runtime.KeepAlive(loop)
}

// storeIrisModel puts the demo model in the store once and returns its object name.
func storeIrisModel(b *testing.B, ctx context.Context, catalog *functions.Catalog) string {
	b.Helper()
	classifier, _, _, err := train.FitFile(ctx, "../deploy/demo/iris.csv", "", train.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	model, err := classifier.ONNX()
	if err != nil {
		b.Fatal(err)
	}
	version, err := catalog.PutModel(ctx, "shared", model, nil)
	if err != nil {
		b.Fatal(err)
	}
	return version.Object
}

// cpuTime is the CPU this process has used: the autoscaler and, embedded in
// it as under sluice up, the nats-server answering its reads.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		b.Fatal(err)
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}
