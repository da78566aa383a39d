package embedded_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events/embedded"
)

// BenchmarkSyncAlways is what durability costs: acknowledged publishes per
// second of 1 KiB requests to a file-storage work queue, 64 in flight, with
// JetStream's default sync (every 2 minutes: the anchor) and with
// sync_interval always, which deploy/base uses. The ratio goes in the
// README's table.
func BenchmarkSyncAlways(b *testing.B) {
	rates := map[bool]float64{}
	for _, always := range []bool{false, true} {
		b.Run(fmt.Sprintf("always=%t", always), func(b *testing.B) {
			rates[always] = publishRate(b, always)
			b.ReportMetric(rates[always], "msgs/s")
		})
	}
	if rates[false] > 0 && rates[true] > 0 {
		b.Logf("sync_interval always: %.0f msgs/s, default: %.0f msgs/s, ratio %.2f", rates[true], rates[false], rates[true]/rates[false])
	}
}

func publishRate(b *testing.B, always bool) float64 {
	cfg := embedded.DefaultConfig()
	cfg.Port, cfg.StoreDir, cfg.SyncAlways = -1, b.TempDir(), always
	srv, err := embedded.Start(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(64))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "Q", Subjects: []string{"q"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 1024)
	const n = 20_000
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		for range n {
			if _, err := js.PublishAsync("q", payload); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publishes not acknowledged within a minute")
		}
	}
	return float64(n*b.N) / time.Since(start).Seconds()
}
