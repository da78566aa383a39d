package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"sluice.dev/sluice/autoscaler"
	autoscalerkube "sluice.dev/sluice/autoscaler/kube"
	"sluice.dev/sluice/functions"
	functionskube "sluice.dev/sluice/functions/kube"
)

// autoscalerFlags are the settings of `sluice autoscaler`.
type autoscalerFlags struct {
	kubeconfig   string
	leaderElect  bool
	identity     string
	metricsAddr  string
	namespace    string
	autoscaleCfg autoscaler.Config
}

func newAutoscalerCommand(g *globals) *cobra.Command {
	f := autoscalerFlags{autoscaleCfg: autoscaler.DefaultConfig()}
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "autoscaler",
		Short: "Scale the worker Deployments of every function revision on Kubernetes with its queue depth",
		Long: `autoscaler sets the replicas of each function revision's worker Deployment (which sluice
controller creates) through the /scale subresource from the revision's JetStream queue depth.
With --leader-elect, several autoscalers may run; one leads at a time through a Lease.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			return runKubeAutoscaler(cmd.Context(), g, f, log)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&f.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file ($KUBECONFIG; empty: in-cluster)")
	flags.StringVar(&f.namespace, "namespace", functionskube.DefaultWorkerConfig().Namespace, "namespace of the worker Deployments and the Lease")
	flags.BoolVar(&f.leaderElect, "leader-elect", true, "elect one leader among several autoscalers through a Lease")
	flags.StringVar(&f.identity, "identity", host, "this autoscaler's name in the Lease")
	flags.StringVar(&f.metricsAddr, "metrics-addr", ":9090", "address of /metrics, /livez and /readyz")
	flags.DurationVar(&f.autoscaleCfg.Tick, "tick", f.autoscaleCfg.Tick, "time between decisions (pokes wake a function at once)")
	return cmd
}

func runKubeAutoscaler(ctx context.Context, g *globals, f autoscalerFlags, log *slog.Logger) error {
	restConfig, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	nc, js, err := connect(g.natsURL, "sluice-autoscaler")
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := newRegistry()
	var leading atomic.Bool
	lead := func(ctx context.Context) error {
		leading.Store(true)
		defer leading.Store(false)
		log.Info("leading", "identity", f.identity)
		return withRegistry(ctx, js,
			autoscalePart(js, autoscalerkube.NewScaler(client, f.namespace), f.autoscaleCfg, reg, log),
			func(ctx context.Context, _ *functions.Registry) error {
				return autoscalerkube.RecordScaleEvents(ctx, nc, client, f.namespace)
			})
	}
	var alive atomic.Bool // ready once connected; only the leader decides
	alive.Store(true)
	group, ctx := errgroup.WithContext(ctx)
	group.Go(func() error { return serveProbes(ctx, f.metricsAddr, reg, &alive, log) })
	group.Go(func() error {
		if !f.leaderElect {
			return lead(ctx)
		}
		return autoscalerkube.RunAsLeader(ctx, client, autoscalerkube.DefaultLeaderConfig(f.namespace, f.identity), lead)
	})
	return group.Wait()
}

// autoscalePart runs the queue-depth autoscaler with scaler.
func autoscalePart(js jetstream.JetStream, scaler autoscaler.Scaler, cfg autoscaler.Config, reg prometheus.Registerer, log *slog.Logger) part {
	return func(ctx context.Context, registry *functions.Registry) error {
		loop, err := autoscaler.New(js.Conn(), js, registry, scaler, cfg, reg, log)
		if err != nil {
			return err
		}
		return loop.Run(ctx)
	}
}
