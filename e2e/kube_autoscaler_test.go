package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/e2e/kubetest"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	functionskube "sluice.dev/sluice/functions/kube"
)

// `sluice autoscaler` against a real kube-apiserver: it creates the worker
// Deployment of a deployed function at zero, scales it with the queue's
// depth, and back to zero once the queue has been idle for scaleToZeroAfter.
func TestKubeAutoscalerScalesDeploymentsWithQueueDepth(t *testing.T) {
	cluster := kubetest.Start(t)
	namespace := cluster.NewNamespace(t)
	srv, _, js := natstest.JetStream(t)
	ctx := context.Background()
	catalog, err := functions.OpenCatalog(ctx, js)
	require.NoError(t, err)
	_, model := trainIris(t)
	fn, err := functions.Parse([]byte("metadata: {name: iris}\nspec: {model: {path: ./iris.onnx}, scaling: {maxReplicas: 3, targetQueueDepth: 8, scaleToZeroAfter: 2s}}\n"))
	require.NoError(t, err)
	_, err = functions.NewDeployer(js, catalog, events.DefaultQueueConfig()).Deploy(ctx, fn, model)
	require.NoError(t, err)

	autoscaler := exec.Command(binary, "autoscaler", "--kubeconfig", cluster.Kubeconfig, "--namespace", namespace,
		"--nats-url", srv.ClientURL(), "--metrics-addr", "127.0.0.1:0", "--ensure-every", "200ms", "--identity", "e2e")
	logs := &syncBuffer{}
	autoscaler.Stdout, autoscaler.Stderr = logs, logs
	require.NoError(t, autoscaler.Start())
	t.Cleanup(func() {
		_ = autoscaler.Process.Kill()
		_ = autoscaler.Wait()
		if t.Failed() {
			t.Logf("sluice autoscaler output:\n%s", logs.String())
		}
	})
	replicas := func() int32 {
		deployment, err := cluster.Client.AppsV1().Deployments(namespace).Get(ctx, functionskube.DeploymentName("iris", "1"), metav1.GetOptions{})
		if err != nil {
			return -1
		}
		return *deployment.Spec.Replicas
	}
	require.Eventually(t, func() bool { return replicas() == 0 }, 60*time.Second, 50*time.Millisecond,
		"the worker Deployment is created at zero (after winning the Lease)")

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
}
