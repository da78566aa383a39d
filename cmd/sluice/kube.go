package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	autoscalerkube "sluice.dev/sluice/autoscaler/kube"
	functionskube "sluice.dev/sluice/functions/kube"
)

// kubeFlags are the settings the components that run on Kubernetes share.
type kubeFlags struct {
	kubeconfig, namespace, identity, metricsAddr string
	leaderElect                                  bool
}

// add declares the flags; component names the command in their help.
func (f *kubeFlags) add(flags *pflag.FlagSet, component string) {
	host, _ := os.Hostname()
	flags.StringVar(&f.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file ($KUBECONFIG; empty: in-cluster)")
	flags.StringVar(&f.namespace, "namespace", functionskube.DefaultWorkerConfig().Namespace, "namespace of the Functions, their workers and Jobs, and the Lease")
	flags.BoolVar(&f.leaderElect, "leader-elect", true, "elect one leader among several "+component+"s through a Lease")
	flags.StringVar(&f.identity, "identity", host, "this "+component+"'s name in the Lease")
	flags.StringVar(&f.metricsAddr, "metrics-addr", ":9090", "address of /metrics, /livez and /readyz")
}

// restConfig reaches the API server: through --kubeconfig, or in-cluster.
func (f kubeFlags) restConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return cfg, nil
}

// runLeading serves the probes and reg's metrics, and runs lead while this
// process holds the Lease named lease (always, without --leader-elect).
func runLeading(ctx context.Context, client kubernetes.Interface, f kubeFlags, lease string, reg *prometheus.Registry, log *slog.Logger, lead func(context.Context) error) error {
	leading := func(ctx context.Context) error {
		log.Info("leading", "identity", f.identity)
		return lead(ctx)
	}
	probes, err := net.Listen("tcp", f.metricsAddr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	group, ctx := errgroup.WithContext(ctx)
	group.Go(func() error { return serveProbes(ctx, probes, reg, func() error { return nil }, log) })
	group.Go(func() error {
		if !f.leaderElect {
			return leading(ctx)
		}
		leader := autoscalerkube.DefaultLeaderConfig(f.namespace, f.identity)
		leader.Lease = lease
		return autoscalerkube.RunAsLeader(ctx, client, leader, leading)
	})
	return group.Wait()
}
