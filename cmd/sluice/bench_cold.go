package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

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
// one request: arrival at zero → answer. The workers' logs give the
// breakdown, the autoscaler's histogram the decisions of these samples:
// poke → scale call. when says under what the samples were taken.
func benchColdStarts(ctx context.Context, url, function string, samples int, logs *lockedBuffer, when string) ([]benchRow, error) {
	if samples < 1 {
		return nil, nil
	}
	before, err := pokeHistogram(url)
	if err != nil {
		return nil, err
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
	after, err := pokeHistogram(url)
	if err != nil {
		return nil, err
	}
	slices.Sort(latencies)
	breakdown := startupBreakdown(logs.String(), function)
	mean, p99 := decisionsSince(before, after)
	return []benchRow{
		{what: fmt.Sprintf("cold start%s: request at zero → answer (%d samples, p50 and max)", when, samples),
			p50: latencies[len(latencies)/2], p99: latencies[len(latencies)-1], comment: "goal < 1s; " + breakdown},
		{what: fmt.Sprintf("decision%s: poke → scale call (mean; p99 at most, from the histogram's buckets)", when),
			p50: mean, p99: p99, comment: "goal p99 < 50ms"},
	}, nil
}

// pokeToScale is the name of the autoscaler's histogram of its decisions.
const pokeToScale = "sluice_autoscaler_poke_to_scale_seconds"

// pokeHistogram reads the autoscaler's decisions histogram from url's /metrics.
func pokeHistogram(url string) (*dto.Histogram, error) {
	families, err := scrape(url)
	if err != nil {
		return nil, err
	}
	for _, metric := range families[pokeToScale].GetMetric() {
		return metric.GetHistogram(), nil
	}
	return nil, fmt.Errorf("%s/metrics has no %s", url, pokeToScale)
}

// decisionsSince is the mean of the observations h holds that before did
// not, and the upper bound of the bucket that holds their 99th percentile
// (the largest duration when only +Inf does).
func decisionsSince(before, h *dto.Histogram) (mean, p99 time.Duration) {
	count := float64(h.GetSampleCount() - before.GetSampleCount())
	if count <= 0 {
		return 0, 0
	}
	p99 = time.Duration(math.MaxInt64)
	for i, bucket := range h.GetBucket() { // the same bounds, in order, in both
		if float64(bucket.GetCumulativeCount()-before.GetBucket()[i].GetCumulativeCount()) >= 0.99*count && !math.IsInf(bucket.GetUpperBound(), 1) {
			p99 = time.Duration(bucket.GetUpperBound() * float64(time.Second))
			break
		}
	}
	return time.Duration((h.GetSampleSum() - before.GetSampleSum()) / count * float64(time.Second)), p99
}

// waitAtZero polls the platform's metrics until the function has no replica.
func waitAtZero(ctx context.Context, url, function string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if families, err := scrape(url); err == nil {
			desired, okDesired := metricValue(families, "sluice_desired_replicas", function)
			ready, okReady := metricValue(families, "sluice_ready_replicas", function)
			if okDesired && okReady && desired == 0 && ready == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("function %s did not scale to zero within 30s", function)
}

// scrape reads the metric families of url's /metrics.
func scrape(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// metricValue is the gauge of families named name for a function.
func metricValue(families map[string]*dto.MetricFamily, name, function string) (float64, bool) {
	for _, metric := range families[name].GetMetric() {
		for _, label := range metric.GetLabel() {
			if label.GetName() == "function" && label.GetValue() == function {
				return metric.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
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
