package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"sluice.dev/sluice/activator"
	"sluice.dev/sluice/autoscaler"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/worker"
	"sluice.dev/sluice/worker/onnx"
)

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func newActivatorCommand(g *globals) *cobra.Command {
	var addr, grpcAddr, keysFile string
	cfg := activator.DefaultConfig()
	sinks := activator.DefaultSinkConfig()
	cmd := &cobra.Command{
		Use:   "activator",
		Short: "Serve the HTTP API (Open Inference Protocol v2 and CloudEvents) in front of NATS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			stopTracing, err := startTracing(cmd.Context(), "activator", log)
			if err != nil {
				return err
			}
			defer stopTracing()
			nc, js, err := g.connect("sluice-activator")
			if err != nil {
				return err
			}
			defer nc.Close()
			if cfg.Keys, err = loadKeys(keysFile, []string{addr, grpcAddr}, log); err != nil {
				return err
			}
			listeners, err := listen(addr, grpcAddr)
			if err != nil {
				return err
			}
			return runActivator(cmd.Context(), js, listeners, cfg, sinks, log)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", ":8080", "HTTP listen address")
	cmd.Flags().StringVar(&keysFile, "api-keys", os.Getenv("SLUICE_API_KEYS"), "file of API keys (sluice keys create); without it the activator is open to whoever reaches it ($SLUICE_API_KEYS)")
	cmd.Flags().StringVar(&grpcAddr, "grpc-addr", ":8081", "gRPC listen address (Open Inference Protocol; off when empty)")
	cmd.Flags().Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", cfg.MaxBodyBytes, "largest request body accepted (413 above)")
	cmd.Flags().IntVar(&cfg.MaxInFlight, "max-in-flight", cfg.MaxInFlight, "requests held at once, queued or awaiting their answer (429 above)")
	cmd.Flags().DurationVar(&cfg.BodyTimeout, "body-timeout", cfg.BodyTimeout, "time a request body has to arrive whole (408 after)")
	cmd.Flags().IntVar(&cfg.MaxConnsPerClient, "max-conns-per-client", cfg.MaxConnsPerClient, "open connections one client address may keep (0: no bound; set 0 behind a proxy, whose address every client shares)")
	addSinkFlags(cmd.Flags(), &sinks)
	return cmd
}

// runActivator serves the activator and the catalog view it reads, until ctx ends.
func runActivator(ctx context.Context, js jetstream.JetStream, listeners activatorListeners, cfg activator.Config, sinks activator.SinkConfig, log *slog.Logger) error {
	cfg.SinkAllow = sinks.Allow
	return withRegistry(ctx, js, activatorPart(js, listeners, cfg, newRegistry(), log), sinksPart(js, sinks, log))
}

// activatorListeners are where the activator serves HTTP and, unless nil, gRPC.
type activatorListeners struct{ http, grpc net.Listener }

// listen opens the activator's listeners; an empty grpcAddr serves no gRPC.
func listen(httpAddr, grpcAddr string) (activatorListeners, error) {
	var listeners activatorListeners
	var err error
	if listeners.http, err = net.Listen("tcp", httpAddr); err != nil {
		return listeners, err
	}
	if grpcAddr != "" {
		if listeners.grpc, err = net.Listen("tcp", grpcAddr); err != nil {
			listeners.http.Close()
			return listeners, fmt.Errorf("gRPC: %w", err)
		}
	}
	return listeners, nil
}

// part is one component that runs on the catalog view until ctx ends.
type part func(ctx context.Context, registry *functions.Registry) error

// withRegistry runs the catalog view and, once it has read the catalog, every part.
func withRegistry(ctx context.Context, js jetstream.JetStream, parts ...part) error {
	catalog, err := functions.OpenCatalog(ctx, js)
	if err != nil {
		return err
	}
	registry := functions.NewRegistry(catalog)
	group, ctx := errgroup.WithContext(ctx)
	group.Go(func() error { return registry.Run(ctx) })
	for _, run := range parts {
		group.Go(func() error {
			select {
			case <-registry.Synced():
			case <-ctx.Done():
				return nil
			}
			return run(ctx, registry)
		})
	}
	return group.Wait()
}

// addSinkFlags adds the settings of sink delivery to a command.
func addSinkFlags(flags *pflag.FlagSet, cfg *activator.SinkConfig) {
	flags.IntVar(&cfg.Attempts, "sink-attempts", cfg.Attempts, "POSTs a result gets before it is dead-lettered")
	flags.DurationVar(&cfg.FirstBackoff, "sink-backoff", cfg.FirstBackoff, "wait after the first failed POST; it doubles after each")
	flags.Var(&sinkAllowFlag{&cfg.Allow}, "sink-allow", "a CIDR prefix or address that sinks may have although it is loopback, private or link-local (repeatable; public addresses need none)")
}

// sinkAllowFlag adds the prefixes of --sink-allow to a list.
type sinkAllowFlag struct{ list *functions.SinkAllowList }

func (f *sinkAllowFlag) Set(value string) error {
	parsed, err := functions.ParseSinkAllowList(strings.Split(value, ","))
	if err != nil {
		return err
	}
	*f.list = append(*f.list, parsed...)
	return nil
}

func (f *sinkAllowFlag) String() string {
	entries := make([]string, len(*f.list))
	for i, prefix := range *f.list {
		entries[i] = prefix.String()
	}
	return strings.Join(entries, ",")
}

func (f *sinkAllowFlag) Type() string { return "cidr" }

// sinksPart delivers asynchronous results to their sinks.
func sinksPart(js jetstream.JetStream, cfg activator.SinkConfig, log *slog.Logger) part {
	return func(ctx context.Context, _ *functions.Registry) error {
		sinks, err := activator.NewSinks(js, cfg, log)
		if err != nil {
			return err
		}
		return sinks.Run(ctx)
	}
}

// keysReload is how often the activator re-reads its API keys file.
const keysReload = 5 * time.Second

// loadKeys reads the API keys file, if one is named; without one it says
// that the activator at addrs (HTTP and gRPC; an empty one is off) runs open.
func loadKeys(path string, addrs []string, log *slog.Logger) (*activator.Keys, error) {
	if path == "" {
		onLoopback := true
		for _, addr := range addrs {
			host, _, _ := net.SplitHostPort(addr)
			ip := net.ParseIP(host)
			onLoopback = onLoopback && (addr == "" || host == "localhost" || (ip != nil && ip.IsLoopback()))
		}
		if onLoopback {
			log.Info("the activator runs open on loopback: no --api-keys, so every local process may call every function", "addrs", addrs)
		} else {
			log.Warn("the activator runs OPEN: no --api-keys, so anyone who reaches it may call every function", "addrs", addrs)
		}
		return nil, nil
	}
	keys, err := activator.LoadKeys(path, log)
	if err != nil {
		return nil, err
	}
	log.Info("API keys in force", "file", path, "keys", keys.Count())
	return keys, nil
}

// activatorPart serves the activator on its listeners, following its API keys file.
func activatorPart(js jetstream.JetStream, listeners activatorListeners, cfg activator.Config, reg *prometheus.Registry, log *slog.Logger) part {
	return func(ctx context.Context, registry *functions.Registry) error {
		server, err := activator.New(js.Conn(), registry, cfg, reg, log)
		if err != nil {
			return err
		}
		if cfg.Keys != nil {
			following, stop := context.WithCancel(ctx)
			followed := make(chan struct{})
			go func() {
				defer close(followed)
				cfg.Keys.Follow(following, keysReload)
			}()
			defer func() {
				stop()
				<-followed
			}()
		}
		if listeners.grpc != nil {
			server.ListenGRPC(listeners.grpc)
		}
		return server.Run(ctx, listeners.http)
	}
}

// workerFlags are the settings of `sluice worker`.
type workerFlags struct {
	function, revision string
	libraryPath        string
	modelCache         string
	metricsAddr        string
	sessions           int
	drainTimeout       time.Duration
}

func newWorkerCommand(g *globals) *cobra.Command {
	var f workerFlags
	cmd := &cobra.Command{
		Use:   "worker --function NAME",
		Short: "Serve one revision of a function: fetch, batch, run the ONNX model, reply",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			stopTracing, err := startTracing(cmd.Context(), "worker", log)
			if err != nil {
				return err
			}
			defer stopTracing()
			return runWorker(cmd.Context(), g, f, log)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&f.function, "function", "", "function to serve")
	flags.StringVar(&f.revision, "revision", "", "revision to serve (default: the current one)")
	flags.StringVar(&f.libraryPath, "onnxruntime-lib", "", "path of libonnxruntime.so (default: $"+onnx.LibraryEnv+", then the `make deps` cache)")
	flags.StringVar(&f.modelCache, "model-cache", "", "directory that keeps downloaded models for the next start")
	flags.StringVar(&f.metricsAddr, "metrics-addr", ":9090", "address of /metrics and /readyz")
	flags.IntVar(&f.sessions, "sessions", 1, "model sessions running batches in parallel")
	flags.DurationVar(&f.drainTimeout, "drain-timeout", worker.DefaultConfig().DrainTimeout, "how long SIGTERM may take to finish the requests held; keep it below the supervisor's kill timeout")
	_ = cmd.MarkFlagRequired("function")
	return cmd
}

// workerGCPercent is the worker's GOGC unless the environment sets one. Its
// live heap is small (a batch in flight) while every batch allocates several
// times that, so the default of 100 collects after nearly every batch.
const workerGCPercent = 400

func runWorker(ctx context.Context, g *globals, f workerFlags, log *slog.Logger) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(workerGCPercent)
	}
	if err := onnx.Init(f.libraryPath); err != nil {
		return err
	}
	nc, js, err := g.connect("sluice-worker-" + f.function)
	if err != nil {
		return err
	}
	defer nc.Close()
	var serving atomic.Pointer[worker.Worker]
	var notServing atomic.Pointer[error] // why the worker does not serve: its model cannot run, or NATS does not answer yet
	reg := newRegistry()
	probes, err := net.Listen("tcp", f.metricsAddr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	group, ctx := errgroup.WithContext(ctx)
	group.Go(func() error {
		return serveProbes(ctx, probes, reg, func() error {
			if w := serving.Load(); w != nil {
				return w.Health()
			}
			if reason := notServing.Load(); reason != nil {
				return *reason
			}
			return errors.New("model not loaded yet")
		}, log)
	})
	group.Go(func() error {
		var counts jetstream.KeyValue
		err := patiently(ctx, &notServing, log, func() (err error) {
			counts, err = events.EnsureCountsBucket(ctx, js)
			return err
		})
		if err != nil {
			return stoppedOr(ctx, err)
		}
		counter := functions.NewCounter(counts)
		// The counts are written until the worker has settled its last request.
		counted, stopCounting := context.WithCancel(context.WithoutCancel(ctx))
		defer stopCounting()
		group.Go(func() error {
			if err := counter.Run(counted, time.Second); err != nil {
				log.Warn("write the last counts", "error", err) // statistics: not worth a failed exit
			}
			return nil
		})
		var w *worker.Worker
		var closeModels func()
		var cannotRun error
		err = patiently(ctx, &notServing, log, func() (err error) {
			w, closeModels, cannotRun, err = loadWorker(ctx, js, f, counter, reg, log)
			return err
		})
		if err != nil {
			return stoppedOr(ctx, err)
		}
		defer closeModels()
		if cannotRun != nil {
			// Not ready, but not gone either: the requests already queued
			// for this revision are answered with the reason, and no
			// supervisor restarts a worker that would fail the same way.
			log.Error("model cannot run: answering its queued requests with the reason", "function", f.function, "error", cannotRun)
			notServing.Store(&cannotRun)
			return w.Run(ctx)
		}
		group.Go(func() error {
			err := announceReady(ctx, w, &serving, probes.Addr().String())
			log.Info("worker ready", "function", f.function, "startup_ms", time.Since(started).Milliseconds())
			return err
		})
		return w.Run(ctx)
	})
	return group.Wait()
}

