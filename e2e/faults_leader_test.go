//go:build faults

package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/events"
	functionskube "sluice.dev/sluice/functions/kube"
)

// TestFaultsLeaderKilled: two autoscalers and two controllers against a
// real kube-apiserver, each pair electing a leader; SIGKILL both leaders,
// and the others take over: a function at zero is still scaled from zero
// when a request comes, and a new Function is still reconciled.
func TestFaultsLeaderKilled(t *testing.T) {
	k := startKube(t)
	cluster, namespace, js, version := k.cluster, k.namespace, k.js, k.model
	ctx := t.Context()
	run := func(component, identity string) (*proc, *syncBuffer) {
		args := []string{component, "--kubeconfig", cluster.Kubeconfig, "--namespace", namespace, "--nats-url", k.nats.ClientURL(),
			"--metrics-addr", "127.0.0.1:0", "--identity", identity}
		if component == "controller" {
			args = append(args, "--resync", "500ms", "--worker-nats-url", "nats://nats:4222")
		}
		p := startProc(t, component+"-"+identity, args...)
		return p, p.logs
	}
	leading := func(logs *syncBuffer, identity string) func() bool {
		return func() bool { return strings.Contains(logs.String(), "msg=leading identity="+identity) }
	}
	firstController, firstControllerLogs := run("controller", "first")
	firstAutoscaler, firstAutoscalerLogs := run("autoscaler", "first")
	require.Eventually(t, leading(firstControllerLogs, "first"), 30*time.Second, 50*time.Millisecond)
	require.Eventually(t, leading(firstAutoscalerLogs, "first"), 30*time.Second, 50*time.Millisecond)
	_, secondControllerLogs := run("controller", "second")
	_, secondAutoscalerLogs := run("autoscaler", "second")

	apply := func(name string) {
		function := "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: " + name + "}\nspec: {model: {uri: " + version.Object + "}, scaling: {maxReplicas: 2, scaleToZeroAfter: 2s}}\n"
		out, err := cluster.Kubectl(t, function, "apply", "--namespace", namespace, "-f", "-")
		require.NoError(t, err, out)
	}
	replicas := func(name string) int32 {
		deployment, err := cluster.Client.AppsV1().Deployments(namespace).Get(ctx, functionskube.DeploymentName(name, "1"), metav1.GetOptions{})
		if err != nil {
			return -1
		}
		return *deployment.Spec.Replicas
	}
	apply("iris")
	require.Eventually(t, func() bool { return replicas("iris") == 0 }, 60*time.Second, 50*time.Millisecond, "the leader creates the Deployment at zero")

	killed := time.Now()
	firstController.stop(syscall.SIGKILL)
	firstAutoscaler.stop(syscall.SIGKILL)
	require.Eventually(t, leading(secondAutoscalerLogs, "second"), 60*time.Second, 100*time.Millisecond, "the second autoscaler takes the Lease")
	tookOver := time.Since(killed)
	_, err := js.Publish(ctx, events.RequestSubject("iris", "1"), []byte("{}"))
	require.NoError(t, err)
	published := time.Now()
	require.Eventually(t, func() bool { return replicas("iris") >= 1 }, 30*time.Second, 50*time.Millisecond, "scaled from zero by the new leader")
	scaled := time.Since(published)

	apply("other")
	require.Eventually(t, func() bool { return replicas("other") == 0 }, 60*time.Second, 100*time.Millisecond, "the second controller reconciles a new Function")
	require.True(t, leading(secondControllerLogs, "second")())
	report(t, reliability{scenario: "autoscaler and controller leaders SIGKILLed", recover: tookOver,
		note: "recover: until the other autoscaler held the Lease; it then scaled a function from zero " + scaled.Round(10*time.Millisecond).String() + " after a request (the scale call is checked: no node runs pods here), and the other controller reconciled a new Function"})
}
