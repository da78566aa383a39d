package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/e2e/kubetest"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	functionskube "sluice.dev/sluice/functions/kube"
)

// kube is a real control plane with the Function CRD and a namespace, a
// nats-server, and the iris model in its model store.
type kube struct {
	cluster   *kubetest.Cluster
	namespace string
	nats      *server.Server
	nc        *nats.Conn
	js        jetstream.JetStream
	catalog   *functions.Catalog
	model     *functions.ModelVersion
}

func startKube(t *testing.T) kube {
	t.Helper()
	k := kube{cluster: kubetest.Start(t)}
	k.cluster.InstallCRDs(t, "../deploy/crd/functions.sluice.dev.yaml")
	k.namespace = k.cluster.NewNamespace(t)
	k.nats, k.nc, k.js = natstest.JetStream(t)
	var err error
	k.catalog, err = functions.OpenCatalog(t.Context(), k.js)
	require.NoError(t, err)
	_, model := trainIris(t)
	k.model, err = k.catalog.PutModel(t.Context(), "iris", model, nil)
	require.NoError(t, err)
	return k
}

// `sluice controller` and `sluice autoscaler` against a real kube-apiserver:
// kubectl apply of a Function puts it in the catalog and creates its worker
// Deployment at zero; the autoscaler scales it with the queue's depth and
// back to zero once the queue has been idle for scaleToZeroAfter; kubectl
// delete takes the function out of the catalog.
func TestOnKubernetesAFunctionScalesWithItsQueue(t *testing.T) {
	k := startKube(t)
	cluster, namespace, srv, js, catalog, version := k.cluster, k.namespace, k.nats, k.js, k.catalog, k.model
	ctx := context.Background()

	common := []string{"--kubeconfig", cluster.Kubeconfig, "--namespace", namespace, "--nats-url", srv.ClientURL(), "--metrics-addr", "127.0.0.1:0", "--identity", "e2e"}
	_, _ = runBinary(t, append([]string{"controller", "--resync", "500ms", "--worker-nats-url", "nats://nats:4222"}, common...)...)
	_, _ = runBinary(t, append([]string{"autoscaler"}, common...)...)
	function := "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: iris}\nspec: {model: {uri: " + version.Object + "}, scaling: {maxReplicas: 3, targetQueueDepth: 8, scaleToZeroAfter: 2s}}\n"
	out, err := cluster.Kubectl(t, function, "apply", "--namespace", namespace, "-f", "-")
	require.NoError(t, err, out)

	replicas := func() int32 {
		deployment, err := cluster.Client.AppsV1().Deployments(namespace).Get(ctx, functionskube.DeploymentName("iris", "1"), metav1.GetOptions{})
		if err != nil {
			return -1
		}
		return *deployment.Spec.Replicas
	}
	require.Eventually(t, func() bool { return replicas() == 0 }, 60*time.Second, 50*time.Millisecond,
		"the controller creates the worker Deployment at zero (after winning the Lease)")

	for range 20 { // depth 20 at target 8 wants 3 replicas
		_, err := js.Publish(ctx, events.RequestSubject("iris", "1"), []byte("{}"))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return replicas() == 3 }, 30*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		list, err := cluster.Client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, event := range list.Items {
			if event.InvolvedObject.Name == "iris-r1" && event.Reason == "ScaledFromZero" &&
				strings.Contains(event.Message, "scaled to 3 replicas") {
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "each scale decision is a Kubernetes Event on the Deployment, with its reason")

	stream, err := js.Stream(ctx, events.StreamName("iris"))
	require.NoError(t, err)
	require.NoError(t, stream.Purge(ctx))
	require.Eventually(t, func() bool { return replicas() == 0 }, 30*time.Second, 50*time.Millisecond,
		"back to zero after scaleToZeroAfter")

	out, err = cluster.Kubectl(t, "", "get", "functions", "--namespace", namespace)
	require.NoError(t, err, out)
	require.Regexp(t, `iris\s+True\s+0\s+0\s+1\s+1=100`, out)
	out, err = cluster.Kubectl(t, "", "delete", "function", "iris", "--namespace", namespace, "--timeout=30s")
	require.NoError(t, err, out)
	_, err = catalog.Get(ctx, "iris")
	require.ErrorIs(t, err, functions.ErrNotFound, "deleting the Function takes it out of the catalog")
}

// runBinary runs the sluice binary with args until the test ends, prints
// its output if the test failed, and returns the process and its output.
func runBinary(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("sluice %s output:\n%s", args[0], logs.String())
		}
	})
	return cmd, logs
}

// TestASecondControllerTakesOverWhenTheLeaderIsKilled: two controllers, one
// leads; SIGKILL it, and the other reconciles the next Function once the
// leader's Lease has run out.
func TestASecondControllerTakesOverWhenTheLeaderIsKilled(t *testing.T) {
	k := startKube(t)
	cluster, namespace, srv, version := k.cluster, k.namespace, k.nats, k.model
	ctx := context.Background()
	controller := func(identity string) (*exec.Cmd, *syncBuffer) {
		return runBinary(t, "controller", "--kubeconfig", cluster.Kubeconfig, "--namespace", namespace, "--nats-url", srv.ClientURL(),
			"--metrics-addr", "127.0.0.1:0", "--identity", identity, "--resync", "500ms")
	}
	first, firstLogs := controller("first")
	require.Eventually(t, func() bool { return strings.Contains(firstLogs.String(), `msg=leading identity=first`) }, 30*time.Second, 50*time.Millisecond)
	_, secondLogs := controller("second")
	apply := func(name string) {
		function := "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: " + name + "}\nspec: {model: {uri: " + version.Object + "}}\n"
		out, err := cluster.Kubectl(t, function, "apply", "--namespace", namespace, "-f", "-")
		require.NoError(t, err, out)
	}
	created := func(name string) func() bool {
		return func() bool {
			_, err := cluster.Client.AppsV1().Deployments(namespace).Get(ctx, functionskube.DeploymentName(name, "1"), metav1.GetOptions{})
			return err == nil
		}
	}
	apply("iris")
	require.Eventually(t, created("iris"), 30*time.Second, 100*time.Millisecond, "the leader reconciles")

	require.NoError(t, first.Process.Kill())
	apply("other")
	require.Eventually(t, created("other"), 60*time.Second, 200*time.Millisecond, "the second controller carries on")
	require.Contains(t, secondLogs.String(), `msg=leading identity=second`)
}