// patiently runs setup, one of the worker's steps before it serves, and runs
// it again while NATS or JetStream does not answer (a cluster still electing
// its leaders, a server restarting, JetStream restarting on a freed disk):
// meanwhile /readyz says why (notServing), and the worker serves once they
// answer instead of exiting for its supervisor to start it again. Any other
// error is returned at once.
func patiently(ctx context.Context, notServing *atomic.Pointer[error], log *slog.Logger, setup func() error) error {
	for pause := 250 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
		err := setup()
		if err == nil || !(events.NotAnswering(err) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)) || ctx.Err() != nil {
			notServing.Store(nil)
			return err
		}
		reason := fmt.Errorf("setting up: NATS does not answer yet (%w); trying again", err)
		notServing.Store(&reason)
		log.Warn("setting up: NATS does not answer yet; trying again", "error", err, "retry_in", pause)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

// stoppedOr is err, or nil when the worker was stopped (ctx ended) while
// setting up: a SIGTERM then is an ordinary exit.
func stoppedOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// announceReady, once the worker takes requests, has /readyz follow its
// Health and, under the process scaler, writes the file it watches for
// readiness: the address of the worker's /metrics, for discovery.
func announceReady(ctx context.Context, w *worker.Worker, serving *atomic.Pointer[worker.Worker], metricsAddr string) error {
	select {
	case <-ctx.Done():
		return nil
	case <-w.Ready():
	}
	serving.Store(w)
	if path := os.Getenv(autoscaler.ReadyFileEnv); path != "" {
		// Written aside and renamed: whoever sees the file reads it whole.
		if err := os.WriteFile(path+".tmp", []byte(metricsAddr), 0o644); err != nil {
			return fmt.Errorf("announce readiness: %w", err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return fmt.Errorf("announce readiness: %w", err)
		}
	}
	return nil
}

// loadWorker fetches the function's model, opens its sessions and its
// consumer. When the model does not load, or is not the one deployed
// (functions.ErrModelChanged), the control plane is told to mark the
// revision Failed with the reason, and the worker returned answers every
// request with it (cannotRun says why); other errors are returned.
func loadWorker(ctx context.Context, js jetstream.JetStream, f workerFlags, counter worker.Counter, reg prometheus.Registerer, log *slog.Logger) (_ *worker.Worker, closeModels func(), cannotRun error, _ error) {
	catalog, err := functions.OpenCatalog(ctx, js)
	if err != nil {
		return nil, nil, nil, err
	}
	fn, err := catalog.Get(ctx, f.function)
	if err != nil {
		return nil, nil, nil, err
	}
	name := f.revision
	if name == "" {
		name = fn.Status.Revision
	}
	revision, ok := fn.Status.FindRevision(name)
	if !ok {
		return nil, nil, nil, fmt.Errorf("function %s has no live revision %q (current: %s)", f.function, name, fn.Status.Revision)
	}
	connected := time.Since(started)
	start := time.Now()
	model, err := worker.LoadModel(ctx, catalog, revision.Model, f.modelCache)
	changed := errors.Is(err, functions.ErrModelChanged)
	if err != nil && !changed {
		return nil, nil, nil, err
	}
	fetched := time.Since(start)
	var sessions []*onnx.Session
	if err == nil {
		sessions, err = openSessions(model, revision, f.sessions)
		boundProcs(len(sessions) * revision.Runtime.Threads)
	}
	closeModels = func() {
		for _, session := range sessions {
			_ = session.Close()
		}
	}
	models := make([]worker.Model, len(sessions))
	for i, session := range sessions {
		models[i] = session
	}
	state := functions.RevisionReady
	if err != nil {
		cannotRun = fmt.Errorf("%w: revision %s: %v", functions.ErrModelCannotRun, name, err)
		models, state = []worker.Model{worker.CannotRun(cannotRun)}, functions.RevisionFailed
	} else {
		log.Info("model loaded", "function", f.function, "revision", name, "sha256", revision.Model.SHA256[:12],
			"init_ms", connected.Milliseconds(), "model_fetch_ms", fetched.Milliseconds(),
			"session_ms", (time.Since(start) - fetched).Milliseconds())
	}
	if revision.State != state || state == functions.RevisionFailed {
		report := functions.RevisionReport{Function: f.function, Revision: name, State: state, ModelChanged: changed}
		if err != nil {
			report.Reason = err.Error()
		}
		// The control plane records it: a worker may not write the catalog.
		go func() { _ = functions.Report(ctx, js.Conn(), report, log) }()
	}
	w, err := newWorker(ctx, js, fn, name, revision.Model.Signature, models, f, counter, reg, log)
	if err != nil {
		closeModels()
		return nil, nil, nil, err
	}
	return w, closeModels, cannotRun, nil
}

// boundProcs lets a worker run Go code on as many threads as its model
// sessions keep cores busy (sessions × threads), at least one, unless
// GOMAXPROCS says otherwise. ONNX Runtime runs a batch without holding one
// of them, so the worker's Go work (NATS, decoding, answers) goes on beside
// it; more only spin looking for work and hand goroutines between threads,
// on cores the activator and the other workers need (a sync request cost
// the demo's worker 70–76 µs of CPU with two, 58–62 with one).
func boundProcs(cores int) {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(min(runtime.GOMAXPROCS(0), max(cores, 1)))
	}
}

