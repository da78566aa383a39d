package kube

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderConfig names the Lease that autoscalers elect their leader through.
type LeaderConfig struct {
	Namespace, Lease, Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's: a new
	// leader takes over at most LeaseDuration after the old one stopped renewing.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// DefaultLeaderConfig uses the Lease sluice-autoscaler with client-go's usual timings.
func DefaultLeaderConfig(namespace, identity string) LeaderConfig {
	return LeaderConfig{
		Namespace: namespace, Lease: "sluice-autoscaler", Identity: identity,
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
	}
}

// Validate reports what is wrong with the configuration.
func (c LeaderConfig) Validate() error {
	if c.Namespace == "" || c.Lease == "" || c.Identity == "" {
		return errors.New("leader election: Namespace, Lease and Identity are required")
	}
	if c.RetryPeriod <= 0 || c.RenewDeadline <= c.RetryPeriod || c.LeaseDuration <= c.RenewDeadline {
		return fmt.Errorf("leader election: want 0 < RetryPeriod < RenewDeadline < LeaseDuration, got %s, %s, %s", c.RetryPeriod, c.RenewDeadline, c.LeaseDuration)
	}
	return nil
}

// RunAsLeader runs lead only while this process holds the Lease, so one
// autoscaler of several decides at a time. It returns when ctx ends, or with
// an error when leadership is lost (the caller exits and restarts as a
// candidate, which is what Kubernetes controllers do), after lead has returned.
func RunAsLeader(ctx context.Context, client kubernetes.Interface, cfg LeaderConfig, lead func(ctx context.Context) error) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Lease},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}
	acquired := make(chan context.Context, 1)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		ReleaseOnCancel: true,
		LeaseDuration:   cfg.LeaseDuration,
		RenewDeadline:   cfg.RenewDeadline,
		RetryPeriod:     cfg.RetryPeriod,
		Name:            cfg.Lease,
		Callbacks: leaderelection.LeaderCallbacks{
			// The context ends when leadership does; lead runs on RunAsLeader's
			// own goroutine, so it has returned before RunAsLeader does.
			OnStartedLeading: func(leaderCtx context.Context) { acquired <- leaderCtx },
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	electCtx, stop := context.WithCancel(ctx)
	defer stop()
	elected := make(chan struct{})
	go func() {
		defer close(elected)
		elector.Run(electCtx)
	}()
	var leaderCtx context.Context
	select {
	case leaderCtx = <-acquired:
	case <-elected:
		select {
		case leaderCtx = <-acquired:
		default:
			return nil // ctx ended before this process led
		}
	}
	err = lead(leaderCtx)
	stop()
	<-elected
	if ctx.Err() != nil {
		return err
	}
	if err == nil {
		err = fmt.Errorf("leader election: lost the lease %s/%s", cfg.Namespace, cfg.Lease)
	}
	return err
}
