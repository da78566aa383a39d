package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"sluice.dev/sluice/events/access"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/onnxfile"
	"sluice.dev/sluice/worker/onnx"
)

// benchFlags are the settings of `sluice bench`.
type benchFlags struct {
	model, spec string
	duration    time.Duration
	concurrency []int
	rounds      int
	batches     []int
	libraryPath string
	function    string
	coldStarts  int
	// hopsConsumer, a NATS URL, makes bench the consumer process of the
	// hops anchor (benchHops) instead.
	hopsConsumer string
}

// benchRow is one line of the printed table.
type benchRow struct {
	what          string
	p50, p99      time.Duration
	rate          float64
	unit, comment string
	requests      uint64 // sent, for the load levels
	// rounds are the throughputs of each round of an interleaved level.
	rounds []float64
}

func newBenchCommand() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench --model MODEL.onnx --spec FUNCTION.yaml",
		Short: "Measure ONNX Runtime in-process, then the platform's synchronous predict path under load",
		Long: `bench measures three things and prints them as one table, with each figure over its
anchor and its goal last:
  1. ONNX Runtime in this process: latency and rows/s of one session at each --batches size;
  2. the anchors: a bare Go HTTP server with JSON, and the hops alone (HTTP, a JetStream
     publish, a consumer process that replies and acks; none of the platform's work);
  3. the platform: it starts 'sluice up' as a separate process, deploys --spec, and drives
     POST /v2/models/NAME/infer (one row per request) with a closed-loop load generator
     (vegeta) at each --concurrency for --duration, reporting p50, p99 and requests/s; these
     sync levels and the hops alone at the same concurrency take turns, in --rounds rounds,
     so that each ratio compares the two in the same seconds; then
     asynchronous calls, the memory of 'sluice up', and that of a 'sluice activator' of its
     own (NATS in another process) over three rounds of asynchronous calls; then cold starts, and
     the decision (poke → scale call) of each, alone and again under the sync load.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.hopsConsumer != "" {
				return hopsConsume(cmd.Context(), f.hopsConsumer)
			}
			rows, err := benchRuntime(f)
			if err != nil {
				return err
			}
			platform, err := benchPlatform(cmd.Context(), f, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rows = append(rows, platform...)
			return printBench(cmd.OutOrStdout(), append(rows, benchGoals(rows)...))
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&f.model, "model", "deploy/demo/iris.onnx", "ONNX model for the in-process measurement")
	flags.StringVar(&f.spec, "spec", "deploy/demo/iris.yaml", "Function YAML deployed for the platform measurement")
	flags.DurationVar(&f.duration, "duration", 10*time.Second, "length of each load level")
	flags.IntSliceVar(&f.concurrency, "concurrency", []int{1, 16}, "requests in flight at each load level")
	flags.IntVar(&f.rounds, "rounds", 3, "rounds the sync levels of the hops alone and of the platform take turns in, --duration in all")
	flags.IntSliceVar(&f.batches, "batches", []int{1, 32, 256, 4096, 16384}, "batch sizes for the in-process measurement")
	flags.StringVar(&f.libraryPath, "onnxruntime-lib", "", "path of libonnxruntime.so")
	flags.StringVar(&f.function, "function", "iris", "function name in --spec")
	flags.IntVar(&f.coldStarts, "cold-starts", 5, "cold starts to measure (a copy of the function that scales to zero after 1s)")
	flags.StringVar(&f.hopsConsumer, "hops-consumer", "", "run as the consumer process of the hops anchor, on this NATS URL")
	_ = flags.MarkHidden("hops-consumer")
	return cmd
}

// benchGoals compares the figures of one run with their anchors from the
// same run, and with the goals: the sync overhead over in-process inference
// at batch 1, and the throughputs over a bare Go HTTP server with JSON on the
// same cores, with the load generator.
func benchGoals(rows []benchRow) []benchRow {
	find := func(what string) (benchRow, bool) {
		for _, row := range rows {
			if row.what == what {
				return row, true
			}
		}
		return benchRow{}, false
	}
	var goals []benchRow
	inProcess, okRuntime := find(fmt.Sprintf(runtimeRow, 1))
	sync1, okSync1 := find(atConcurrency(syncRow, 1))
	if okRuntime && okSync1 {
		overhead := benchRow{what: "sync predict overhead over in-process inference (c=1)", p50: sync1.p50 - inProcess.p50, p99: sync1.p99 - inProcess.p99}
		overhead.comment = fmt.Sprintf("goal p50 <= 0.5ms (%.2fx the goal), p99 <= 2ms (%.2fx)", overhead.p50.Seconds()/0.5e-3, overhead.p99.Seconds()/2e-3)
		if hops, ok := find(atConcurrency(hopsSyncRow, 1)); ok {
			overhead.comment += fmt.Sprintf("; the hops alone take %s p50, %s p99 of it; this design's goal p50 <= the hops' + 0.4ms (%.2fx), p99 <= the hops' + 1.5ms (%.2fx)",
				hops.p50.Round(time.Microsecond), hops.p99.Round(time.Microsecond),
				overhead.p50.Seconds()/(hops.p50+400*time.Microsecond).Seconds(), overhead.p99.Seconds()/(hops.p99+1500*time.Microsecond).Seconds())
		}
		goals = append(goals, overhead)
	}
	for _, level := range []struct {
		figure, anchor, anchorName string
		goal                       float64
		// designGoal is the least ratio over the anchor this design is
		// held to, where the goal is beyond what the anchor itself does.
		designGoal float64
	}{
		{syncRow, bareRow, "bare Go HTTP server with JSON", 10000, 0},
		{syncRow, hopsSyncRow, "hops alone", 10000, 0.5},
		{asyncRow, hopsAsyncRow, "hops alone", 8000, 0},
		{asyncRow, hopsRecordsRow, "hops alone with the async records", 8000, 0.5},
	} {
		row, ok := find(atConcurrency(level.figure, 16))
		anchor, okAnchor := find(atConcurrency(level.anchor, 16))
		if !ok || !okAnchor {
			continue
		}
		comment := fmt.Sprintf("goal >= %.0f req/s: %.2fx the goal; the anchor does %.2fx the goal", level.goal, row.rate/level.goal, anchor.rate/level.goal)
		if level.designGoal > 0 {
			comment += fmt.Sprintf("; this design's goal >= %.2fx the anchor: %.2fx it", level.designGoal, row.rate/anchor.rate/level.designGoal)
		}
		if len(row.rounds) > 1 && len(row.rounds) == len(anchor.rounds) {
			comment += "; round by round"
			for i := range row.rounds {
				comment += fmt.Sprintf(" %.2fx", row.rounds[i]/anchor.rounds[i])
			}
		}
		goals = append(goals, benchRow{what: fmt.Sprintf("— %s, over %s", row.what, level.anchorName), rate: row.rate / anchor.rate, unit: "x", comment: comment})
	}
	return goals
}

// The rows benchGoals reads, each at a concurrency (atConcurrency) but the
// in-process one, at a batch size.
const (
	runtimeRow     = "ONNX Runtime in-process, batch %d"
	bareRow        = "bare Go HTTP server with JSON (the throughputs' anchor)"
	hopsSyncRow    = "hops alone: HTTP, JetStream publish, pull in another process, reply, ack (the sync anchor)"
	hopsAsyncRow   = "hops alone: HTTP, JetStream publish, 202 (the async anchor)"
	hopsRecordsRow = "hops alone with the async records: pending record, publish, 202; result record (the async anchor with records)"
	syncRow        = "sync predict over HTTP, 1 row"
	asyncRow       = "async predict (202), 1 row"
)

// atConcurrency names the row of what at a concurrency.
func atConcurrency(what string, concurrency int) string {
	return fmt.Sprintf("%s, concurrency %d", what, concurrency)
}

// benchBareHTTP is the anchor of the platform's throughputs: a Go HTTP
// server that decodes the same JSON body and answers a small JSON object, on
// the same cores as the load generator, at concurrency.
func benchBareHTTP(concurrency int, duration time.Duration) benchRow {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var request map[string]any
		if err := json.NewDecoder(r.Body).Decode(&request); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"model_name": "iris", "outputs": []any{map[string]any{"name": "label", "data": []int{0}}}})
	}))
	defer server.Close()
	return attack(postJSON(server.URL), concurrency, duration, atConcurrency(bareRow, concurrency))
}

// irisBody is the body of every benchmarked prediction: one Iris row.
const irisBody = `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`

// postJSON is a POST of irisBody to url.
func postJSON(url string) vegeta.Target {
	return vegeta.Target{Method: http.MethodPost, URL: url, Body: []byte(irisBody), Header: http.Header{"Content-Type": {"application/json"}}}
}

// preferAsync is target asking for an asynchronous answer (202).
func preferAsync(target vegeta.Target) vegeta.Target {
	target.Header = target.Header.Clone()
	target.Header.Set("Prefer", "respond-async")
	return target
}

// benchRuntime runs the model in this process at each batch size for a
// fixed time and reports latency per run and rows per second.
func benchRuntime(f benchFlags) ([]benchRow, error) {
	if err := onnx.Init(f.libraryPath); err != nil {
		return nil, err
	}
	model, err := os.ReadFile(f.model)
	if err != nil {
		return nil, err
	}
	signature, err := onnxfile.ReadSignature(model)
	if err != nil {
		return nil, err
	}
	session, err := onnx.Load(model, signature, onnx.DefaultSessionConfig())
	if err != nil {
		return nil, err
	}
	defer session.Close()
	features := signature.Inputs[0].Shape[1]
	var rows []benchRow
	for _, batch := range f.batches {
		input, err := randomInput(signature.Inputs[0].Name, batch, features)
		if err != nil {
			return nil, err
		}
		var latencies vegeta.LatencyMetrics
		runs := 0
		start := time.Now()
		for time.Since(start) < min(f.duration/2, 3*time.Second) {
			begin := time.Now()
			if _, err := session.Run([]oip.Tensor{input}); err != nil {
				return nil, err
			}
			latencies.Add(time.Since(begin))
			runs++
		}
		elapsed := time.Since(start)
		rows = append(rows, benchRow{
			what: fmt.Sprintf(runtimeRow, batch),
			p50:  latencies.Quantile(0.5), p99: latencies.Quantile(0.99),
			rate: float64(runs*batch) / elapsed.Seconds(), unit: "rows/s",
		})
	}
	return rows, nil
}

func randomInput(name string, batch int, features int64) (oip.Tensor, error) {
	data := make([]float32, int64(batch)*features)
	for i := range data {
		data[i] = 1 + 6*rand.Float32()
	}
	return oip.NewTensor(name, []int64{int64(batch), features}, data)
}

// benchPlatform starts `sluice up` in its own process and loads it at each concurrency.
func benchPlatform(ctx context.Context, f benchFlags, logs io.Writer) ([]benchRow, error) {
	spec, err := writeSpecCopy(f, func(*functions.Function) {})
	if err != nil {
		return nil, err
	}
	defer os.Remove(spec)
	coldSpec, err := writeSpecCopy(f, coldStarts)
	if err != nil {
		return nil, err
	}
	defer os.Remove(coldSpec)
	captured := &lockedBuffer{}
	natsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dataDir)
	url, pid, stop, err := startPlatform(ctx, f, captured, dataDir, spec, coldSpec, natsAddr)
	if err != nil {
		fmt.Fprint(logs, captured.String())
		return nil, err
	}
	defer stop()
	target := postJSON(url + "/v2/models/" + f.function + "/infer")
	concurrency := f.concurrency[len(f.concurrency)-1]
	rows := []benchRow{benchBareHTTP(concurrency, f.duration)}
	err = withHops(ctx, func(hops hopsAnchor) {
		var levels []level
		for _, c := range f.concurrency {
			levels = append(levels, level{hops.sync, c, atConcurrency(hopsSyncRow, c)}, level{target, c, atConcurrency(syncRow, c)})
		}
		rows = append(rows, interleaved(levels, f.rounds, f.duration)...)
		rows = append(rows, peakRSS(pid, "sluice up peak RSS after the sync levels"))
		rows = append(rows, attack(hops.async, concurrency, f.duration, atConcurrency(hopsAsyncRow, concurrency)),
			attack(hops.records, concurrency, f.duration, atConcurrency(hopsRecordsRow, concurrency)),
			attack(preferAsync(target), concurrency, f.duration, atConcurrency(asyncRow, concurrency)))
	})
	if err != nil {
		return nil, err
	}
	rows = append(rows, peakRSS(pid, "sluice up peak RSS after the async level too"))
	activatorRows, err := benchActivatorMemory(ctx, f, natsAddr, dataDir, captured)
	if err != nil {
		fmt.Fprint(logs, captured.String())
		return nil, err
	}
	rows = append(rows, activatorRows...)
	cold, err := benchColdStarts(ctx, url, f.function+coldSuffix, f.coldStarts, captured, "")
	if err != nil {
		fmt.Fprint(logs, captured.String())
		return nil, err
	}
	rows = append(rows, cold...)
	// The same again while the sync level loads the platform's other function.
	loadEnds := make(chan struct{})
	loaded := make(chan benchRow, 1)
	what := atConcurrency(syncRow, concurrency) + ", during the cold starts under load"
	go func() { loaded <- attackUntil(target, concurrency, time.Hour, loadEnds, what) }()
	cold, err = benchColdStarts(ctx, url, f.function+coldSuffix, f.coldStarts, captured, fmt.Sprintf(" under sync load (concurrency %d on another function)", concurrency))
	close(loadEnds)
	load := <-loaded
	if err != nil {
		fmt.Fprint(logs, captured.String())
		return nil, err
	}
	return append(append(rows, cold...), load), nil
}

// startPlatform runs `sluice up` on free ports with the data directory
// dataDir and waits until the function answers.
func startPlatform(ctx context.Context, f benchFlags, logs io.Writer, dataDir, spec, coldSpec, natsAddr string) (string, int, func(), error) {
	_, natsPort, err := net.SplitHostPort(natsAddr)
	if err != nil {
		return "", 0, nil, err
	}
	url, pid, stop, err := startSluice(ctx, f, logs, "up", "--data-dir", dataDir, "--nats-port", natsPort, "--grpc-addr", "127.0.0.1:0",
		"--deploy", spec, "--deploy", coldSpec)
	if err != nil {
		return "", 0, nil, err
	}
	return url, pid, stop, nil
}

// startSluice runs this executable with args and a free --addr, and waits
// until f's function answers there.
func startSluice(ctx context.Context, f benchFlags, logs io.Writer, args ...string) (string, int, func(), error) {
	executable, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return "", 0, nil, err
	}
	cmd := exec.CommandContext(ctx, executable, append(args, "--addr", addr, "--log-format", "json")...)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	url := "http://" + addr
	if err := waitForFunction(ctx, url, f.function); err != nil {
		stop()
		return "", 0, nil, err
	}
	return url, cmd.Process.Pid, stop, nil
}

// benchActivatorMemory starts `sluice activator` in a process of its own
// against the platform's NATS server, drives three rounds of asynchronous requests
// through it, and reports its resident set after each: the activator keeps
// nothing per request once it is queued, so the figure stays flat. It logs
// in as an activator, with a user signed by the platform's keys in dataDir.
func benchActivatorMemory(ctx context.Context, f benchFlags, natsAddr, dataDir string, logs io.Writer) ([]benchRow, error) {
	natsDir := filepath.Join(dataDir, "nats")
	authority, err := access.Load(natsDir)
	if err != nil {
		return nil, err
	}
	creds := filepath.Join(natsDir, "activator.creds")
	if err := authority.WriteCredentials(creds, "activator", access.Activator()); err != nil {
		return nil, err
	}
	url, pid, stop, err := startSluice(ctx, f, logs, "activator", "--nats-url", "nats://"+natsAddr, "--nats-creds", creds, "--grpc-addr", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer stop()
	async := preferAsync(postJSON(url + "/v2/models/" + f.function + "/infer"))
	concurrency := f.concurrency[len(f.concurrency)-1]
	var rows []benchRow
	total := uint64(0)
	for round := 1; round <= 3; round++ {
		row := attack(async, concurrency, f.duration/2, fmt.Sprintf("sluice activator alone, async, concurrency %d, round %d", concurrency, round))
		total += row.requests
		row.comment += fmt.Sprintf("; after %d requests: %s", total, rss(pid))
		rows = append(rows, row)
	}
	return rows, nil
}

func freeAddr() (string, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer listener.Close()
	return listener.Addr().String(), nil
}

// waitForFunction polls until one prediction succeeds, so the worker is warm.
func waitForFunction(ctx context.Context, url, function string) error {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Post(url+"/v2/models/"+function+"/infer", "application/json", strings.NewReader(irisBody))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("function %s did not answer at %s within 60s", function, url)
}

func printBench(out io.Writer, rows []benchRow) error {
	table := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "MEASURE\tP50\tP99\tTHROUGHPUT\tNOTE")
	for _, row := range rows {
		rate := "-"
		switch {
		case row.unit == "x":
			rate = fmt.Sprintf("%.2fx", row.rate)
		case row.rate > 0:
			rate = fmt.Sprintf("%.0f %s", row.rate, row.unit)
		}
		p99 := "-"
		if row.p99 > 0 {
			p99 = row.p99.Round(time.Microsecond).String()
		}
		p50 := "-"
		if row.p50 != 0 {
			p50 = row.p50.Round(time.Microsecond).String()
		}
		fmt.Fprintf(table, "%s\t%s\t%s\t%s\t%s\n", row.what, p50, p99, rate, row.comment)
	}
	return table.Flush()
}

// attack drives target with a closed loop of concurrency clients for duration.
func attack(target vegeta.Target, concurrency int, duration time.Duration, what string) benchRow {
	return attackUntil(target, concurrency, duration, nil, what)
}

// attackUntil is attack that also ends when stop, if not nil, is closed.
func attackUntil(target vegeta.Target, concurrency int, duration time.Duration, stop <-chan struct{}, what string) benchRow {
	var metrics vegeta.Metrics
	attackInto(target, concurrency, duration, stop, what, &metrics)
	return rowOf(&metrics, what)
}

// attackInto drives target with a closed loop of concurrency clients for
// duration, or until stop, if not nil, is closed, and adds each result to
// each of into.
func attackInto(target vegeta.Target, concurrency int, duration time.Duration, stop <-chan struct{}, what string, into ...*vegeta.Metrics) {
	attacker := vegeta.NewAttacker(vegeta.Workers(uint64(concurrency)), vegeta.MaxWorkers(uint64(concurrency)),
		vegeta.KeepAlive(true), vegeta.Connections(concurrency), vegeta.Timeout(30*time.Second))
	if stop != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-stop:
				attacker.Stop()
			case <-done:
			}
		}()
	}
	for result := range attacker.Attack(vegeta.NewStaticTargeter(target), vegeta.Rate{}, duration, what) {
		for _, metrics := range into {
			metrics.Add(result)
		}
	}
}

// rowOf is the row of the results in metrics.
func rowOf(metrics *vegeta.Metrics, what string) benchRow {
	metrics.Close()
	comment := fmt.Sprintf("%d requests, %.2f%% ok", metrics.Requests, 100*metrics.Success)
	if len(metrics.Errors) > 0 {
		comment += ", errors: " + strings.Join(metrics.Errors[:min(2, len(metrics.Errors))], "; ")
	}
	return benchRow{what: what, p50: metrics.Latencies.P50, p99: metrics.Latencies.P99,
		rate: metrics.Throughput, unit: "req/s", comment: comment, requests: metrics.Requests}
}

// level is one load level: concurrency clients on target, reported as what.
type level struct {
	target      vegeta.Target
	concurrency int
	what        string
}

// interleaved drives each level in turn for duration/rounds, rounds times,
// and reports each level over all its rounds, with each round's throughput:
// a ratio of two levels then compares them on the machine as it was in the
// same seconds, not minutes apart (this machine's speed drifts by a quarter).
func interleaved(levels []level, rounds int, duration time.Duration) []benchRow {
	rounds = max(rounds, 1)
	all := make([]vegeta.Metrics, len(levels))
	throughputs := make([][]float64, len(levels))
	ok, seconds := make([]float64, len(levels)), make([]float64, len(levels))
	for range rounds {
		for i, level := range levels {
			var round vegeta.Metrics
			attackInto(level.target, level.concurrency, duration/time.Duration(rounds), nil, level.what, &round, &all[i])
			round.Close()
			throughputs[i] = append(throughputs[i], round.Throughput)
			ok[i] += round.Success * float64(round.Requests)
			seconds[i] += (round.Duration + round.Wait).Seconds() // what vegeta's throughput divides by
		}
	}
	rows := make([]benchRow, len(levels))
	for i, level := range levels {
		rows[i] = rowOf(&all[i], level.what)
		rows[i].rate, rows[i].rounds = ok[i]/seconds[i], throughputs[i] // not over the other levels' turns
	}
	return rows
}

// peakRSS reads the resident set of `sluice up`, process pid.
func peakRSS(pid int, what string) benchRow {
	return benchRow{what: what, comment: rss(pid) + " (activator, embedded NATS, autoscaler)"}
}

// rss reads the resident set (VmRSS) and its peak (VmHWM) of process pid.
func rss(pid int) string {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	fields := map[string]string{}
	for line := range strings.SplitSeq(string(status), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok {
			fields[name] = strings.TrimSpace(value)
		}
	}
	if fields["VmHWM"] == "" {
		return "no VmHWM in /proc"
	}
	return fmt.Sprintf("RSS %s, peak %s", fields["VmRSS"], fields["VmHWM"])
}
