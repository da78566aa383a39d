package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/access"
	"sluice.dev/sluice/functions"
	functionskube "sluice.dev/sluice/functions/kube"
	"sluice.dev/sluice/functions/retrain"
)

// controllerFlags are the settings of `sluice controller`.
type controllerFlags struct {
	kube       kubeFlags
	workerNATS string
	authority  string
	cfg        functionskube.ControllerConfig
	// cpu and memory are the workers' requests and limits.
	cpu, cpuLimit, memory, memoryLimit resource.QuantityValue
}

func newControllerCommand(g *globals) *cobra.Command {
	f := controllerFlags{cfg: functionskube.DefaultControllerConfig()}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Reconcile Function resources on Kubernetes: catalog, worker Deployments, status, retraining Jobs and rollouts",
		Long: `controller watches the Function resources (functions.sluice.dev) of one namespace. It puts
each in the catalog, keeps a worker Deployment per live revision (owned by the Function, created at 0
replicas: the autoscaler scales them), writes the status kubectl shows, and on deletion takes the
function out of NATS. It also runs the models' lifecycle: retraining as batch/v1 Jobs of the worker
image, published versions as revisions, and their rollouts. With --leader-elect, several may run;
one leads at a time through the Lease sluice-controller.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			return runController(cmd.Context(), g, f, log)
		},
	}
	flags := cmd.Flags()
	workers := &f.cfg.Workers
	f.kube.add(flags, "controller")
	flags.StringVar(&workers.Image, "worker-image", workers.Image, "image of the worker Deployments and trainer Jobs")
	flags.StringVar(&f.workerNATS, "worker-nats-url", workers.NATSURL, "NATS URL the workers and trainers connect to")
	flags.StringVar(&workers.NATSCAConfigMap, "worker-nats-ca-configmap", "", "ConfigMap whose ca.crt signed NATS's TLS certificate, mounted in workers and trainers (for a tls:// --worker-nats-url)")
	flags.StringVar(&f.authority, "nats-authority", os.Getenv("SLUICE_NATS_AUTHORITY"), "directory with the authority.json of `sluice nats init`: each worker and trainer then gets a NATS user of its own, in a Secret ($SLUICE_NATS_AUTHORITY)")
	flags.DurationVar(&f.cfg.Resync, "resync", f.cfg.Resync, "how often every Function is reconciled, so its status follows the catalog")
	for _, q := range []struct {
		value *resource.QuantityValue
		from  resource.Quantity
		name  string
	}{
		{&f.cpu, workers.CPURequest, "worker-cpu-request"}, {&f.cpuLimit, workers.CPULimit, "worker-cpu-limit"},
		{&f.memory, workers.MemoryRequest, "worker-memory-request"}, {&f.memoryLimit, workers.MemoryLimit, "worker-memory-limit"},
	} {
		q.value.Quantity = q.from.DeepCopy()
		flags.Var(q.value, q.name, "the "+strings.ReplaceAll(strings.TrimPrefix(q.name, "worker-"), "-", " ")+" of every worker container")
	}
	return cmd
}

func runController(ctx context.Context, g *globals, f controllerFlags, log *slog.Logger) error {
	restConfig, err := f.kube.restConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	dynamicClient, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	f.cfg.Workers.NATSURL, f.cfg.Workers.Namespace = f.workerNATS, f.kube.namespace
	f.cfg.Workers.CPURequest, f.cfg.Workers.CPULimit = f.cpu.Quantity, f.cpuLimit.Quantity
	f.cfg.Workers.MemoryRequest, f.cfg.Workers.MemoryLimit = f.memory.Quantity, f.memoryLimit.Quantity
	jobs := functionskube.DefaultJobConfig()
	jobs.Image, jobs.Namespace, jobs.NATSCAConfigMap = f.cfg.Workers.Image, f.cfg.Workers.Namespace, f.cfg.Workers.NATSCAConfigMap
	trainers, err := functionskube.NewJobLauncher(client, jobs)
	if err != nil {
		return err
	}
	trainerCfg := retrain.DefaultConfig()
	trainerCfg.Env = map[string]string{retrain.EnvNATSURL: f.workerNATS}
	if f.authority != "" {
		if f.cfg.Authority, err = access.Load(f.authority); err != nil {
			return fmt.Errorf("--nats-authority: %w", err)
		}
		f.cfg.Workers.NATSCredentials = true
		trainerCfg.Credentials = func(_ context.Context, function string) ([]byte, error) {
			return f.cfg.Authority.Mint("trainer "+function, access.Trainer(function))
		}
	}
	nc, js, err := g.connect("sluice-controller")
	if err != nil {
		return err
	}
	defer nc.Close()
	catalog, err := functions.OpenCatalog(ctx, js)
	if err != nil {
		return err
	}
	controller, err := functionskube.NewController(client, dynamicClient, js, catalog, functions.NewDeployer(js, catalog, events.DefaultQueueConfig()), f.cfg, log)
	if err != nil {
		return err
	}
	reg := newRegistry()
	lifecycle := lifecyclePart(js, trainers, trainerCfg, nil, reg, log)
	return runLeading(ctx, client, f.kube, "sluice-controller", reg, log, func(ctx context.Context) error {
		return withRegistry(ctx, js, lifecycle, func(ctx context.Context, _ *functions.Registry) error { return controller.Run(ctx) })
	})
}
