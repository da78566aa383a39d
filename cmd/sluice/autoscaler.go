package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/autoscaler"
	autoscalerkube "sluice.dev/sluice/autoscaler/kube"
	"sluice.dev/sluice/functions"
)

// autoscalerFlags are the settings of `sluice autoscaler`.
type autoscalerFlags struct {
	kube         kubeFlags
	autoscaleCfg autoscaler.Config
}

func newAutoscalerCommand(g *globals) *cobra.Command {
	f := autoscalerFlags{autoscaleCfg: autoscaler.DefaultConfig()}
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
	f.kube.add(flags, "autoscaler")
	flags.DurationVar(&f.autoscaleCfg.Tick, "tick", f.autoscaleCfg.Tick, "time between decisions (pokes wake a function at once)")
	return cmd
}

func runKubeAutoscaler(ctx context.Context, g *globals, f autoscalerFlags, log *slog.Logger) error {
	restConfig, err := f.kube.restConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	nc, js, err := g.connect("sluice-autoscaler")
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := newRegistry()
	namespace := f.kube.namespace
	return runLeading(ctx, client, f.kube, "sluice-autoscaler", reg, log, func(ctx context.Context) error {
		return withRegistry(ctx, js,
			autoscalePart(js, autoscalerkube.NewScaler(client, namespace), f.autoscaleCfg, reg, log),
			func(ctx context.Context, _ *functions.Registry) error {
				return autoscalerkube.RecordScaleEvents(ctx, nc, client, namespace)
			})
	})
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
