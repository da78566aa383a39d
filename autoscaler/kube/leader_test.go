package kube_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/autoscaler/kube"
	"sluice.dev/sluice/e2e/kubetest"
)

// Of two autoscalers, one leads at a time; when the leader stops, the other
// takes over the Lease and leads.
func TestOneLeaderAtATime(t *testing.T) {
	cluster := kubetest.Start(t)
	namespace := cluster.NewNamespace(t)
	var leaders atomic.Int32
	var overlap atomic.Bool
	var led [2]atomic.Bool
	var cancels [2]context.CancelFunc
	done := make(chan error, 2)
	for i := range 2 {
		cfg := kube.DefaultLeaderConfig(namespace, []string{"first", "second"}[i])
		cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 2*time.Second, time.Second, 200*time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		go func() {
			done <- kube.RunAsLeader(ctx, cluster.Client, cfg, func(ctx context.Context) error {
				if leaders.Add(1) != 1 {
					overlap.Store(true)
				}
				led[i].Store(true)
				<-ctx.Done()
				leaders.Add(-1)
				return nil
			})
		}()
	}
	require.Eventually(t, func() bool { return led[0].Load() || led[1].Load() }, 30*time.Second, 20*time.Millisecond)
	first := 0
	if led[1].Load() {
		first = 1
	}
	cancels[first]()
	require.NoError(t, <-done, "a leader that is stopped returns cleanly")
	require.Eventually(t, func() bool { return led[1-first].Load() }, 30*time.Second, 20*time.Millisecond,
		"the other candidate takes over the released Lease")
	cancels[1-first]()
	require.NoError(t, <-done)
	require.False(t, overlap.Load(), "two candidates led at once")
}
