package kube_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"sluice.dev/sluice/autoscaler/kube"
	"sluice.dev/sluice/e2e/kubetest"
	"sluice.dev/sluice/functions"
	functionskube "sluice.dev/sluice/functions/kube"
)

const waitFor, tick = 30 * time.Second, 50 * time.Millisecond

// createDeployment creates the worker Deployment of revision 1 of function
// name in namespace, on device, as the controller would.
func createDeployment(t *testing.T, client kubernetes.Interface, namespace, name, device string) {
	t.Helper()
	fn := &functions.Function{Metadata: functions.Metadata{Name: name}, Spec: functions.Spec{Runtime: functions.RuntimeSpec{Device: device}}}
	fn.Default()
	revision := functions.RevisionStatus{Name: "1", Runtime: fn.Spec.Runtime}
	cfg := functionskube.DefaultWorkerConfig()
	cfg.Namespace = namespace
	require.NoError(t, cfg.Validate())
	_, err := client.AppsV1().Deployments(namespace).Create(context.Background(),
		functionskube.Deployment(fn, revision, cfg), metav1.CreateOptions{})
	require.NoError(t, err)
}

// pods counts the pods of a revision that are not being deleted, and the nodes they are on.
func pods(t *testing.T, client kubernetes.Interface, namespace, function, revision string) (int, map[string]int) {
	t.Helper()
	list, err := client.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(functionskube.Labels(function, revision)).String(),
	})
	require.NoError(t, err)
	count, nodes := 0, map[string]int{}
	for _, pod := range list.Items {
		if pod.DeletionTimestamp == nil {
			count++
			nodes[pod.Spec.NodeName]++
		}
	}
	return count, nodes
}

func ready(t *testing.T, scaler *kube.Scaler, function string) int {
	t.Helper()
	n, err := scaler.Ready(context.Background(), function, "1")
	require.NoError(t, err)
	return n
}

// TestScalerOnFakeNodes shares one control plane with a scheduler and kwok
// among its subtests, each in a namespace of its own.
func TestScalerOnFakeNodes(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.WithFakeNodes())
	ctx := context.Background()

	for _, tc := range []struct {
		name, device, node string
	}{
		{name: "cpu", device: functions.DeviceCPU, node: kubetest.CPUNode},
		{name: "gpu", device: functions.DeviceGPU, node: kubetest.GPUNode},
	} {
		t.Run("scales "+tc.name+" workers up and to zero", func(t *testing.T) {
			namespace := cluster.NewNamespace(t)
			createDeployment(t, cluster.Client, namespace, "iris", tc.device)
			scaler := kube.NewScaler(cluster.Client, namespace)
			require.Equal(t, 0, ready(t, scaler, "iris"))

			require.NoError(t, scaler.Scale(ctx, "iris", "1", 3))
			require.Eventually(t, func() bool { return ready(t, scaler, "iris") == 3 }, waitFor, tick,
				"the Deployment reports 3 ready workers")
			count, nodes := pods(t, cluster.Client, namespace, "iris", "1")
			require.Equal(t, 3, count)
			require.Equal(t, map[string]int{tc.node: 3}, nodes, "%s workers run on %s", tc.name, tc.node)

			require.NoError(t, scaler.Scale(ctx, "iris", "1", 0))
			require.Eventually(t, func() bool {
				count, _ := pods(t, cluster.Client, namespace, "iris", "1")
				return count == 0 && ready(t, scaler, "iris") == 0
			}, waitFor, tick, "scaled to zero, no worker is left")
		})
	}

	t.Run("retries conflicting writes", func(t *testing.T) {
		testConflicts(t, cluster)
	})

	t.Run("reports a missing Deployment", func(t *testing.T) {
		scaler := kube.NewScaler(cluster.Client, cluster.NewNamespace(t))
		err := scaler.Scale(ctx, "absent", "1", 1)
		require.Error(t, err)
		require.True(t, apierrors.IsNotFound(err), "the error wraps the apiserver's NotFound: %v", err)
		require.ErrorContains(t, err, "absent-r1")
		require.Equal(t, 0, ready(t, scaler, "absent"), "a revision without a Deployment has no ready worker")
		require.ErrorContains(t, scaler.Scale(ctx, "absent", "1", -1), "between 0 and")
	})
}

// testConflicts scales one Deployment from several goroutines at once, through
// a client that counts the apiserver's 409 answers, until some were seen:
// every Scale must still succeed, and the last one wins.
func testConflicts(t *testing.T, cluster *kubetest.Cluster) {
	t.Helper()
	namespace := cluster.NewNamespace(t)
	createDeployment(t, cluster.Client, namespace, "iris", functions.DeviceCPU)
	var conflicts atomic.Int64
	config := rest.CopyConfig(cluster.Config)
	config.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(request *http.Request) (*http.Response, error) {
			response, err := next.RoundTrip(request)
			if err == nil && response.StatusCode == http.StatusConflict {
				conflicts.Add(1)
			}
			return response, err
		})
	})
	client, err := kubernetes.NewForConfig(config)
	require.NoError(t, err)
	scaler := kube.NewScaler(client, namespace)
	ctx := context.Background()

	for round := 0; round < 20 && conflicts.Load() == 0; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, 4*5)
		for writer := range 4 {
			wg.Go(func() {
				for step := range 5 {
					errs <- scaler.Scale(ctx, "iris", "1", 1+(writer+step)%4)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err, "a conflict is retried, not returned")
		}
	}
	require.Positive(t, conflicts.Load(), "the writers raced: the apiserver answered 409 at least once")
	t.Logf("409 conflicts retried: %d", conflicts.Load())

	require.NoError(t, scaler.Scale(ctx, "iris", "1", 2))
	deployment, err := cluster.Client.AppsV1().Deployments(namespace).Get(ctx, "iris-r1", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, int32(2), *deployment.Spec.Replicas)
	require.Eventually(t, func() bool { return ready(t, scaler, "iris") == 2 }, waitFor, tick)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(request *http.Request) (*http.Response, error) { return f(request) }

// TestScalerWithoutNodes runs no scheduler: the controller-manager still makes
// the ReplicaSet and the pods, but none of them is ready.
func TestScalerWithoutNodes(t *testing.T) {
	cluster := kubetest.Start(t)
	namespace := cluster.NewNamespace(t)
	createDeployment(t, cluster.Client, namespace, "iris", functions.DeviceCPU)
	scaler := kube.NewScaler(cluster.Client, namespace)
	ctx := context.Background()

	require.NoError(t, scaler.Scale(ctx, "iris", "1", 3))
	require.Eventually(t, func() bool {
		count, _ := pods(t, cluster.Client, namespace, "iris", "1")
		return count == 3
	}, waitFor, tick, "the controller-manager creates 3 pods")
	replicaSets, err := cluster.Client.AppsV1().ReplicaSets(namespace).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, replicaSets.Items, 1)
	require.Equal(t, int32(3), *replicaSets.Items[0].Spec.Replicas)
	require.Equal(t, 0, ready(t, scaler, "iris"), "pods that no node runs are not ready")

	require.NoError(t, scaler.Scale(ctx, "iris", "1", 0))
	require.Eventually(t, func() bool {
		count, _ := pods(t, cluster.Client, namespace, "iris", "1")
		return count == 0
	}, waitFor, tick, "scaled to zero, the pods are gone")
}
