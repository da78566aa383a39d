// Package activator is Sluice's HTTP front door. It turns Open Inference
// Protocol v2 calls and CloudEvents over HTTP into request CloudEvents on the
// function's JetStream stream, and waits for the worker's reply on an inbox.
package activator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

// Config bounds what one request may cost.
type Config struct {
	// MaxBodyBytes bounds a request body; larger ones get 413 before they are read.
	MaxBodyBytes int64
	// Limits bound the tensors of a request.
	Limits oip.Limits
	// ShutdownTimeout bounds the drain of in-flight requests on shutdown; 0
	// waits as long as the longest request timeout of any deployed function.
	ShutdownTimeout time.Duration
	// MaxInFlight bounds the requests the activator holds at once; more get 429.
	MaxInFlight int
	// BodyTimeout bounds the read of a request body, from its first byte to
	// its last; a slower one gets 408.
	BodyTimeout time.Duration
	// MaxConnsPerClient bounds the open connections of one client address
	// (0: no bound, behind a proxy that is every client's address); more are
	// closed as they come.
	MaxConnsPerClient int
	// ResultTTL is how long the results of asynchronous requests are kept,
	// when the activator creates the results bucket.
	ResultTTL time.Duration
	// MaxPending bounds the requests published and not yet acknowledged by JetStream.
	MaxPending int
	// Keys, when set, admits only callers with an API key, each to what its
	// scopes allow; nil leaves the activator open to whoever reaches it.
	Keys *Keys
	// MetricsTargets, when set, is served at GET /metrics/targets for
	// Prometheus's HTTP service discovery: where the processes of the
	// platform serve /metrics (sluice up's workers).
	MetricsTargets func() []TargetGroup
	// SinkAllow names the non-public addresses a request's Sluice-Sink-URI
	// may name; the same list as SinkConfig.Allow.
	SinkAllow functions.SinkAllowList
	// Ready, when set, is asked by GET /v2/health/ready too: what the host
	// knows keeps requests from being stored (sluice up: its NATS server's disk).
	Ready func() error
}

// storeTimeout bounds the wait for JetStream to say it stored a request;
// storeRetryFor is how long a request is published again while its stream
// cannot store it for a reason that passes (a new leader being elected
// after a NATS server died or was cut off takes seconds). A stream that
// still cannot store it (its disk is full) answers 503 then, not at the
// caller's timeout.
const (
	storeTimeout  = 5 * time.Second
	storeRetryFor = 15 * time.Second
)

// storeFault is a request JetStream did not store: why, and when.
type storeFault struct {
	err error
	at  time.Time
}

// storeFailureShown is how long readiness reports a request not stored.
const storeFailureShown = 10 * time.Second

// storeRetry is the wait before publishing a request again after its
// attempt-th failed attempt: 100 ms, doubling, at most a second.
func storeRetry(attempt int) time.Duration {
	return min(100*time.Millisecond<<min(attempt, 4), time.Second)
}

// storeMayPass says whether a publish failed for a reason that passes: the
// stream did not answer, or not in time, or still holds an earlier attempt
// of the same request in its log.
func storeMayPass(err error) bool {
	var apiErr *jetstream.APIError
	return events.NotAnswering(err) || errors.As(err, &apiErr) && apiErr.ErrorCode == jsDuplicateInProcess
}

// jsDuplicateInProcess is JetStream's answer to a message whose id an
// earlier attempt, not yet stored, carries.
const jsDuplicateInProcess jetstream.ErrorCode = 10158

// DefaultConfig allows 8 MiB bodies.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes: 8 << 20, Limits: oip.DefaultLimits(), MaxPending: 4096, MaxInFlight: 10_000, ResultTTL: events.DefaultResultTTL,
		BodyTimeout: 30 * time.Second, MaxConnsPerClient: 1024,
	}
}

// Validate reports the first field that is wrong.
func (c Config) Validate() error {
	switch {
	case c.MaxBodyBytes < 1024:
		return fmt.Errorf("activator: MaxBodyBytes must be at least 1024, got %d", c.MaxBodyBytes)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("activator: ShutdownTimeout must not be negative, got %s", c.ShutdownTimeout)
	case c.ResultTTL < time.Minute:
		return fmt.Errorf("activator: ResultTTL must be at least 1m, got %s", c.ResultTTL)
	case c.MaxInFlight < 1:
		return fmt.Errorf("activator: MaxInFlight must be at least 1, got %d", c.MaxInFlight)
	case c.MaxPending < 1:
		return fmt.Errorf("activator: MaxPending must be at least 1, got %d", c.MaxPending)
	case c.BodyTimeout < time.Second:
		return fmt.Errorf("activator: BodyTimeout must be at least 1s, got %s", c.BodyTimeout)
	case c.MaxConnsPerClient < 0:
		return fmt.Errorf("activator: MaxConnsPerClient must not be negative, got %d", c.MaxConnsPerClient)
	}
	return nil
}

