package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	autoscalerkube "sluice.dev/sluice/autoscaler/kube"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	functionskube "sluice.dev/sluice/functions/kube"
	"sluice.dev/sluice/functions/retrain"
)

// controllerFlags are the settings of `sluice controller`.
type controllerFlags struct {
	kubeconfig  string
	leaderElect bool
	identity    string
	metricsAddr string
	workerNATS  string
	cfg         functionskube.ControllerConfig
}

func newControllerCommand(g *globals) *cobra.Command {
	f := controllerFlags{cfg: functionskube.DefaultControllerConfig()}
	host, _ := os.Hostname()
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
	flags.StringVar(&f.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file ($KUBECONFIG; empty: in-cluster)")
	flags.StringVar(&workers.Namespace, "namespace", workers.Namespace, "namespace of the Functions, their worker Deployments, Jobs and the Lease")
	flags.BoolVar(&f.leaderElect, "leader-elect", true, "elect one leader among several controllers through a Lease")
	flags.StringVar(&f.identity, "identity", host, "this controller's name in the Lease")
	flags.StringVar(&f.metricsAddr, "metrics-addr", ":9090", "address of /metrics, /livez and /readyz")
	flags.StringVar(&workers.Image, "worker-image", workers.Image, "image of the worker Deployments and trainer Jobs")
	flags.StringVar(&f.workerNATS, "worker-nats-url", workers.NATSURL, "NATS URL the workers and trainers connect to")
	flags.DurationVar(&f.cfg.Resync, "resync", f.cfg.Resync, "how often every Function is reconciled, so its status follows the catalog")
	return cmd
}

func runController(ctx context.Context, g *globals, f controllerFlags, log *slog.Logger) error {
	restConfig, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	dynamicClient, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	f.cfg.Workers.NATSURL = f.workerNATS
	jobs := functionskube.DefaultJobConfig()
	jobs.Image, jobs.Namespace = f.cfg.Workers.Image, f.cfg.Workers.Namespace
	trainers, err := functionskube.NewJobLauncher(client, jobs)
	if err != nil {
		return err
	}
	nc, js, err := connect(g.natsURL, "sluice-controller")
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
	lifecycle := lifecyclePart(js, trainers, map[string]string{retrain.EnvNATSURL: f.workerNATS}, nil, reg, log)
	lead := func(ctx context.Context) error {
		log.Info("leading", "identity", f.identity)
		return withRegistry(ctx, js, lifecycle, func(ctx context.Context, _ *functions.Registry) error { return controller.Run(ctx) })
	}
	var alive atomic.Bool // ready once connected; only the leader reconciles
	alive.Store(true)
	group, ctx := errgroup.WithContext(ctx)
	group.Go(func() error { return serveProbes(ctx, f.metricsAddr, reg, &alive, log) })
	group.Go(func() error {
		if !f.leaderElect {
			return lead(ctx)
		}
		leader := autoscalerkube.DefaultLeaderConfig(f.cfg.Workers.Namespace, f.identity)
		leader.Lease = "sluice-controller"
		return autoscalerkube.RunAsLeader(ctx, client, leader, lead)
	})
	return group.Wait()
}
