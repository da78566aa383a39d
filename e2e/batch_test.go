package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/autoscaler"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/batch"
	"sluice.dev/sluice/functions/train"
)

// batchPlatform is a nats-server with the iris function deployed on queue
// and replicas real `sluice worker` processes serving it.
type batchPlatform struct {
	js         jetstream.JetStream
	classifier *train.Classifier
	announced  *atomic.Int64 // result announcements seen: one per scored request
}

func startBatchPlatform(tb testing.TB, queue events.QueueConfig, replicas int) *batchPlatform {
	tb.Helper()
	ctx := context.Background()
	srv, _, js := natstest.JetStream(tb)
	catalog, err := functions.OpenCatalog(ctx, js)
	require.NoError(tb, err)
	classifier, model := trainIris(tb)
	fn, err := functions.Parse([]byte("metadata: {name: iris}\nspec: {model: {path: ./iris.onnx}}\n"))
	require.NoError(tb, err)
	_, err = functions.NewDeployer(js, catalog, queue).Deploy(ctx, fn, model)
	require.NoError(tb, err)
	announced := new(atomic.Int64)
	sub, err := js.Conn().Subscribe(events.ResultSubject("iris"), func(*nats.Msg) { announced.Add(1) })
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = sub.Unsubscribe() })

	cfg := autoscaler.DefaultProcessConfig()
	cfg.StopTimeout = 15 * time.Second
	cfg.Command = func(ctx context.Context, function, revision string) (*exec.Cmd, error) {
		return exec.CommandContext(ctx, binary, "worker", "--function", function, "--revision", revision,
			"--nats-url", srv.ClientURL(), "--metrics-addr", "127.0.0.1:0", "--drain-timeout", "10s", "--log-level", "warn"), nil
	}
	workers, err := autoscaler.NewProcessScaler(cfg, slog.New(slog.DiscardHandler))
	require.NoError(tb, err)
	tb.Cleanup(workers.Close)
	require.NoError(tb, workers.Scale(ctx, "iris", "1", replicas))
	require.Eventually(tb, func() bool {
		ready, err := workers.Ready(ctx, "iris", "1")
		return err == nil && ready == replicas
	}, 60*time.Second, 20*time.Millisecond, "workers never became ready")
	return &batchPlatform{js: js, classifier: classifier, announced: announced}
}

