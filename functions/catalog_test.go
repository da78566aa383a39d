package functions_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/train"
)

// irisModel trains the demo classifier and returns its ONNX file.
func irisModel(t *testing.T, seed uint64) []byte {
	t.Helper()
	cfg := train.DefaultConfig()
	cfg.Seed = seed
	classifier, _, _, err := train.FitFile(context.Background(), "../deploy/demo/iris.csv", "", cfg)
	require.NoError(t, err)
	model, err := classifier.ONNX()
	require.NoError(t, err)
	return model
}

func newDeployer(t *testing.T) (jetstream.JetStream, *functions.Catalog, *functions.Deployer) {
	t.Helper()
	_, _, js := natstest.JetStream(t)
	catalog, err := functions.OpenCatalog(context.Background(), js)
	require.NoError(t, err)
	return js, catalog, functions.NewDeployer(js, catalog, events.DefaultQueueConfig())
}

func parse(t *testing.T, yaml string) *functions.Function {
	t.Helper()
	fn, err := functions.Parse([]byte(yaml))
	require.NoError(t, err)
	return fn
}

func TestDeployStoresModelAndProvisionsQueue(t *testing.T) {
	js, catalog, deployer := newDeployer(t)
	ctx := context.Background()
	model := irisModel(t, 1)

	fn, err := deployer.Deploy(ctx, parse(t, irisYAML), model)
	require.NoError(t, err)
	require.Equal(t, "1", fn.Status.Revision)
	require.EqualValues(t, 1, fn.Status.Generation)
	require.Equal(t, int64(len(model)), fn.Status.Model.Size)
	require.Equal(t, "input", fn.Status.Model.Signature.Inputs[0].Name)
	require.Equal(t, []int64{-1, 4}, fn.Status.Model.Signature.Inputs[0].Shape)

	stored, err := catalog.GetModel(ctx, *fn.Status.Model)
	require.NoError(t, err)
	require.Equal(t, model, stored)
	_, err = js.Consumer(ctx, events.StreamName("iris"), events.ConsumerName("1"))
	require.NoError(t, err, "the revision's consumer is provisioned")

	got, err := catalog.Get(ctx, "iris")
	require.NoError(t, err)
	require.Equal(t, fn.Status.Model.SHA256, got.Status.Model.SHA256)
}

func TestRevisionChangesOnlyWithModelOrRuntime(t *testing.T) {
	_, _, deployer := newDeployer(t)
	ctx := context.Background()
	model := irisModel(t, 1)

	first, err := deployer.Deploy(ctx, parse(t, irisYAML), model)
	require.NoError(t, err)
	require.Equal(t, "1", first.Status.Revision)

	rescaled := parse(t, irisYAML)
	rescaled.Spec.Scaling.MaxReplicas = 8
	second, err := deployer.Deploy(ctx, rescaled, model)
	require.NoError(t, err)
	require.Equal(t, "1", second.Status.Revision, "scaling changes keep the revision")
	require.EqualValues(t, 2, second.Status.Generation)

	third, err := deployer.Deploy(ctx, parse(t, irisYAML), irisModel(t, 2))
	require.NoError(t, err)
	require.Equal(t, "2", third.Status.Revision, "a new model cuts a new revision")

	threads := parse(t, irisYAML)
	threads.Spec.Runtime.Threads = 2
	fourth, err := deployer.Deploy(ctx, threads, irisModel(t, 2))
	require.NoError(t, err)
	require.Equal(t, "3", fourth.Status.Revision, "a runtime change cuts a new revision")
}

func TestDeployByURIOfStoredModel(t *testing.T) {
	_, catalog, deployer := newDeployer(t)
	ctx := context.Background()
	version, err := catalog.PutModel(ctx, "shared", irisModel(t, 1), nil)
	require.NoError(t, err)

	fn := parse(t, "metadata: {name: by-uri}\nspec: {model: {uri: "+version.Object+"}}\n")
	deployed, err := deployer.Deploy(ctx, fn, nil)
	require.NoError(t, err)
	require.Equal(t, version.SHA256, deployed.Status.Model.SHA256)

	missing := parse(t, "metadata: {name: missing}\nspec: {model: {uri: nope/0.onnx}}\n")
	_, err = deployer.Deploy(ctx, missing, nil)
	require.ErrorIs(t, err, functions.ErrNotFound)
}

func TestDeployRejects(t *testing.T) {
	_, _, deployer := newDeployer(t)
	ctx := context.Background()
	_, err := deployer.Deploy(ctx, parse(t, irisYAML), []byte("not a model"))
	require.ErrorContains(t, err, "iris")
	bad := parse(t, irisYAML)
	bad.Spec.Runtime.Device = "tpu"
	_, err = deployer.Deploy(ctx, bad, irisModel(t, 1))
	require.ErrorContains(t, err, "spec.runtime.device")
}

