package kube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/kube"
	"sluice.dev/sluice/functions/train"
)

// TestControllerReconcilesFunctions: kubectl apply of a Function puts it in
// the catalog, creates its revision's worker Deployment owned by it, and
// its status says so; a change reaches the catalog; kubectl delete takes it
// out of NATS and returns — also when NATS is gone.
func TestControllerReconcilesFunctions(t *testing.T) {
	cluster, namespace := startWithCRD(t)
	server, _, js := natstest.JetStream(t)
	catalog, err := functions.OpenCatalog(t.Context(), js)
	require.NoError(t, err)
	classifier, _, _, err := train.FitFile(t.Context(), "../../deploy/demo/iris.csv", "", train.DefaultConfig())
	require.NoError(t, err)
	model, err := classifier.ONNX()
	require.NoError(t, err)
	version, err := catalog.PutModel(t.Context(), "iris", model, nil)
	require.NoError(t, err)

	cfg := kube.DefaultControllerConfig()
	cfg.Workers.Namespace, cfg.Resync, cfg.CleanupTimeout = namespace, time.Hour, 2*time.Second // changes, not resyncs, drive it
	dynamicClient, err := dynamic.NewForConfig(cluster.Config)
	require.NoError(t, err)
	controller, err := kube.NewController(cluster.Client, dynamicClient, js, catalog, functions.NewDeployer(js, catalog, events.DefaultQueueConfig()), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); require.NoError(t, controller.Run(ctx)) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	manifest := "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: iris}\nspec:\n  model: {uri: " + version.Object + "}\n  scaling: {maxReplicas: %d}\n"
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		out, err := cluster.Kubectl(t, stdin, append([]string{"--namespace", namespace}, args...)...)
		require.NoError(t, err, out)
		return out
	}
	kubectl(fmt.Sprintf(manifest, 4), "apply", "-f", "-")
	var resource struct {
		Metadata struct {
			Generation int64 `json:"generation"`
		} `json:"metadata"`
		Status kube.ResourceStatus `json:"status"`
	}
	require.Eventually(t, func() bool {
		require.NoError(t, json.Unmarshal([]byte(kubectl("", "get", "function", "iris", "-o", "json")), &resource))
		return ready(resource.Status.Conditions) && resource.Status.ObservedGeneration == resource.Metadata.Generation
	}, 30*time.Second, 100*time.Millisecond, "the Function never turned Ready")
	require.Equal(t, "1", resource.Status.Revision)
	require.Equal(t, "1=100", resource.Status.Weights)
	require.Regexp(t, `iris\s+True\s+0\s+0\s+1\s+1=100\s+\d+s`, kubectl("", "get", "functions"))

	fn, err := catalog.Get(t.Context(), "iris")
	require.NoError(t, err)
	require.Equal(t, version.SHA256, fn.Status.Model.SHA256)
	require.NoError(t, catalog.SetRevisionState(t.Context(), "iris", "1", functions.RevisionReady, ""))
	require.Eventually(t, func() bool {
		require.NoError(t, json.Unmarshal([]byte(kubectl("", "get", "function", "iris", "-o", "json")), &resource))
		return condition(resource.Status.Conditions, kube.ConditionModelReady) == metav1.ConditionTrue
	}, 10*time.Second, 100*time.Millisecond, "a change in the catalog reaches the status")
	deployment, err := cluster.Client.AppsV1().Deployments(namespace).Get(t.Context(), kube.DeploymentName("iris", "1"), metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "Function", deployment.OwnerReferences[0].Kind, "the worker Deployment belongs to the Function")

	// A trainer publishes a version the resource does not name: it stays.
	cfgTwo := train.DefaultConfig()
	cfgTwo.Seed = 2
	retrained, _, _, err := train.FitFile(t.Context(), "../../deploy/demo/iris.csv", "", cfgTwo)
	require.NoError(t, err)
	newModel, err := retrained.ONNX()
	require.NoError(t, err)
	published, err := catalog.PutModel(t.Context(), "iris", newModel, nil)
	require.NoError(t, err)
	fn.Spec.Model = functions.ModelSpec{URI: published.Object}
	_, err = functions.NewDeployer(js, catalog, events.DefaultQueueConfig()).Deploy(t.Context(), fn, nil)
	require.NoError(t, err)
	kubectl("", "label", "function", "iris", "touched=yes") // a reconcile
	require.Never(t, func() bool {
		fn, err := catalog.Get(t.Context(), "iris")
		return err != nil || fn.Status.Revision != "2"
	}, 2*time.Second, 100*time.Millisecond, "the controller keeps the published version (revision 2)")

	kubectl(fmt.Sprintf(manifest, 8), "apply", "-f", "-")
	require.Eventually(t, func() bool {
		fn, err := catalog.Get(t.Context(), "iris")
		return err == nil && fn.Spec.Scaling.MaxReplicas == 8
	}, 30*time.Second, 100*time.Millisecond, "the change reached the catalog")
	fn, err = catalog.Get(t.Context(), "iris")
	require.NoError(t, err)
	require.Equal(t, "2", fn.Status.Revision, "a scaling change cuts no revision, and keeps the published one")

	started := time.Now()
	kubectl("", "delete", "function", "iris", "--timeout=30s")
	_, err = catalog.Get(t.Context(), "iris")
	require.ErrorIs(t, err, functions.ErrNotFound, "the function left the catalog before its resource went")
	require.Less(t, time.Since(started), 30*time.Second)

	kubectl(fmt.Sprintf(manifest, 4), "apply", "-f", "-")
	require.Eventually(t, func() bool {
		_, err := catalog.Get(t.Context(), "iris")
		return err == nil
	}, 30*time.Second, 100*time.Millisecond)
	server.Shutdown() // NATS is gone: deletion still finishes
	started = time.Now()
	kubectl("", "delete", "function", "iris", "--timeout=30s")
	require.Less(t, time.Since(started), 30*time.Second)
}

func ready(conditions []metav1.Condition) bool {
	return condition(conditions, kube.ConditionReady) == metav1.ConditionTrue
}

func condition(conditions []metav1.Condition, kind string) metav1.ConditionStatus {
	for _, c := range conditions {
		if c.Type == kind {
			return c.Status
		}
	}
	return ""
}