// scored is how many requests the workers have scored and recorded, once
// the announcements of want of them have come (or 10 s have passed).
func (p *batchPlatform) scored(tb testing.TB, want int) int64 {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.announced.Load() < int64(want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a duplicate would come now
	return p.announced.Load()
}

// irisRow is a deterministic flower-like row.
func irisRow(i int) []float32 {
	return []float32{4.3 + float32(i%36)/10, 2 + float32(i%24)/10, 1 + float32(i%59)/10, 0.1 + float32(i%24)/10}
}

// writeIrisCSV writes rows rows with an id column; the rows of bad are
// broken. Row i is on line i+2.
func writeIrisCSV(tb testing.TB, path string, rows int, bad map[int]string) {
	tb.Helper()
	file, err := os.Create(path)
	require.NoError(tb, err)
	w := bufio.NewWriter(file)
	fmt.Fprintln(w, "id,sepal_length,sepal_width,petal_length,petal_width")
	for i := range rows {
		if line, ok := bad[i]; ok {
			fmt.Fprintln(w, line)
			continue
		}
		r := irisRow(i)
		fmt.Fprintf(w, "r%d,%g,%g,%g,%g\n", i, r[0], r[1], r[2], r[3])
	}
	require.NoError(tb, w.Flush())
	require.NoError(tb, file.Close())
}

// outputLine is one line of a batch output.
type outputLine struct {
	Row     int                        `json:"row"`
	ID      string                     `json:"id"`
	Line    int                        `json:"line"`
	Error   string                     `json:"error"`
	Outputs map[string]json.RawMessage `json:"outputs"`
}

// checkBatchOutput checks one line per row, in order, bad rows as errors
// with their line numbers and every good row's probabilities against the Go model.
func checkBatchOutput(t *testing.T, path string, rows int, bad map[int]string, classifier *train.Classifier) {
	t.Helper()
	file, err := os.Open(path)
	require.NoError(t, err)
	defer file.Close()
	scanner := bufio.NewScanner(file)
	count := 0
	for ; scanner.Scan(); count++ {
		var line outputLine
		require.NoError(t, json.Unmarshal(scanner.Bytes(), &line), "line %d: %s", count+1, scanner.Text())
		require.Equal(t, count, line.Row, "output out of order")
		if _, isBad := bad[count]; isBad {
			require.NotEmpty(t, line.Error, "row %d", count)
			require.Equal(t, count+2, line.Line, "row %d", count)
			continue
		}
		require.Empty(t, line.Error, "row %d", count)
		require.Equal(t, "r"+strconv.Itoa(count), line.ID)
		var got []float32
		require.NoError(t, json.Unmarshal(line.Outputs[train.ProbabilitiesName], &got), "row %d", count)
		want := classifier.PredictProba(irisRow(count))
		require.InDeltaSlice(t, want, got, 1e-4, "row %d", count)
	}
	require.NoError(t, scanner.Err())
	require.Equal(t, rows, count, "one output line per input row")
}

func TestBatchScoresEveryRowInOrder(t *testing.T) {
	platform := startBatchPlatform(t, events.DefaultQueueConfig(), 1)
	dir := t.TempDir()
	bad := map[int]string{17: "r17,5.1,abc,1.4,0.2", 4000: "r4000,5.1,3.5", 9999: `r9999,"5.1,3.5,1.4,0.2`}
	const rows = 10_000
	writeIrisCSV(t, filepath.Join(dir, "rows.csv"), rows, bad)
	cfg := batch.DefaultConfig()
	cfg.Function, cfg.Input, cfg.Output = "iris", filepath.Join(dir, "rows.csv"), filepath.Join(dir, "out.jsonl")
	var errorLines strings.Builder
	cfg.Errors = &errorLines
	report, err := batch.Run(context.Background(), platform.js, cfg, nil)
	require.NoError(t, err)
	require.Equal(t, rows, report.Rows)
	require.Equal(t, rows-len(bad), report.Scored)
	require.Equal(t, len(bad), report.Failed)
	for _, line := range []int{19, 4002, 10001} {
		require.Contains(t, errorLines.String(), fmt.Sprintf("rows.csv:%d:", line))
	}
	checkBatchOutput(t, cfg.Output, rows, bad, platform.classifier)
	require.EqualValues(t, report.Requests, platform.scored(t, report.Requests))
	t.Logf("%d rows in %s (%d requests): %s", rows, report.Elapsed, report.Requests, errorLines.String())
}

// A batch cancelled halfway, with a torn last line as a crash leaves, is
// resumed by running it again: the output ends complete and in order, and
// every request is scored exactly once.
func TestBatchResumesAfterInterruption(t *testing.T) {
	platform := startBatchPlatform(t, events.DefaultQueueConfig(), 1)
	dir := t.TempDir()
	const rows, perRequest = 10_000, 100
	writeIrisCSV(t, filepath.Join(dir, "rows.csv"), rows, nil)
	cfg := batch.DefaultConfig()
	cfg.Function, cfg.Input, cfg.Output = "iris", filepath.Join(dir, "rows.csv"), filepath.Join(dir, "out.jsonl")
	cfg.RowsPerRequest = perRequest

	ctx, cancel := context.WithCancel(context.Background())
	written := 0
	first, err := batch.Run(ctx, platform.js, cfg, func(n int) {
		if written += n; written >= rows/2 {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, first.Written, rows)
	output, err := os.OpenFile(cfg.Output, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = output.WriteString(`{"row":` + strconv.Itoa(first.Written) + `,"id":"r`) // torn by a crash
	require.NoError(t, err)
	require.NoError(t, output.Close())

	second, err := batch.Run(context.Background(), platform.js, cfg, nil)
	require.NoError(t, err)
	require.Equal(t, first.BatchID, second.BatchID)
	require.Equal(t, first.Written, second.Skipped)
	require.Equal(t, rows, second.Skipped+second.Written)
	checkBatchOutput(t, cfg.Output, rows, nil, platform.classifier)
	require.EqualValues(t, rows/perRequest, platform.scored(t, rows/perRequest), "every request scored exactly once")
	t.Logf("first run: %d rows, %d requests; second: %d skipped, %d written, %d requests, %d from the results bucket",
		first.Written, first.Requests, second.Skipped, second.Written, second.Requests, second.FromBucket)
}

// When the function's queue holds 4 requests at most, the client waits for
// room and retries instead of failing.
func TestBatchWaitsForAFullQueue(t *testing.T) {
	queue := events.DefaultQueueConfig()
	queue.MaxMsgs = 4
	platform := startBatchPlatform(t, queue, 1)
	dir := t.TempDir()
	const rows, perRequest = 3_000, 20
	writeIrisCSV(t, filepath.Join(dir, "rows.csv"), rows, nil)
	cfg := batch.DefaultConfig()
	cfg.Function, cfg.Input, cfg.Output = "iris", filepath.Join(dir, "rows.csv"), filepath.Join(dir, "out.jsonl")
	cfg.RowsPerRequest, cfg.MaxBackoff = perRequest, 50*time.Millisecond
	report, err := batch.Run(context.Background(), platform.js, cfg, nil)
	require.NoError(t, err)
	require.Positive(t, report.QueueFull, "the queue never refused a request")
	checkBatchOutput(t, cfg.Output, rows, nil, platform.classifier)
	require.EqualValues(t, rows/perRequest, platform.scored(t, rows/perRequest))
	t.Logf("%d publishes refused while the queue was full; %d rows in %s", report.QueueFull, rows, report.Elapsed)
}

// BenchmarkBatchScoring scores SLUICE_BATCH_ROWS rows (default 200000) of
// the Iris demo, SLUICE_BATCH_ROWS_PER_REQUEST to a request (default: the
// client's), through two real worker processes, and reports rows/s and the
// client's peak RSS.
func BenchmarkBatchScoring(b *testing.B) {
	rows := 200_000
	if value := os.Getenv("SLUICE_BATCH_ROWS"); value != "" {
		var err error
		rows, err = strconv.Atoi(value)
		require.NoError(b, err)
	}
	platform := startBatchPlatform(b, events.DefaultQueueConfig(), 2)
	dir := b.TempDir()
	var elapsed time.Duration
	for i := range b.N {
		b.StopTimer()
		cfg := batch.DefaultConfig()
		cfg.Function = "iris"
		if value := os.Getenv("SLUICE_BATCH_ROWS_PER_REQUEST"); value != "" {
			var err error
			cfg.RowsPerRequest, err = strconv.Atoi(value)
			require.NoError(b, err)
		}
		cfg.Input = filepath.Join(dir, fmt.Sprintf("rows-%d.csv", i)) // a new batch each time
		cfg.Output = filepath.Join(dir, fmt.Sprintf("out-%d.jsonl", i))
		writeIrisCSV(b, cfg.Input, rows, nil)
		b.StartTimer()
		report, err := batch.Run(context.Background(), platform.js, cfg, nil)
		require.NoError(b, err)
		require.Equal(b, rows, report.Scored)
		elapsed += report.Elapsed
	}
	b.ReportMetric(float64(rows*b.N)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(peakRSSMiB(b), "peak-RSS-MiB")
}

// peakRSSMiB is this process's peak resident set (VmHWM), in MiB.
func peakRSSMiB(tb testing.TB) float64 {
	tb.Helper()
	status, err := os.ReadFile("/proc/self/status")
	require.NoError(tb, err)
	for line := range strings.SplitSeq(string(status), "\n") {
		if value, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
			require.NoError(tb, err)
			return kib / 1024
		}
	}
	tb.Fatal("no VmHWM in /proc/self/status")
	return 0
}