// Activator serves the HTTP API. Create it with New and start it with Run.
type Activator struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	registry *functions.Registry
	cfg      Config
	inbox    *inbox
	waker    *waker
	metrics  *metrics
	log      *slog.Logger
	gatherer prometheus.Gatherer
	// slots holds a token per request in flight; its capacity is MaxInFlight.
	slots chan struct{}
	// storeFailure is why the last request JetStream was asked to store was
	// not stored, and when; nil once one is. Readiness says it for
	// storeFailureShown: a readiness that stayed failed would keep away the
	// very requests whose success clears it.
	storeFailure atomic.Pointer[storeFault]
	// results is the results bucket, and answers the store of answers too
	// large for one message, both opened by Run before it serves.
	results jetstream.KeyValue
	answers jetstream.ObjectStore
	// grpcListener, when set by ListenGRPC, is where Run serves gRPC too.
	grpcListener net.Listener
	// counter counts the comparisons of shadow answers (opened by Run);
	// shadows holds a token per shadow copy awaiting its answer, shadowing
	// waits for their goroutines, and stopShadows, closed when Run ends,
	// stops their waiting.
	counter     *functions.Counter
	shadows     chan struct{}
	shadowing   sync.WaitGroup
	stopShadows chan struct{}
}

// New returns an Activator that looks functions up in registry (which the
// caller runs) and publishes requests through nc.
func New(nc *nats.Conn, registry *functions.Registry, cfg Config, reg *prometheus.Registry, log *slog.Logger) (*Activator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A request travels with its CloudEvent headers: keep room for them under NATS's max payload.
	if limit := nc.MaxPayload() - 64<<10; cfg.MaxBodyBytes > limit {
		log.Info("request bodies limited by the NATS max payload", "max_body_bytes", limit, "asked", cfg.MaxBodyBytes)
		cfg.MaxBodyBytes = limit
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(cfg.MaxPending), jetstream.WithPublishAsyncTimeout(storeTimeout))
	if err != nil {
		return nil, fmt.Errorf("activator: jetstream: %w", err)
	}
	m := newMetrics(reg)
	return &Activator{
		nc: nc, js: js, registry: registry, cfg: cfg,
		inbox:   newInbox(m.lateReplies.Inc),
		waker:   newWaker(nc),
		metrics: m, log: log, gatherer: reg, slots: make(chan struct{}, cfg.MaxInFlight),
		shadows: make(chan struct{}, maxShadows), stopShadows: make(chan struct{}),
	}, nil
}

// TargetGroup is one entry of Prometheus's HTTP service discovery: addresses
// that serve /metrics, and the labels their series get.
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// Handler routes the HTTP API.
func (a *Activator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/models/{name}/infer", a.limited(a.infer))
	mux.HandleFunc("POST /v2/models/{name}/versions/{version}/infer", a.limited(a.infer))
	mux.HandleFunc("GET /v2/models/{name}", a.modelMetadata)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}", a.modelMetadata)
	mux.HandleFunc("GET /v2/models/{name}/ready", a.modelReady)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}/ready", a.modelReady)
	mux.HandleFunc("GET /v1/requests/{id}", a.requestResult)
	mux.HandleFunc("POST /v1/functions/{name}/feedback", a.limited(a.feedback))
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /v2/health/ready", a.serverReady)
	mux.HandleFunc("GET /v2", a.serverMetadata)
	mux.HandleFunc("POST /{$}", a.limited(a.cloudEvent))
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.gatherer, promhttp.HandlerOpts{}))
	if a.cfg.MetricsTargets != nil {
		mux.HandleFunc("GET /metrics/targets", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, a.cfg.MetricsTargets())
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no route for %s %s", errNotFound, r.Method, r.URL.Path))
	})
	return a.authenticated(mux)
}

