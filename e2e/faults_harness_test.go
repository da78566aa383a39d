//go:build faults

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// faultCluster is Sluice as deploy/base runs it, as processes of the built
// binary: three NATS servers of one cluster (`sluice nats serve`, file
// streams at three replicas, sync_interval always, the users of `sluice nats
// init`), two workers of the iris function and an activator.
type faultCluster struct {
	dir       string
	natsURL   string
	nats      []*proc
	js        jetstream.JetStream // the operator's
	fn        *functions.Function
	workers   []*proc
	activator *proc
	url       string
}

func newFaultCluster(t *testing.T) *faultCluster {
	t.Helper()
	c := &faultCluster{dir: t.TempDir()}
	sluice(t, "nats", "init", "--out", c.dir)
	ports := freePorts(t, 7) // 3 client, 3 cluster, the activator's HTTP
	var routes, urls []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[3+i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	c.natsURL = strings.Join(urls, ",")
	for i := range 3 {
		conf := fmt.Sprintf(`server_name: nats-%d
listen: 127.0.0.1:%d
jetstream { store_dir: %q, sync_interval: always }
cluster { name: sluice, listen: 127.0.0.1:%d, routes: [%s] }
include auth.conf
`, i, ports[i], filepath.Join(c.dir, fmt.Sprintf("store-%d", i)), ports[3+i], strings.Join(routes, ", "))
		path := filepath.Join(c.dir, fmt.Sprintf("nats-%d.conf", i))
		require.NoError(t, os.WriteFile(path, []byte(conf), 0o644))
		c.nats = append(c.nats, startProc(t, fmt.Sprintf("nats-%d", i), "nats", "serve", "--config", path))
	}

	c.js, c.fn = deployOnCluster(t, c.natsURL, c.dir)
	for range 2 {
		c.addWorker(t)
	}
	c.url = fmt.Sprintf("http://127.0.0.1:%d", ports[6])
	c.activator = startProc(t, "activator", "activator", "--addr", strings.TrimPrefix(c.url, "http://"), "--grpc-addr", "",
		"--nats-url", c.natsURL, "--nats-creds", filepath.Join(c.dir, "activator.creds"), "--nats-replicas", "3")
	c.awaitServing(t)
	c.awaitWorkers(t)
	return c
}

// awaitWorkers waits until every worker serves, so that no scenario starts
// with one still starting: one answered prediction says only that some
// worker does. A worker waits, itself, while the new cluster still elects
// its leaders.
func (c *faultCluster) awaitWorkers(t *testing.T) {
	t.Helper()
	for _, w := range c.workers {
		require.Eventually(t, func() bool { return strings.Contains(w.logs.String(), "msg=serving") },
			90*time.Second, 100*time.Millisecond, "%s never served:\n%s", w.name, w.logs.String())
	}
}

// addWorker starts one more worker of the function's revision.
func (c *faultCluster) addWorker(t *testing.T) *proc {
	t.Helper()
	w := startProc(t, fmt.Sprintf("worker-%d", len(c.workers)), "worker", "--function", "iris", "--revision", c.fn.Status.Revision,
		"--nats-url", c.natsURL, "--nats-creds", filepath.Join(c.dir, "worker.creds"), "--nats-replicas", "3", "--metrics-addr", "127.0.0.1:0")
	c.workers = append(c.workers, w)
	return w
}

// awaitServing waits until a prediction is answered.
func (c *faultCluster) awaitServing(t *testing.T) {
	t.Helper()
	p := &platform{url: c.url}
	require.Eventually(t, func() bool {
		code, _ := p.post(t, "/v2/models/iris/infer", irisRequest, nil)
		return code == http.StatusOK
	}, 90*time.Second, 200*time.Millisecond, "a prediction through the cluster")
}

// streamLeader is the index of the NATS server that leads the function's stream.
func (c *faultCluster) streamLeader(t *testing.T) int {
	t.Helper()
	var leader string
	require.Eventually(t, func() bool {
		stream, err := c.js.Stream(t.Context(), events.StreamName("iris"))
		if err != nil || stream.CachedInfo().Cluster == nil {
			return false
		}
		leader = stream.CachedInfo().Cluster.Leader
		return leader != ""
	}, 30*time.Second, 100*time.Millisecond, "the stream has a leader")
	index, err := strconv.Atoi(strings.TrimPrefix(leader, "nats-"))
	require.NoError(t, err, leader)
	return index
}

// awaitReplicasCurrent waits until every replica of the function's stream has caught up.
func (c *faultCluster) awaitReplicasCurrent(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	require.Eventually(t, func() bool {
		stream, err := c.js.Stream(t.Context(), events.StreamName("iris"))
		if err != nil || stream.CachedInfo().Cluster == nil || stream.CachedInfo().Cluster.Leader == "" {
			return false
		}
		replicas := stream.CachedInfo().Cluster.Replicas
		return len(replicas) == 2 && !slices.ContainsFunc(replicas, func(r *jetstream.PeerInfo) bool { return !r.Current || r.Offline })
	}, 90*time.Second, 200*time.Millisecond, "the stream's three replicas are current again")
	return time.Since(start)
}

// tally counts what a load sent and what came of it.
type tally struct {
	sent, acked, answered atomic.Int64
	mu                    sync.Mutex
	failures              map[string]int // "503: the first error"
	latencies             []time.Duration
	started               []time.Time
	accepted              []string // ids of asynchronous requests accepted
}

func newTally() *tally { return &tally{failures: map[string]int{}} }

// row is r with the counts of l: sent, acknowledged, answered and failed.
func (l *tally) row(r reliability) reliability {
	r.sent, r.acked, r.answered, r.failed = l.sent.Load(), l.acked.Load(), l.answered.Load(), int64(l.failed())
	return r
}

func (l *tally) fail(code int, body []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := strconv.Itoa(code)
	if len(l.failures) < 8 || l.failures[key] > 0 {
		l.failures[key+": "+tail(strings.TrimSpace(string(body)), 160)]++
	}
}

func (l *tally) failed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, count := range l.failures {
		n += count
	}
	return n
}

