package functions_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// A catalog whose bucket is purged leaves no delete markers for a watch to
// see; the registry still forgets its Functions, so callers get 404, not a
// request queued for a function that is gone.
func TestRegistryForgetsFunctionsOfAPurgedCatalog(t *testing.T) {
	functions.SetPruneEvery(100 * time.Millisecond)
	t.Cleanup(func() { functions.SetPruneEvery(10 * time.Second) })
	js, catalog, deployer := newDeployer(t)
	ctx := t.Context()
	_, err := deployer.Deploy(ctx, parse(t, irisYAML), irisModel(t, 1))
	require.NoError(t, err)
	registry := runRegistry(t, catalog)
	_, ok := registry.Lookup("iris")
	require.True(t, ok)

	stream, err := js.Stream(ctx, "KV_"+events.FunctionsBucket)
	require.NoError(t, err)
	require.NoError(t, stream.Purge(ctx))
	require.Eventually(t, func() bool { _, ok := registry.Lookup("iris"); return !ok }, 5*time.Second, 20*time.Millisecond,
		"the registry forgets a function purged from the catalog")

	_, err = deployer.Deploy(ctx, parse(t, irisYAML), irisModel(t, 1))
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, ok := registry.Lookup("iris"); return ok }, 5*time.Second, 20*time.Millisecond,
		"deployed again, it is known again")
}

// The queue of a live revision that is gone (its stream deleted) is made
// again by Repair, and only that: a queue that exists is left alone.
func TestRepairMakesGoneQueuesAgain(t *testing.T) {
	js, catalog, deployer := newDeployer(t)
	ctx := t.Context()
	fn, err := deployer.Deploy(ctx, parse(t, irisYAML), irisModel(t, 1))
	require.NoError(t, err)
	repaired, err := deployer.Repair(ctx, fn)
	require.NoError(t, err)
	require.Empty(t, repaired, "nothing is gone")

	require.NoError(t, js.DeleteStream(ctx, events.StreamName("iris")))
	repairing, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- deployer.RepairEvery(repairing, 50*time.Millisecond, slog.New(slog.DiscardHandler)) }()
	require.Eventually(t, func() bool {
		_, err := js.Consumer(ctx, events.StreamName("iris"), events.ConsumerName(fn.Status.Revision))
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, "the stream and the revision's consumer are made again")
	stop()
	require.NoError(t, <-done)
	_, err = catalog.Get(ctx, "iris")
	require.NoError(t, err)
}