// openSessions loads count sessions of the revision's model; on an error it
// closes those it opened.
func openSessions(model []byte, revision functions.RevisionStatus, count int) ([]*onnx.Session, error) {
	cfg := onnx.SessionConfig{Device: revision.Runtime.Device, Threads: revision.Runtime.Threads}
	sessions := make([]*onnx.Session, 0, count)
	for range count {
		session, err := onnx.Load(model, revision.Model.Signature, cfg)
		if err != nil {
			for _, opened := range sessions {
				_ = opened.Close()
			}
			return nil, err
		}
		sessions = append(sessions, session)
	}
	return sessions, nil
}

// newWorker opens the revision's consumer and returns its worker.
func newWorker(ctx context.Context, js jetstream.JetStream, fn *functions.Function, revision string, signature oip.Signature, models []worker.Model, f workerFlags, counter worker.Counter, reg prometheus.Registerer, log *slog.Logger) (*worker.Worker, error) {
	consumer, err := js.Consumer(ctx, events.StreamName(f.function), events.ConsumerName(revision))
	if err != nil {
		return nil, fmt.Errorf("consumer of %s revision %s: %w", f.function, revision, err)
	}
	cfg, err := workerConfig(ctx, js, fn, revision, f)
	if err != nil {
		return nil, err
	}
	cfg.Counter = counter
	return worker.New(js.Conn(), consumer, models, signature, cfg, reg, log)
}

