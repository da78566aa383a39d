package autoscaler

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
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

// BenchmarkTick is what one autoscaler tick costs with 1,000 and 10,000
// functions registered, idle (as most are): one list of every function's
// stream, a decision each, and a consumer read for none; and with 1,000 of
// them busy, each with a request waiting: a consumer read each. It reports the
// wall time and the CPU of one tick (the embedded nats-server answering
// included, as under sluice up) and the heap the autoscaler holds.
// SLUICE_TICK_PROFILE=file writes a CPU profile of the ticks alone.
func BenchmarkTick(b *testing.B) {
	for _, bench := range []struct {
		functions, busy int
	}{{1000, 0}, {1000, 1000}, {10000, 0}} {
		b.Run(fmt.Sprintf("functions=%d/busy=%d", bench.functions, bench.busy), func(b *testing.B) {
			benchmarkTick(b, bench.functions, bench.busy)
		})
	}
}

func benchmarkTick(b *testing.B, count, busy int) {
	_, nc, js := natstest.JetStream(b)
	ctx := context.Background()
	catalog, err := functions.OpenCatalog(ctx, js)
	if err != nil {
		b.Fatal(err)
	}
	object := storeIrisModel(b, ctx, catalog)
	queue := events.DefaultQueueConfig()
	queue.MaxBytes = 64 << 10 // JetStream reserves MaxBytes of storage per stream
	deployer := functions.NewDeployer(js, catalog, queue)
	for i := range count {
		fn, err := functions.Parse([]byte(fmt.Sprintf("metadata: {name: fn-%d}\nspec: {model: {uri: %s}}\n", i, object)))
		if err == nil {
			_, err = deployer.Deploy(ctx, fn, nil)
		}
		if err == nil && i < busy {
			_, err = js.Publish(ctx, events.RequestSubject(fn.Metadata.Name, "1"), []byte("{}"))
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
	loop.tick(ctx, time.Now())                                // the first tick resolves the consumers
	if path := os.Getenv("SLUICE_TICK_PROFILE"); path != "" { // the ticks alone, not the setup
		profile, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer profile.Close()
		if err := pprof.StartCPUProfile(profile); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
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
