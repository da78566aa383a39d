package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"sluice.dev/sluice/functions"
)

// coldSuffix names the copy of the benchmarked function that measures cold starts.
const coldSuffix = "-cold"

// writeSpecCopy writes a copy of --spec, changed by change, with the model
// path made absolute and without retraining or rollout: the benchmarks
// measure serving, not the prediction log that feedback needs.
func writeSpecCopy(f benchFlags, change func(*functions.Function)) (string, error) {
	data, err := os.ReadFile(f.spec)
	if err != nil {
		return "", err
	}
	fn, err := functions.Parse(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", f.spec, err)
	}
	fn.Spec.Retrain, fn.Spec.Rollout = nil, nil
	change(fn)
	if path := fn.Spec.Model.Path; path != "" && !filepath.IsAbs(path) {
		if fn.Spec.Model.Path, err = filepath.Abs(filepath.Join(filepath.Dir(f.spec), path)); err != nil {
			return "", err
		}
	}
	out, err := json.Marshal(fn) // JSON is YAML
	if err != nil {
		return "", err
	}
	file, err := os.CreateTemp("", "sluice-bench-*.yaml")
	if err != nil {
		return "", err
	}
	defer file.Close()
	_, err = file.Write(out)
	return file.Name(), err
}

// coldStarts names the copy of the benchmarked function that measures cold
// starts, and scales to zero one second after its last request.
func coldStarts(fn *functions.Function) {
	fn.Metadata.Name += coldSuffix
	fn.Spec.Scaling.MinReplicas = 0
	fn.Spec.Scaling.ScaleToZeroAfter.Duration = time.Second
}

// benchColdStarts waits, each time, until the function is at zero, then times
// one request: arrival at zero → answer. The workers' logs give the breakdown.
func benchColdStarts(ctx context.Context, url, function string, samples int, logs *lockedBuffer) ([]benchRow, error) {
	if samples < 1 {
		return nil, nil
	}
	var latencies []time.Duration
	for range samples {
		if err := waitAtZero(ctx, url, function); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := waitForFunction(ctx, url, function); err != nil {
			return nil, err
		}
		latencies = append(latencies, time.Since(start))
	}
	slices.Sort(latencies)
	breakdown := startupBreakdown(logs.String(), function)
	return []benchRow{
		{what: fmt.Sprintf("cold start: request at zero → answer (%d samples, p50 and max)", samples),
			p50: latencies[len(latencies)/2], p99: latencies[len(latencies)-1], comment: "goal < 1s; " + breakdown},
		{what: "poke → scale call (mean, from sluice_autoscaler_poke_to_scale_seconds)",
			p50: pokeToScale(url), comment: "goal < 50ms"},
	}, nil
}

// waitAtZero polls the platform's metrics until the function has no replica.
func waitAtZero(ctx context.Context, url, function string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		desired, okDesired := metricValue(url, "sluice_desired_replicas", function)
		ready, okReady := metricValue(url, "sluice_ready_replicas", function)
		if okDesired && okReady && desired == 0 && ready == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("function %s did not scale to zero within 30s", function)
}

// metricValue reads one series of the platform's /metrics for a function.
func metricValue(url, name, function string) (float64, bool) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		line := scanner.Text()
		labelled := strings.HasPrefix(line, name+"{") && strings.Contains(line, `function="`+function+`"`)
		if labelled || (function == "" && strings.HasPrefix(line, name+" ")) {
			var value float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &value); err == nil {
				return value, true
			}
		}
	}
	return 0, false
}

// pokeToScale is the mean of the poke-to-scale histogram.
func pokeToScale(url string) time.Duration {
	sum, okSum := metricValue(url, "sluice_autoscaler_poke_to_scale_seconds_sum", "")
	count, okCount := metricValue(url, "sluice_autoscaler_poke_to_scale_seconds_count", "")
	if !okSum || !okCount || count == 0 {
		return 0
	}
	return time.Duration(sum / count * float64(time.Second))
}

// startupBreakdown summarises the workers' own account of their starts: the
// median of each phase, from their JSON log lines.
func startupBreakdown(logs, function string) string {
	phases := map[string][]float64{}
	for _, line := range strings.Split(logs, "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) != nil || entry["function"] != function {
			continue
		}
		for _, field := range []string{"init_ms", "model_fetch_ms", "session_ms", "startup_ms"} {
			if value, ok := entry[field].(float64); ok {
				phases[field] = append(phases[field], value)
			}
		}
	}
	median := func(values []float64) float64 {
		if len(values) == 0 {
			return 0
		}
		slices.Sort(values)
		return values[len(values)/2]
	}
	return fmt.Sprintf("worker medians: process start to ONNX Runtime + NATS ready %.0fms, model fetch %.0fms, session %.0fms, ready at %.0fms",
		median(phases["init_ms"]), median(phases["model_fetch_ms"]), median(phases["session_ms"]), median(phases["startup_ms"]))
}

// lockedBuffer collects a child process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

var _ io.Writer = (*lockedBuffer)(nil)

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
