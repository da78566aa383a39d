package kubetest_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/e2e/kubetest"
)

func TestStartRunsPodsOnFakeNodes(t *testing.T) {
	started := time.Now()
	cluster := kubetest.Start(t, kubetest.WithFakeNodes())
	t.Logf("control plane with fake nodes ready in %s", time.Since(started).Round(time.Millisecond))
	ctx := context.Background()

	version, err := cluster.Client.Discovery().ServerVersion()
	require.NoError(t, err)
	require.Equal(t, kubetest.KubeVersion, version.GitVersion)

	namespace := cluster.NewNamespace(t)
	pods := cluster.Client.CoreV1().Pods(namespace)
	gpuPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "main", Image: "example.invalid/none",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}},
			}},
			Tolerations: []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		},
	}
	_, err = pods.Create(ctx, gpuPod, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		pod, err := pods.Get(ctx, "gpu", metav1.GetOptions{})
		return err == nil && pod.Spec.NodeName == kubetest.GPUNode && pod.Status.Phase == corev1.PodRunning && podReady(pod)
	}, 30*time.Second, 100*time.Millisecond, "a pod asking for a GPU runs on the GPU node")

	require.NoError(t, pods.Delete(ctx, "gpu", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		list, err := pods.List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 0
	}, 30*time.Second, 100*time.Millisecond, "kwok finishes the deletion a kubelet would")
}

func podReady(pod *corev1.Pod) bool {
	for _, condition := range pod.Status.Conditions {
		if condition.Type == corev1.PodReady {
			return condition.Status == corev1.ConditionTrue
		}
	}
	return false
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends the
// goroutine, as the real one does, so a test can check why Start failed.
type fatalRecorder struct {
	testing.TB
	mu      sync.Mutex
	message string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.message = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func TestStartFailsWithoutBinaries(t *testing.T) {
	recorder := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		kubetest.Start(recorder, kubetest.WithBinDir(t.TempDir()))
		t.Error("Start returned without binaries")
	}()
	<-done
	recorder.mu.Lock()
	defer recorder.mu.Unlock()
	require.Contains(t, recorder.message, "make kube-bins", "the failure names the make target")
	require.Contains(t, recorder.message, "etcd")
}
