package kube_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/kube"
)

func iris(t *testing.T, device string) (*functions.Function, functions.RevisionStatus) {
	t.Helper()
	fn := &functions.Function{Metadata: functions.Metadata{Name: "iris"}, Spec: functions.Spec{Runtime: functions.RuntimeSpec{Device: device}}}
	fn.Default()
	revision := functions.RevisionStatus{Name: "3", Runtime: fn.Spec.Runtime}
	fn.Status.Revision, fn.Status.Revisions = revision.Name, []functions.RevisionStatus{revision}
	return fn, revision
}

func TestDeployment(t *testing.T) {
	cfg := kube.DefaultWorkerConfig()
	cfg.Image, cfg.Namespace, cfg.NATSURL = "registry.example/sluice:1.2.3", "models", "nats://nats.models:4222"
	cfg.ONNXRuntimeLib = "/usr/lib/libonnxruntime.so"
	require.NoError(t, cfg.Validate())

	cases := []struct {
		name                       string
		specDevice, revisionDevice string
		gpu                        bool
	}{
		{name: "cpu", specDevice: functions.DeviceCPU, revisionDevice: functions.DeviceCPU},
		{name: "gpu", specDevice: functions.DeviceGPU, revisionDevice: functions.DeviceGPU, gpu: true},
		// A live revision keeps the runtime it was made with, whatever the spec says now.
		{name: "the revision's runtime wins", specDevice: functions.DeviceCPU, revisionDevice: functions.DeviceGPU, gpu: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fn, revision := iris(t, tc.specDevice)
			revision.Runtime.Device = tc.revisionDevice
			deployment := kube.Deployment(fn, revision, cfg)

			require.Equal(t, "iris-r3", deployment.Name)
			require.Equal(t, "models", deployment.Namespace)
			require.Equal(t, int32(0), *deployment.Spec.Replicas, "created at zero: the autoscaler owns replicas")
			selector := map[string]string{kube.FunctionLabel: "iris", kube.RevisionLabel: "3"}
			require.Equal(t, selector, deployment.Spec.Selector.MatchLabels)
			for key, value := range selector {
				require.Equal(t, value, deployment.Labels[key])
				require.Equal(t, value, deployment.Spec.Template.Labels[key], "the template matches the selector")
			}
			pod := deployment.Spec.Template.Spec
			require.Len(t, pod.Containers, 1)
			container := pod.Containers[0]
			require.Equal(t, cfg.Image, container.Image)
			require.Equal(t, []string{
				"worker", "--function", "iris", "--revision", "3", "--nats-url", "nats://nats.models:4222",
				"--metrics-addr", ":9090", "--drain-timeout", "30s",
			}, container.Args)
			require.Less(t, cfg.DrainTimeout, time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second,
				"the worker drains before the kubelet kills it")
			require.Equal(t, []corev1.EnvVar{{Name: kube.ONNXRuntimeLibEnv, Value: cfg.ONNXRuntimeLib}}, container.Env)
			require.Equal(t, "/readyz", container.ReadinessProbe.HTTPGet.Path)
			require.Equal(t, "/livez", container.LivenessProbe.HTTPGet.Path)
			require.Equal(t, "metrics", container.ReadinessProbe.HTTPGet.Port.StrVal)
			require.Equal(t, int32(9090), container.Ports[0].ContainerPort)
			require.True(t, container.Resources.Requests.Cpu().Equal(resource.MustParse("1")))
			require.True(t, container.Resources.Limits.Memory().Equal(resource.MustParse("2Gi")))

			requireGPUPlacement(t, pod, tc.gpu)
		})
	}
}

// requireGPUPlacement checks that a pod asks for a GPU and goes to GPU nodes, or neither.
func requireGPUPlacement(t *testing.T, pod corev1.PodSpec, gpu bool) {
	t.Helper()
	gpus, asksGPU := pod.Containers[0].Resources.Limits[kube.GPUResource]
	require.Equal(t, gpu, asksGPU)
	if !gpu {
		require.Empty(t, pod.NodeSelector)
		require.Empty(t, pod.Tolerations)
		return
	}
	require.True(t, gpus.Equal(resource.MustParse("1")))
	require.Equal(t, map[string]string{"nvidia.com/gpu.present": "true"}, pod.NodeSelector)
	require.Equal(t, []corev1.Toleration{{
		Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule,
	}}, pod.Tolerations)
}

