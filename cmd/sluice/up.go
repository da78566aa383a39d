package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"sluice.dev/sluice/activator"
	"sluice.dev/sluice/autoscaler"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/access"
	"sluice.dev/sluice/events/embedded"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/retrain"
	"sluice.dev/sluice/worker/onnx"
)

// upFlags are the settings of `sluice up`.
type upFlags struct {
	dataDir     string
	addr        string
	grpcAddr    string
	natsHost    string
	natsPort    int
	deploy      []string
	libraryPath string
	sinks       activator.SinkConfig
	keysFile    string
	debugAddr   string
	maxStore    string
	maxWorkers  int
}

func newUpCommand(g *globals) *cobra.Command {
	f := upFlags{sinks: activator.DefaultSinkConfig()}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole platform on this machine: NATS with JetStream, the activator and worker processes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			stopTracing, err := startTracing(cmd.Context(), "up", log)
			if err != nil {
				return err
			}
			defer stopTracing()
			return runUp(cmd.Context(), g, f, log)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&f.dataDir, "data-dir", ".data", "directory for JetStream's storage and the model cache")
	flags.StringVar(&f.addr, "addr", "127.0.0.1:8080", "HTTP listen address of the activator (loopback unless you open it: --addr :8080)")
	flags.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:8081", "gRPC listen address of the activator (Open Inference Protocol; off when empty)")
	flags.StringVar(&f.keysFile, "api-keys", os.Getenv("SLUICE_API_KEYS"), "file of API keys (sluice keys create); without it the activator is open to whoever reaches it ($SLUICE_API_KEYS)")
	flags.StringVar(&f.natsHost, "nats-host", "127.0.0.1", "listen host of the embedded NATS server")
	flags.IntVar(&f.natsPort, "nats-port", 4222, "listen port of the embedded NATS server (-1: any free port)")
	flags.StringArrayVar(&f.deploy, "deploy", nil, "Function YAML to deploy at start (repeatable)")
	flags.StringVar(&f.libraryPath, "onnxruntime-lib", "", "path of libonnxruntime.so for the workers")
	addSinkFlags(flags, &f.sinks)
	flags.StringVar(&f.debugAddr, "debug-addr", "", "serve /debug/pprof/ on this address (off when empty; keep it on loopback)")
	flags.StringVar(&f.maxStore, "max-store", "", "disk JetStream may use under --data-dir, e.g. 2Gi (default: three quarters of the free space); every queue and bucket is sized to fit in it")
	flags.IntVar(&f.maxWorkers, "max-workers", runtime.NumCPU(), "the most worker processes one revision runs, whatever its maxReplicas (0: no bound; default: this machine's cores; a worker's model session keeps one busy, and more only contend for them)")
	return cmd
}