func TestListGetDelete(t *testing.T) {
	js, catalog, deployer := newDeployer(t)
	ctx := context.Background()
	model := irisModel(t, 1)
	for _, name := range []string{"zeta", "alpha"} {
		fn := parse(t, irisYAML)
		fn.Metadata.Name = name
		_, err := deployer.Deploy(ctx, fn, model)
		require.NoError(t, err)
	}
	list, err := catalog.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "alpha", list[0].Metadata.Name)

	alpha, err := catalog.Get(ctx, "alpha")
	require.NoError(t, err)
	// beta serves alpha's model object: it stays when alpha goes.
	beta := parse(t, irisYAML)
	beta.Metadata.Name, beta.Spec.Model = "beta", functions.ModelSpec{URI: alpha.Status.Model.Object}
	_, err = deployer.Deploy(ctx, beta, nil)
	require.NoError(t, err)
	unused, err := catalog.PutModel(ctx, "alpha", irisModel(t, 2), nil)
	require.NoError(t, err)

	require.NoError(t, deployer.Delete(ctx, "alpha"))
	_, err = catalog.Get(ctx, "alpha")
	require.ErrorIs(t, err, functions.ErrNotFound)
	_, err = js.Stream(ctx, events.StreamName("alpha"))
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
	_, err = catalog.GetObject(ctx, unused.Object)
	require.NoError(t, err, "a deleted function's objects stay until they are deleted too")
	require.NoError(t, catalog.DeleteObjectsOf(ctx, "alpha"))
	_, err = catalog.GetObject(ctx, unused.Object)
	require.ErrorIs(t, err, functions.ErrNotFound, "alpha's objects leave with it")
	_, err = catalog.GetObject(ctx, alpha.Status.Model.Object)
	require.NoError(t, err, "unless another function serves one")
	require.ErrorIs(t, deployer.Delete(ctx, "alpha"), functions.ErrNotFound)
}

func TestGetModelChecksSHA256(t *testing.T) {
	_, catalog, _ := newDeployer(t)
	ctx := context.Background()
	version, err := catalog.PutModel(ctx, "iris", irisModel(t, 1), nil)
	require.NoError(t, err)
	tampered := *version
	tampered.SHA256 = "00" + version.SHA256[2:]
	_, err = catalog.GetModel(ctx, tampered)
	require.ErrorContains(t, err, "sha256")
}

// runRegistry runs a Registry of catalog until the test ends, and waits
// until it has read the catalog.
func runRegistry(t *testing.T, catalog *functions.Catalog) *functions.Registry {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	registry := functions.NewRegistry(catalog)
	done := make(chan error, 1)
	go func() { done <- registry.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case <-registry.Synced():
	case <-time.After(5 * time.Second):
		t.Fatal("registry did not sync")
	}
	return registry
}

func TestRegistryFollowsTheCatalog(t *testing.T) {
	_, catalog, deployer := newDeployer(t)
	ctx := t.Context()
	model := irisModel(t, 1)
	_, err := deployer.Deploy(ctx, parse(t, irisYAML), model)
	require.NoError(t, err)

	registry := runRegistry(t, catalog)
	fn, ok := registry.Lookup("iris")
	require.True(t, ok, "functions present at start are known once synced")
	require.Equal(t, "1", fn.Status.Revision)

	other := parse(t, irisYAML)
	other.Metadata.Name = "other"
	_, err = deployer.Deploy(ctx, other, model)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, ok := registry.Lookup("other"); return ok }, 5*time.Second, 10*time.Millisecond)
	require.ElementsMatch(t, []string{"iris", "other"}, registry.Names())

	require.NoError(t, deployer.Delete(ctx, "iris"))
	require.Eventually(t, func() bool { _, ok := registry.Lookup("iris"); return !ok }, 5*time.Second, 10*time.Millisecond)
}

// Concurrent deploys of different models each get a revision of their own:
// none overwrites another's (the catalog entry is updated by compare-and-set).
func TestConcurrentDeploysGetDistinctRevisions(t *testing.T) {
	_, catalog, deployer := newDeployer(t)
	ctx := context.Background()
	models := [][]byte{irisModel(t, 1), irisModel(t, 2), irisModel(t, 3)}
	errs := make(chan error, len(models))
	for _, model := range models {
		go func() {
			_, err := deployer.Deploy(ctx, parse(t, irisYAML), model)
			errs <- err
		}()
	}
	for range models {
		require.NoError(t, <-errs)
	}
	fn, err := catalog.Get(ctx, "iris")
	require.NoError(t, err)
	require.EqualValues(t, 3, fn.Status.Generation)
	require.Len(t, fn.Status.Revisions, 3)
	seen := map[string]bool{}
	for i, revision := range fn.Status.Revisions {
		require.Equal(t, fmt.Sprint(i+1), revision.Name)
		seen[revision.Model.SHA256] = true
	}
	require.Len(t, seen, 3, "every model has its own revision")
	require.Equal(t, "3", fn.Status.Revision)
}

func TestOlderRevisionsStayLiveUpToALimit(t *testing.T) {
	_, _, deployer := newDeployer(t)
	ctx := context.Background()
	var fn *functions.Function
	deploy := func(seed uint64, rollout bool) {
		t.Helper()
		spec := parse(t, irisYAML)
		if !rollout {
			spec.Spec.Rollout = nil
		}
		var err error
		fn, err = deployer.Deploy(ctx, spec, irisModel(t, seed))
		require.NoError(t, err)
	}
	for seed := range uint64(7) {
		deploy(seed+1, false)
	}
	require.Equal(t, "7", fn.Status.Revision)
	require.Len(t, fn.Status.Revisions, 5)
	first, ok := fn.Status.FindRevision("3")
	require.True(t, ok)
	require.NotEmpty(t, first.Model.SHA256)
	_, ok = fn.Status.FindRevision("2")
	require.False(t, ok, "the oldest revisions are pruned")

	for seed := range uint64(6) { // candidates replacing one another roll out from revision 7
		deploy(seed+10, true)
	}
	require.Equal(t, "13", fn.Status.Revision)
	require.Len(t, fn.Status.Revisions, 5)
	_, ok = fn.Status.FindRevision("7")
	require.True(t, ok, "the stable revision of a rollout is never pruned")
	require.Equal(t, "7", fn.Status.Rollout.Stable)
}