func TestDeploymentLeavesOptionalSettingsOut(t *testing.T) {
	fn, revision := iris(t, functions.DeviceGPU)
	cfg := kube.DefaultWorkerConfig()
	cfg.GPUNodeSelector = nil
	deployment := kube.Deployment(fn, revision, cfg)
	require.Empty(t, deployment.Spec.Template.Spec.Containers[0].Env, "no ONNX Runtime path unless configured")
	require.Empty(t, deployment.Spec.Template.Spec.NodeSelector)
	require.NotEmpty(t, deployment.Spec.Template.Spec.Tolerations)
}

func TestDeploymentDoesNotShareConfigMaps(t *testing.T) {
	fn, revision := iris(t, functions.DeviceGPU)
	cfg := kube.DefaultWorkerConfig()
	first := kube.Deployment(fn, revision, cfg)
	first.Spec.Template.Spec.NodeSelector["mutated"] = "yes"
	first.Labels["mutated"] = "yes"
	second := kube.Deployment(fn, revision, cfg)
	require.NotContains(t, second.Spec.Template.Spec.NodeSelector, "mutated")
	require.NotContains(t, cfg.GPUNodeSelector, "mutated")
	require.NotContains(t, first.Spec.Template.Labels, "mutated", "object and template labels are separate maps")
}

func TestWorkerConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		change func(*kube.WorkerConfig)
		want   string
	}{
		{name: "default", change: func(*kube.WorkerConfig) {}},
		{name: "no image", change: func(c *kube.WorkerConfig) { c.Image = "" }, want: "Image"},
		{name: "bad namespace", change: func(c *kube.WorkerConfig) { c.Namespace = "Not_A_Label" }, want: "Namespace"},
		{name: "no NATS", change: func(c *kube.WorkerConfig) { c.NATSURL = "" }, want: "NATSURL"},
		{name: "port", change: func(c *kube.WorkerConfig) { c.MetricsPort = 0 }, want: "MetricsPort"},
		{name: "drain outlasts grace", change: func(c *kube.WorkerConfig) { c.DrainTimeout = c.TerminationGracePeriod }, want: "DrainTimeout"},
		{name: "grace in fractions", change: func(c *kube.WorkerConfig) { c.TerminationGracePeriod = 45500 * time.Millisecond }, want: "whole seconds"},
		{name: "cpu limit below request", change: func(c *kube.WorkerConfig) { c.CPULimit = resource.MustParse("500m") }, want: "CPURequest"},
		{name: "no memory", change: func(c *kube.WorkerConfig) { c.MemoryRequest = resource.Quantity{} }, want: "MemoryRequest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := kube.DefaultWorkerConfig()
			tc.change(&cfg)
			err := cfg.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// With NATS authorization and TLS, a worker logs in with its revision's own
// Secret and trusts the CA of the ConfigMap, each mounted read-only.
func TestDeploymentMountsCredentialsAndCA(t *testing.T) {
	fn, revision := iris(t, functions.DeviceCPU)
	cfg := kube.DefaultWorkerConfig()
	cfg.NATSURL, cfg.NATSCredentials, cfg.NATSCAConfigMap = "tls://nats:4222", true, "nats-ca"
	pod := kube.Deployment(fn, revision, cfg).Spec.Template.Spec
	container := pod.Containers[0]
	require.Equal(t, []string{"--nats-creds", "/var/run/sluice/nats/nats.creds"}, container.Args[len(container.Args)-2:])
	require.Contains(t, container.Env, corev1.EnvVar{Name: "SLUICE_NATS_CA", Value: "/etc/sluice/nats-ca/ca.crt"})
	volumes := map[string]corev1.VolumeSource{}
	for _, volume := range pod.Volumes {
		volumes[volume.Name] = volume.VolumeSource
	}
	require.Equal(t, kube.CredentialsSecretName("iris-r3"), volumes["nats-credentials"].Secret.SecretName)
	require.Equal(t, "nats-ca", volumes["nats-ca"].ConfigMap.Name)
	mounts := map[string]corev1.VolumeMount{}
	for _, mount := range container.VolumeMounts {
		mounts[mount.Name] = mount
	}
	require.True(t, mounts["nats-credentials"].ReadOnly)
	require.Equal(t, "/var/run/sluice/nats", mounts["nats-credentials"].MountPath)
	require.Equal(t, "/etc/sluice/nats-ca", mounts["nats-ca"].MountPath)
}
