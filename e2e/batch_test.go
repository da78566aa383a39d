package e2e

import (
	"bufio"
	"bytes"
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
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/autoscaler"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/batch"
	"sluice.dev/sluice/functions/onnxfile"
	"sluice.dev/sluice/functions/train"
	"sluice.dev/sluice/worker/onnx"
)

// batchPlatform is a nats-server with the iris function deployed on queue
// and replicas real `sluice worker` processes serving it.
type batchPlatform struct {
	srv        *server.Server
	js         jetstream.JetStream
	classifier *train.Classifier
	model      []byte       // the function's ONNX model
	announced  atomic.Int64 // result announcements seen, once counted: one per scored request
}

// deployIris starts a nats-server and deploys the iris function on queue,
// trained from the demo's data: the server, its JetStream, the classifier
// and its model.
func deployIris(tb testing.TB, queue events.QueueConfig) (*server.Server, jetstream.JetStream, *train.Classifier, []byte) {
	tb.Helper()
	srv, _, js := natstest.JetStream(tb)
	catalog, err := functions.OpenCatalog(tb.Context(), js)
	require.NoError(tb, err)
	classifier, model := trainIris(tb)
	fn, err := functions.Parse([]byte("metadata: {name: iris}\nspec: {model: {path: ./iris.onnx}}\n"))
	require.NoError(tb, err)
	_, err = functions.NewDeployer(js, catalog, queue).Deploy(tb.Context(), fn, model)
	require.NoError(tb, err)
	return srv, js, classifier, model
}

func startBatchPlatform(tb testing.TB, queue events.QueueConfig, replicas int) *batchPlatform {
	tb.Helper()
	ctx := context.Background()
	srv, js, classifier, model := deployIris(tb, queue)
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
	return &batchPlatform{srv: srv, js: js, classifier: classifier, model: model}
}

// countAnnounced counts the result announcements from now on. A benchmark
// does not: each would be one more copy of every answer to receive.
func (p *batchPlatform) countAnnounced(tb testing.TB) {
	tb.Helper()
	sub, err := p.js.Conn().Subscribe(events.ResultSubject("iris"), func(*nats.Msg) { p.announced.Add(1) })
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = sub.Unsubscribe() })
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
	platform.countAnnounced(t)
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
	platform.countAnnounced(t)
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
	platform.countAnnounced(t)
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
// client's), two ways in one run, each on the same two cores:
//   - local: what a user would run instead of Sluice, batch.RunLocal: the
//     same reader and writer, ONNX Runtime in this process at the same batch
//     size, two sessions of one thread;
//   - sluice: batch.Run through the queue to two real worker processes;
//
// then the queue alone (batch_queue_test.go), the same chunks through the
// queue and nothing else. It reports each one's rows/s and CPU-seconds per
// million rows (every process summed: this one, with the client and the
// embedded nats-server, and the workers; the workers' share on its own), the
// ratios of sluice to local with the goals, the floor (local plus the queue
// alone) and sluice over it with this design's goal, and the peak RSS of
// this process.
func BenchmarkBatchScoring(b *testing.B) {
	rows := 200_000
	if value := os.Getenv("SLUICE_BATCH_ROWS"); value != "" {
		var err error
		rows, err = strconv.Atoi(value)
		require.NoError(b, err)
	}
	platform := startBatchPlatform(b, events.DefaultQueueConfig(), 2)
	require.NoError(b, onnx.Init(""), "ONNX Runtime is required: run `make deps`")
	signature, err := onnxfile.ReadSignature(platform.model)
	require.NoError(b, err)
	var models []batch.Model
	for range 2 {
		session, err := onnx.Load(platform.model, signature, onnx.DefaultSessionConfig())
		require.NoError(b, err)
		b.Cleanup(func() { _ = session.Close() })
		models = append(models, session)
	}
	dir := b.TempDir()
	var local, sluice, queue batchFigures
	var anchor *queueAnchor
	for i := range b.N {
		b.StopTimer()
		cfg := batch.DefaultConfig()
		cfg.Function = "iris"
		if value := os.Getenv("SLUICE_BATCH_ROWS_PER_REQUEST"); value != "" {
			cfg.RowsPerRequest, err = strconv.Atoi(value)
			require.NoError(b, err)
		}
		cfg.Input = filepath.Join(dir, fmt.Sprintf("rows-%d.csv", i)) // a new batch each time
		writeIrisCSV(b, cfg.Input, rows, nil)
		b.StartTimer()

		cfg.Output = filepath.Join(dir, fmt.Sprintf("local-%d.jsonl", i))
		local.measure(b, rows, func() (batch.Report, error) { return batch.RunLocal(context.Background(), cfg, signature, models) })
		cfg.Output = filepath.Join(dir, fmt.Sprintf("out-%d.jsonl", i))
		var first *firstChunk
		if anchor == nil {
			first = captureFirstChunk(b, platform.js.Conn())
		}
		report := sluice.measure(b, rows, func() (batch.Report, error) { return batch.Run(context.Background(), platform.js, cfg, nil) })
		if anchor == nil {
			b.StopTimer()
			request, answerBytes := first.take(b)
			anchor = startQueueAnchor(b, platform.srv, platform.js, request, answerBytes, 2)
			b.StartTimer()
		}
		queue.measure(b, rows, func() (batch.Report, error) { return anchor.score(context.Background(), rows, report.RowsPerRequest) })
	}
	b.ReportMetric(local.rowsPerSecond(), "local-rows/s")
	b.ReportMetric(local.cpuPerMillion(), "local-CPU-s/Mrows")
	b.ReportMetric(sluice.rowsPerSecond(), "rows/s")
	b.ReportMetric(sluice.cpuPerMillion(), "CPU-s/Mrows")
	b.ReportMetric(perMillion(sluice.children, sluice.rows), "workers-CPU-s/Mrows")
	b.ReportMetric(sluice.cpuPerMillion()/local.cpuPerMillion(), "CPU-ratio(goal<=1.6)")
	b.ReportMetric(sluice.rowsPerSecond()/local.rowsPerSecond(), "rows/s-ratio(goal>=0.6,design>=0.45)")
	b.ReportMetric(queue.cpuPerMillion(), "queue-CPU-s/Mrows")
	b.ReportMetric((local.cpuPerMillion()+queue.cpuPerMillion())/local.cpuPerMillion(), "floor-CPU-ratio")
	b.ReportMetric(sluice.cpuPerMillion()/(local.cpuPerMillion()+queue.cpuPerMillion()), "CPU-over-floor(design<=1.6)")
	b.ReportMetric(peakRSSMiB(b), "peak-RSS-MiB")
}