func runUp(ctx context.Context, g *globals, f upFlags, log *slog.Logger) error {
	autoscaleCfg := autoscaler.DefaultConfig()
	autoscaleCfg.MaxReplicas = f.maxWorkers
	if err := autoscaleCfg.Validate(); err != nil {
		return fmt.Errorf("--max-workers: %w", err)
	}
	library, err := onnx.FindLibrary(f.libraryPath)
	if err != nil {
		return err
	}
	if f.debugAddr != "" {
		stop, err := serveDebug(f.debugAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	bus, err := startBus(g, f, log)
	if err != nil {
		return err
	}
	defer bus.close()
	authority, parts := bus.authority, bus.parts
	// ONNX Runtime in this process checks models before they take traffic.
	var checker functions.ModelChecker
	if err := onnx.Init(library); err == nil {
		checker = sessionChecker{}
	} else {
		log.Warn("models are not loaded before they take traffic", "error", err)
	}
	if err := deployAll(ctx, parts.control, f.deploy, checker, log); err != nil {
		return err
	}
	// The control plane makes what the other parts read but may not create.
	catalog, err := functions.OpenCatalog(ctx, parts.control)
	if err != nil {
		return err
	}
	if _, err := events.EnsureScaleBucket(ctx, parts.control); err != nil {
		return err
	}
	keys, err := loadKeys(f.keysFile, []string{f.addr, f.grpcAddr}, log)
	if err != nil {
		return err
	}
	listeners, err := listen(f.addr, f.grpcAddr)
	if err != nil {
		return err
	}
	processes, err := autoscaler.NewProcessScaler(workerProcesses(g, f, library, authority, catalog), log)
	if err != nil {
		return err
	}
	defer processes.Close() // after the activator has answered every request in flight
	trainers, err := retrain.NewProcessLauncher(retrain.DefaultProcessConfig(), log)
	if err != nil {
		return err
	}
	defer trainers.Close()
	trainerCfg := retrain.DefaultConfig()
	trainerCfg.Env = map[string]string{retrain.EnvNATSURL: g.natsURL, onnx.LibraryEnv: library}
	trainerCfg.Credentials = func(_ context.Context, function string) ([]byte, error) {
		return authority.Mint("trainer "+function, access.Trainer(function))
	}
	reg := newRegistry()
	reg.MustRegister(embedded.Metrics(bus.server.Server)) // beside the activator's, on its /metrics
	lifecycle := lifecyclePart(parts.control, trainers, trainerCfg, checker, reg, log)
	return serveUp(ctx, parts, listeners, processes, autoscaleCfg, f.sinks, keys, lifecycle, reg, log)
}

// upParts are the connections of `sluice up`'s parts, each its own NATS user.
type upParts struct {
	control, activator, autoscaler jetstream.JetStream
	// storage says what keeps the embedded server from storing requests.
	storage func() error
}

// upBus is `sluice up`'s embedded NATS and its parts' connections to it.
type upBus struct {
	server    *embedded.Server
	authority *access.Authority
	parts     upParts
	closers   []func()
}

// close closes the parts' connections, then the server.
func (b *upBus) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

// startBus starts the embedded NATS in operator mode, with the keys kept in
// <data-dir>/nats (made at the first start), writes the operator's
// credentials there for the CLI, and logs each part in as its own user,
// allowed only the subjects it needs (events/access). The parts talk to the
// server in memory, not over loopback TCP. It sets g.natsURL.
func startBus(g *globals, f upFlags, log *slog.Logger) (*upBus, error) {
	natsDir := filepath.Join(f.dataDir, "nats")
	authority, err := access.LoadOrCreate(natsDir)
	if err != nil {
		return nil, err
	}
	serverCfg := embedded.DefaultConfig()
	serverCfg.Host, serverCfg.Port = f.natsHost, f.natsPort
	serverCfg.StoreDir = filepath.Join(f.dataDir, "jetstream")
	if serverCfg.MaxStore, err = maxStore(f.maxStore, serverCfg.StoreDir); err != nil {
		return nil, err
	}
	// The account is bounded too: every queue and bucket made in it, by any
	// part or CLI, is sized to fit (events reads the bound).
	trust, err := authority.Trust(serverCfg.MaxStore)
	if err != nil {
		return nil, err
	}
	serverCfg.Trust, serverCfg.Log = &trust, log
	srv, err := embedded.Start(serverCfg)
	if err != nil {
		return nil, err
	}
	bus := &upBus{server: srv, authority: authority, closers: []func(){func() { srv.Shutdown(); srv.WaitForShutdown() }}}
	bus.parts.storage = srv.Storage.Health
	g.natsURL = srv.ClientURL()
	adminCreds := filepath.Join(natsDir, "admin.creds")
	if err := authority.WriteCredentials(adminCreds, "admin", access.Control()); err != nil {
		bus.close()
		return nil, err
	}
	log.Info("nats listening", "url", g.natsURL, "store", serverCfg.StoreDir, "max_store_mib", serverCfg.MaxStore>>20, "admin_credentials", adminCreds)
	for _, part := range []struct {
		name string
		p    access.Permissions
		js   *jetstream.JetStream
	}{{"control", access.Control(), &bus.parts.control}, {"activator", access.Activator(), &bus.parts.activator}, {"autoscaler", access.Autoscaler(), &bus.parts.autoscaler}} {
		if *part.js, err = bus.logIn(g.natsURL, part.name, part.p); err != nil {
			bus.close()
			return nil, err
		}
	}
	return bus, nil
}

// logIn connects a part as a new user allowed p.
func (b *upBus) logIn(url, name string, p access.Permissions) (jetstream.JetStream, error) {
	creds, err := b.authority.Mint(name, p)
	if err != nil {
		return nil, err
	}
	options, err := access.Connect(creds)
	if err != nil {
		return nil, err
	}
	nc, js, err := connect(url, "sluice-up-"+name, append(options, nats.InProcessServer(b.server))...)
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, nc.Close)
	return js, nil
}

// serveUp runs the activator, the autoscaler, which starts and stops worker
// processes with the queue depth, and the models' lifecycle, until ctx ends.
func serveUp(ctx context.Context, parts upParts, listeners activatorListeners, processes *autoscaler.ProcessScaler, autoscaleCfg autoscaler.Config, sinks activator.SinkConfig, keys *activator.Keys, lifecycle part, reg *prometheus.Registry, log *slog.Logger) error {
	autoscale := autoscalePart(parts.autoscaler, processes, autoscaleCfg, reg, log)
	log.Info("sluice is up", "http", listeners.http.Addr().String())
	cfg := activator.DefaultConfig()
	cfg.SinkAllow, cfg.Keys = sinks.Allow, keys
	cfg.MetricsTargets = metricsTargets(listeners.http.Addr().String(), processes)
	cfg.Ready = parts.storage
	js := parts.activator
	return withRegistry(ctx, js, autoscale, activatorPart(js, listeners, cfg, reg, log), sinksPart(js, sinks, log), lifecycle)
}

// workerProcesses starts `sluice worker` for a revision, as a child of this process.
// metricsTargets lists, for Prometheus, the activator's /metrics (which has
// the autoscaler's and the lifecycle's series too) and every ready worker's.
func metricsTargets(activatorAddr string, processes *autoscaler.ProcessScaler) func() []activator.TargetGroup {
	return func() []activator.TargetGroup {
		groups := []activator.TargetGroup{{Targets: []string{activatorAddr}, Labels: map[string]string{"component": "activator"}}}
		targets := processes.Targets()
		slices.SortFunc(targets, func(a, b autoscaler.Target) int {
			return cmp.Or(cmp.Compare(a.Function, b.Function), cmp.Compare(a.Revision, b.Revision), cmp.Compare(a.Address, b.Address))
		})
		for _, target := range targets {
			groups = append(groups, activator.TargetGroup{Targets: []string{target.Address}, Labels: map[string]string{
				"component": "worker", "function": target.Function, "revision": target.Revision,
			}})
		}
		return groups
	}
}

func workerProcesses(g *globals, f upFlags, library string, authority *access.Authority, catalog *functions.Catalog) autoscaler.ProcessConfig {
	cfg := autoscaler.DefaultProcessConfig()
	executable, _ := os.Executable()
	cfg.Command = func(ctx context.Context, function, revision string) (*exec.Cmd, error) {
		// Each start gets a user of its own, allowed this revision only.
		fn, err := catalog.Get(ctx, function)
		if err != nil {
			return nil, err
		}
		permissions, err := catalog.WorkerAccess(ctx, fn, revision)
		if err != nil {
			return nil, err
		}
		creds := filepath.Join(f.dataDir, "nats", "workers", function+"-"+revision+".creds")
		if err := authority.WriteCredentials(creds, "worker "+function+" "+revision, permissions); err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, executable, "worker",
			"--function", function, "--revision", revision,
			"--nats-url", g.natsURL, "--nats-creds", creds, "--onnxruntime-lib", library,
			"--model-cache", filepath.Join(f.dataDir, "models"),
			"--metrics-addr", "127.0.0.1:0",
			"--drain-timeout", (cfg.StopTimeout - 5*time.Second).String(),
			"--log-level", g.logLevel, "--log-format", g.logFormat)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd, nil
	}
	return cfg
}

