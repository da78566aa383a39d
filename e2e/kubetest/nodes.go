package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The fake nodes of WithFakeNodes.
const (
	CPUNode = "kwok-cpu"
	GPUNode = "kwok-gpu"
)

// kwokAnnotation marks the nodes kwok manages.
const kwokAnnotation = "kwok.x-k8s.io/node"

// kwokStages are the stage definitions kwok plays, from its module: a node
// turns Ready and keeps its lease; a pod turns Running and Ready, and is
// deleted once it is deleting (no kubelet is there to finish that).
var kwokStages = []string{
	"node/fast/node-initialize.yaml",
	"node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"pod/fast/pod-ready.yaml",
	"pod/fast/pod-complete.yaml",
	"pod/fast/pod-delete.yaml",
}

// startFakeNodes starts kube-scheduler and kwok, registers CPUNode and GPUNode
// and waits until both are Ready.
func (c *Cluster) startFakeNodes(t testing.TB) error {
	stages, err := writeKwokStages(c.dir)
	if err != nil {
		return err
	}
	if _, err := c.start("kube-scheduler", "--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--secure-port=0"); err != nil {
		return err
	}
	kwok, err := c.start("kwok", "--kubeconfig="+c.Kubeconfig, "--config="+stages,
		"--manage-nodes-with-annotation-selector="+kwokAnnotation+"=fake", "--cidr=10.244.0.0/16")
	if err != nil {
		return err
	}
	ctx := context.Background()
	for _, node := range []*corev1.Node{fakeNode(CPUNode, false), fakeNode(GPUNode, true)} {
		if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", node.Name, err)
		}
	}
	return waitReady(kwok, 60*time.Second, c.nodesReady(CPUNode, GPUNode))
}

// nodesReady checks that the nodes named are Ready.
func (c *Cluster) nodesReady(names ...string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		for _, name := range names {
			node, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !nodeReady(node) {
				return fmt.Errorf("node %s is not Ready", name)
			}
		}
		return nil
	}
}

// fakeNode is a node for kwok; a GPU node has GPUs, and the label and taint
// the NVIDIA GPU operator gives such nodes.
func fakeNode(name string, gpu bool) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods: resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{kwokAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels:      map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
		},
	}
	if gpu {
		capacity["nvidia.com/gpu"] = resource.MustParse("8")
		node.Labels["nvidia.com/gpu.present"] = "true"
		node.Spec.Taints = []corev1.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}}
	}
	node.Status = corev1.NodeStatus{Capacity: capacity, Allocatable: capacity.DeepCopy()}
	return node
}

func nodeReady(node *corev1.Node) bool {
	for _, condition := range node.Status.Conditions {
		if condition.Type == corev1.NodeReady {
			return condition.Status == corev1.ConditionTrue
		}
	}
	return false
}

// writeKwokStages joins kwok's stage definitions, read from its module in the
// Go module cache (`make kube-bins` put it there), into one config file.
func writeKwokStages(dir string) (string, error) {
	modules, err := moduleCache()
	if err != nil {
		return "", err
	}
	root := filepath.Join(modules, "sigs.k8s.io", "kwok@"+KwokVersion, "kustomize", "stage")
	documents := make([]string, 0, len(kwokStages))
	for _, stage := range kwokStages {
		data, err := os.ReadFile(filepath.Join(root, stage))
		if err != nil {
			return "", fmt.Errorf("kwok stages: %w: run `make kube-bins`, which downloads sigs.k8s.io/kwok@%s into the module cache", err, KwokVersion)
		}
		documents = append(documents, string(data))
	}
	path := filepath.Join(dir, "kwok-stages.yaml")
	return path, os.WriteFile(path, []byte(strings.Join(documents, "\n---\n")), 0o600)
}

// moduleCache is the Go module cache: $GOMODCACHE, else what `go env` says.
func moduleCache() (string, error) {
	if dir := os.Getenv("GOMODCACHE"); dir != "" {
		return dir, nil
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("find the Go module cache: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("find the Go module cache: `go env GOMODCACHE` is empty")
	}
	return dir, nil
}