// batchFigures add up the runs of one way of scoring.
type batchFigures struct {
	rows    int
	elapsed time.Duration
	cpu     time.Duration
	// children is the part of cpu spent by the child processes (the workers).
	children time.Duration
}

// measure runs score, which must score rows rows, and adds its wall time and
// the CPU of this process and its children (the workers) to f.
func (f *batchFigures) measure(tb testing.TB, rows int, score func() (batch.Report, error)) batch.Report {
	tb.Helper()
	self, children := processCPU(tb), childrenCPU(tb)
	report, err := score()
	require.NoError(tb, err)
	require.Equal(tb, rows, report.Scored)
	children = childrenCPU(tb) - children
	f.cpu += processCPU(tb) - self + children
	f.children += children
	f.elapsed += report.Elapsed
	f.rows += rows
	return report
}

func (f batchFigures) rowsPerSecond() float64 { return float64(f.rows) / f.elapsed.Seconds() }
func (f batchFigures) cpuPerMillion() float64 { return perMillion(f.cpu, f.rows) }

func perMillion(cpu time.Duration, rows int) float64 { return cpu.Seconds() / float64(rows) * 1e6 }

// processCPU is the CPU this process has used.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var usage syscall.Rusage
	require.NoError(tb, syscall.Getrusage(syscall.RUSAGE_SELF, &usage))
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// childrenCPU is the CPU the running children of this process have used,
// from /proc (clock ticks of 10 ms).
func childrenCPU(tb testing.TB) time.Duration {
	tb.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(tb, err)
	parent := strconv.Itoa(os.Getpid())
	var ticks int64
	for _, entry := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", entry.Name(), "stat"))
		if err != nil {
			continue // not a process, or gone
		}
		// pid (comm) state ppid ... utime(14) stime(15): comm may hold spaces.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 13 || fields[1] != parent {
			continue
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		ticks += utime + stime
	}
	return time.Duration(ticks) * 10 * time.Millisecond
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