func deployAll(ctx context.Context, js jetstream.JetStream, files []string, checker functions.ModelChecker, log *slog.Logger) error {
	if len(files) == 0 {
		return nil
	}
	catalog, err := functions.OpenCatalog(ctx, js)
	if err != nil {
		return err
	}
	deployer := functions.NewDeployer(js, catalog, events.DefaultQueueConfig()).WithChecker(checker)
	for _, file := range files {
		fn, err := deployFile(ctx, deployer, file)
		if err != nil {
			return fmt.Errorf("deploy: %w", err)
		}
		log.Info("deployed", "function", fn.Metadata.Name, "revision", fn.Status.Revision, "sha256", fn.Status.Model.SHA256[:12])
	}
	return nil
}

// minStore is the least disk sluice up runs on: a few requests in each queue.
const minStore = 64 << 20

// maxStore is the disk JetStream may use under dir: flag when set (a
// quantity: 512Mi, 2Gi), else what it holds and three quarters of the free
// space, as nats-server would take, at most 1 TiB.
func maxStore(flag, dir string) (int64, error) {
	if flag != "" {
		quantity, err := resource.ParseQuantity(flag)
		if err != nil {
			return 0, fmt.Errorf("--max-store: %w", err)
		}
		if quantity.Value() < minStore {
			return 0, fmt.Errorf("--max-store: %s is less than the %d MiB sluice up needs", flag, minStore>>20)
		}
		return quantity.Value(), nil
	}
	// What is stored already counts: at a restart the store has taken some
	// of the free space it was sized from.
	free, used := embedded.Free(dir), embedded.Used(dir)
	size := min(used+free/4*3, 1<<40)
	if size < minStore {
		return 0, fmt.Errorf("only %d MiB are free for %s: sluice up needs %d MiB for its queues (free some, or name another --data-dir)", free>>20, dir, minStore*4/3>>20)
	}
	return size, nil
}