// p99 and worst are the latencies of the answered requests.
func (l *tally) percentile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.latencies) == 0 {
		return 0
	}
	sorted := slices.Clone(l.latencies)
	slices.Sort(sorted)
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// slowestAfter is the longest latency of a request sent after at, and when it was sent.
func (l *tally) slowestAfter(at time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var worst time.Duration
	for i, latency := range l.latencies {
		if l.started[i].After(at.Add(-latency)) { // in flight at or after at
			worst = max(worst, latency)
		}
	}
	return worst
}

// faultLoad sends predictions at rate per second until stop is called: each
// synchronous, or each asynchronous (Prefer: respond-async) when async.
type faultLoad struct {
	tally *tally
	stop  func()
}

func startFaultLoad(url string, rate int, async bool) *faultLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &faultLoad{tally: newTally()}
	var running sync.WaitGroup
	client := &http.Client{Timeout: 60 * time.Second}
	var seq atomic.Int64
	prefix := strconv.FormatInt(time.Now().UnixNano(), 36)
	running.Go(func() {
		events.Every(ctx, time.Second/time.Duration(rate), func() {
			running.Go(func() { l.send(client, url, fmt.Sprintf("%s-%d", prefix, seq.Add(1)), async) })
		})
	})
	l.stop = func() {
		cancel()
		running.Wait()
	}
	return l
}

func (l *faultLoad) send(client *http.Client, url, id string, async bool) {
	l.tally.sent.Add(1)
	req, _ := http.NewRequest(http.MethodPost, url+"/v2/models/iris/infer", strings.NewReader(irisRequest))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", id)
	if async {
		req.Header.Set("Prefer", "respond-async")
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		l.tally.fail(0, []byte(err.Error()))
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case async && resp.StatusCode == http.StatusAccepted:
		l.tally.acked.Add(1)
		l.tally.mu.Lock()
		l.tally.accepted = append(l.tally.accepted, id)
		l.tally.mu.Unlock()
	case !async && resp.StatusCode == http.StatusOK:
		l.tally.acked.Add(1)
		l.tally.answered.Add(1)
		l.tally.mu.Lock()
		l.tally.latencies = append(l.tally.latencies, time.Since(start))
		l.tally.started = append(l.tally.started, start)
		l.tally.mu.Unlock()
	default:
		l.tally.fail(resp.StatusCode, body)
	}
}

// collect fetches the result of every accepted asynchronous request until
// each is done or wait has passed, and counts the answered ones; the rest
// are lost.
func (l *tally) collect(t *testing.T, url string, wait time.Duration) (lost int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	l.mu.Lock()
	pending := slices.Clone(l.accepted)
	l.mu.Unlock()
	for len(pending) > 0 && time.Now().Before(deadline) {
		var still []string
		for _, id := range pending {
			resp, err := http.Get(url + "/v1/requests/" + id)
			if err != nil {
				still = append(still, id)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				l.answered.Add(1)
			case http.StatusAccepted:
				still = append(still, id)
			default:
				if resp.StatusCode >= 500 { // the activator or NATS is not back yet
					still = append(still, id)
					continue
				}
				l.fail(resp.StatusCode, body)
			}
		}
		pending = still
		if len(pending) > 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	return len(pending)
}

// reliability is one row of the README's reliability table.
type reliability struct {
	scenario                      string
	failures                      map[string]int // by status and first error
	sent, acked, answered, failed int64
	lost                          int64
	// late counts the answers the activator dropped because the caller
	// had its answer already or had gone: requests scored twice, which no
	// client saw (each gets one answer). nil: not measured (no load).
	late    *int64
	recover time.Duration
	note    string
}

// report logs a row and appends it to $SLUICE_FAULTS_REPORT, when set.
func report(t *testing.T, r reliability) {
	t.Helper()
	late := "–"
	if r.late != nil {
		late = strconv.FormatInt(*r.late, 10)
	}
	row := fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %s | %s | %s |", r.scenario, r.sent, r.acked, r.answered, r.failed,
		r.lost, late, r.recover.Round(10*time.Millisecond), r.note)
	t.Log(row)
	if len(r.failures) > 0 {
		t.Logf("failures: %v", r.failures)
	}
	if path := os.Getenv("SLUICE_FAULTS_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		require.NoError(t, err)
		defer f.Close()
		_, err = fmt.Fprintln(f, row)
		require.NoError(t, err)
	}
}

// lateSince returns a function that gives the answers the activator at url
// dropped as late since now (see reliability.late).
func lateSince(t *testing.T, url string) func() *int64 {
	t.Helper()
	before := lateReplies(t, url)
	return func() *int64 {
		n := lateReplies(t, url) - before
		return &n
	}
}

// lateReplies is what the activator at url counted of answers that came
// after their caller was answered or gone: a request scored twice.
func lateReplies(t *testing.T, url string) int64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for line := range strings.Lines(string(body)) {
		if rest, ok := strings.CutPrefix(line, "sluice_activator_late_replies_total "); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return int64(n)
		}
	}
	return 0
}