// workerConfig is the worker's configuration for revision name of fn, with the
// results bucket, the sink stream and the dead-letter stream it publishes to.
func workerConfig(ctx context.Context, js jetstream.JetStream, fn *functions.Function, name string, f workerFlags) (worker.Config, error) {
	cfg := worker.DefaultConfig()
	cfg.Function, cfg.Revision = f.function, name
	cfg.MaxBatchSize = fn.Spec.Batching.MaxBatchSize
	cfg.MaxDelay = fn.Spec.Batching.MaxDelay.Duration
	cfg.DrainTimeout = f.drainTimeout
	cfg.JetStream = js
	if rollout := fn.Spec.Rollout; rollout != nil {
		cfg.SlowAfter = rollout.MaxLatencyP99.Duration
	}
	cfg.LogPredictions = fn.Spec.LogsPredictions()
	if cfg.LogPredictions {
		if _, err := events.EnsurePredictionsStream(ctx, js, f.function); err != nil {
			return cfg, err
		}
	}
	var err error
	if cfg.Results, err = events.EnsureResultsBucket(ctx, js, events.DefaultResultTTL); err != nil {
		return cfg, err
	}
	if cfg.Answers, err = events.EnsureAnswersStore(ctx, js, events.DefaultResultTTL); err != nil {
		return cfg, err
	}
	if _, err := events.EnsureSinkStream(ctx, js, events.DefaultResultTTL); err != nil {
		return cfg, err
	}
	_, err = events.EnsureDeadLetterStream(ctx, js)
	return cfg, err
}

// serveDebug serves the Go profiler on its own listener until stop is called.
func serveDebug(addr string, log *slog.Logger) (stop func(), err error) {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = server.Serve(listener)
	}()
	log.Info("debug listening", "addr", listener.Addr().String())
	return func() {
		_ = server.Close()
		<-served
	}, nil
}

// serveProbes serves /metrics, /livez and /readyz (200 while ready says
// nothing is wrong, else 503 with what is) until ctx ends, and the Go
// profiler too when it listens on loopback (a worker of sluice up): never
// where the network reaches it.
func serveProbes(ctx context.Context, listener net.Listener, gatherer prometheus.Gatherer, ready func() error, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	if addr, ok := listener.Addr().(*net.TCPAddr); ok && addr.IP.IsLoopback() {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("metrics listening", "addr", listener.Addr().String())
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	if err := server.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
