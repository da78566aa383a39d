package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/activator"
	"sluice.dev/sluice/autoscaler"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/train"
)

// Under a steady stream of synchronous requests, the function is scaled
// 0 → 3 → 0 → 2 with real worker processes. While it is at zero the requests
// wait in the queue; every request gets the right answer, none is lost.
func TestNoRequestLostWhileScaling(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, nc, js := natstest.JetStream(t)
	catalog, err := functions.OpenCatalog(ctx, js)
	require.NoError(t, err)
	classifier, model := trainIris(t)
	fn, err := functions.Parse([]byte("metadata: {name: iris}\nspec: {model: {path: ./iris.onnx}, timeouts: {request: 60s}}\n"))
	require.NoError(t, err)
	_, err = functions.NewDeployer(js, catalog, events.DefaultQueueConfig()).Deploy(ctx, fn, model)
	require.NoError(t, err)

	registry := functions.NewRegistry(catalog)
	server, err := activator.New(nc, registry, activator.DefaultConfig(), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var background sync.WaitGroup
	background.Add(2)
	go func() { defer background.Done(); _ = registry.Run(ctx) }()
	go func() { defer background.Done(); <-registry.Synced(); _ = server.Run(ctx, listener) }()
	defer background.Wait()
	defer cancel()

	workers := workerScaler(t, srv.ClientURL())
	defer workers.Close()

	url := "http://" + listener.Addr().String() + "/v2/models/iris/infer"
	load := startLoad(t, url, classifier, 4)
	for _, replicas := range []int{0, 3, 0, 2} {
		require.NoError(t, workers.Scale(ctx, "iris", "1", replicas))
		require.Eventually(t, func() bool {
			ready, err := workers.Ready(ctx, "iris", "1")
			return err == nil && ready == replicas
		}, 30*time.Second, 20*time.Millisecond, "replicas never reached %d", replicas)
		time.Sleep(time.Second) // hold this scale under load
	}
	results := load.stop()
	require.Greater(t, len(results), 100, "the load ran")
	wrong := slices.DeleteFunc(slices.Clone(results), func(r string) bool { return r == "" })
	require.Empty(t, wrong, "%d of %d requests failed or were answered wrongly", len(wrong), len(results))
	t.Logf("%d requests, all answered correctly while scaling 0 → 3 → 0 → 2", len(results))
}

func trainIris(t testing.TB) (*train.Classifier, []byte) {
	t.Helper()
	classifier, _, _, err := train.FitFile(context.Background(), "../deploy/demo/iris.csv", "", train.DefaultConfig())
	require.NoError(t, err)
	model, err := classifier.ONNX()
	require.NoError(t, err)
	return classifier, model
}

// workerScaler runs real `sluice worker` processes of the built binary.
func workerScaler(t *testing.T, natsURL string) *autoscaler.ProcessScaler {
	t.Helper()
	cfg := autoscaler.DefaultProcessConfig()
	cfg.StopTimeout = 15 * time.Second
	cfg.Command = func(ctx context.Context, function, revision string) (*exec.Cmd, error) {
		return exec.CommandContext(ctx, binary, "worker", "--function", function, "--revision", revision,
			"--nats-url", natsURL, "--metrics-addr", "127.0.0.1:0", "--drain-timeout", "10s", "--log-level", "warn"), nil
	}
	scaler, err := autoscaler.NewProcessScaler(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return scaler
}

// load sends requests from several goroutines until stopped; each result is
// "" for a correct answer, or what went wrong.
type load struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []string
}

func startLoad(t *testing.T, url string, classifier *train.Classifier, clients int) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for client := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				row := []float32{4.5 + float32((client+i)%30)/10, 3, 1 + float32(i%50)/10, float32(i%25) / 10}
				result := checkOne(url, classifier, row)
				l.mu.Lock()
				l.results = append(l.results, result)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) stop() []string {
	l.cancel()
	l.wg.Wait()
	return l.results
}

// checkOne sends one row and compares the answer with the Go model's.
func checkOne(url string, classifier *train.Classifier, row []float32) string {
	body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{
		"name": "input", "shape": []int{1, 4}, "datatype": "FP32", "data": row,
	}}})
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("%d: %s", resp.StatusCode, answer)
	}
	decoded, err := oip.DecodeInferenceResponse(answer, oip.DefaultLimits())
	if err != nil {
		return err.Error()
	}
	want := classifier.PredictProba(row)
	for _, output := range decoded.Outputs {
		if output.Name != train.ProbabilitiesName {
			continue
		}
		got := output.Data.([]float32)
		for i := range want {
			if diff := got[i] - want[i]; diff > 1e-4 || diff < -1e-4 {
				return fmt.Sprintf("row %v: probabilities %v, want %v", row, got, want)
			}
		}
		return ""
	}
	return "no probabilities in the answer"
}