// Run serves HTTP on listener until ctx ends, then stops taking requests and
// waits for those in flight to be answered.
func (a *Activator) Run(ctx context.Context, listener net.Listener) error {
	sub, err := a.inbox.subscribe(a.nc)
	if err != nil {
		return fmt.Errorf("activator: subscribe to replies: %w", err)
	}
	defer sub.Unsubscribe()
	if a.results, err = events.EnsureResultsBucket(ctx, a.js, a.cfg.ResultTTL); err != nil {
		return fmt.Errorf("activator: %w", err)
	}
	if a.answers, err = events.EnsureAnswersStore(ctx, a.js, a.cfg.ResultTTL); err != nil {
		return fmt.Errorf("activator: %w", err)
	}
	if _, err = events.EnsureFeedbackStream(ctx, a.js); err != nil {
		return fmt.Errorf("activator: %w", err)
	}
	counts, err := events.EnsureCountsBucket(ctx, a.js)
	if err != nil {
		return fmt.Errorf("activator: %w", err)
	}
	a.counter = functions.NewCounter(counts)
	counting, stopCounting := context.WithCancel(context.WithoutCancel(ctx))
	counted := make(chan struct{})
	go func() {
		defer close(counted)
		if err := a.counter.Run(counting, time.Second); err != nil {
			a.log.Warn("write the last counts", "error", err)
		}
	}()
	defer func() { // after the shadows: their last comparisons are written too
		close(a.stopShadows)
		a.shadowing.Wait()
		stopCounting()
		<-counted
	}()
	scale, err := events.EnsureScaleBucket(ctx, a.js)
	if err != nil {
		return fmt.Errorf("activator: %w", err)
	}
	// The waker follows the scale bucket for as long as Run serves, the drain included.
	watchCtx, stopWatching := context.WithCancel(context.Background())
	watched := make(chan struct{})
	var watchErr error
	go func() {
		defer close(watched)
		watchErr = events.WatchBucket(watchCtx, scale, a.waker.apply, func() {})
	}()
	defer func() {
		stopWatching()
		<-watched
	}()
	grpcCtx, stopGRPC := context.WithCancel(ctx)
	grpcDone := make(chan error, 1)
	go func() { grpcDone <- a.serveGRPC(grpcCtx) }()
	defer func() {
		stopGRPC()
		<-grpcDone
	}()
	server := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: maxHeaderBytes}
	served := make(chan error, 1)
	go func() {
		served <- server.Serve(limitConnections(listener, a.cfg.MaxConnsPerClient, a.metrics.refusedConns.Inc))
	}()
	a.log.Info("activator listening", "addr", listener.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("activator: serve: %w", err)
	case <-watched:
		_ = server.Close()
		<-served
		return fmt.Errorf("activator: %w", watchErr)
	case err := <-grpcDone:
		grpcDone <- err // for the deferred wait
		_ = server.Close()
		<-served
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.shutdownTimeout())
	defer cancel()
	err = server.Shutdown(shutdownCtx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	return err
}

// limited reads the request's body, then answers 429 instead of taking the
// request past MaxInFlight. A slot is held only while a request is queued
// or waits for its answer, never while its body trickles in: a body has
// BodyTimeout to arrive whole, and the connections of one client are
// bounded (limitConnections).
func (a *Activator) limited(next http.HandlerFunc) http.HandlerFunc {
	return traced(func(w http.ResponseWriter, r *http.Request) {
		err := a.bufferBody(w, r)
		var release func()
		if err == nil {
			release, err = a.takeSlot()
		}
		if err != nil {
			code := a.answerError(w, r, err)
			a.metrics.observe(a.knownName(r.PathValue("name")), code, time.Now())
			return
		}
		defer release()
		next(w, r)
	})
}

// takeSlot holds one of the MaxInFlight slots until release is called, or
// says the activator is overloaded (429) when none is free.
func (a *Activator) takeSlot() (release func(), err error) {
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, nil
	default:
		return nil, fmt.Errorf("%w: %d requests are in flight, the most this activator holds", errOverloaded, cap(a.slots))
	}
}

// shutdownTimeout is how long shutdown waits for requests in flight: as
// configured, or the longest request timeout of any function, plus a margin.
func (a *Activator) shutdownTimeout() time.Duration {
	if a.cfg.ShutdownTimeout > 0 {
		return a.cfg.ShutdownTimeout
	}
	longest := 30 * time.Second
	for _, name := range a.registry.Names() {
		if fn, ok := a.registry.Lookup(name); ok {
			longest = max(longest, fn.Spec.Timeouts.Request.Duration)
		}
	}
	return longest + 5*time.Second
}
