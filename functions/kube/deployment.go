// Package kube builds the Kubernetes objects of a Function: one worker
// Deployment per revision, created at zero replicas and scaled by the
// autoscaler through its /scale subresource (autoscaler/kube).
package kube

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"sluice.dev/sluice/functions"
)

// Labels that every worker Deployment and Pod carries.
const (
	// FunctionLabel names the function a worker serves.
	FunctionLabel = "sluice.dev/function"
	// RevisionLabel names the revision a worker serves.
	RevisionLabel = "sluice.dev/revision"
	// ComponentLabel and ComponentWorker mark worker Pods, for policies that select all of them.
	ComponentLabel  = "app.kubernetes.io/component"
	ComponentWorker = "worker"
)

// GPUResource is the extended resource a GPU worker asks one of.
const GPUResource corev1.ResourceName = "nvidia.com/gpu"

// ONNXRuntimeLibEnv is the environment variable through which a worker finds
// libonnxruntime.so in its image.
const ONNXRuntimeLibEnv = "SLUICE_ONNXRUNTIME_LIB"

// WorkerConfig says how worker Pods are built: what they run, where, and with
// how much. It is the same for every function; the Function says CPU or GPU.
type WorkerConfig struct {
	// Image is the sluice image; its entrypoint is the sluice binary.
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// Namespace holds the worker Deployments.
	Namespace string
	// NATSURL is how workers reach NATS from inside the cluster.
	NATSURL string
	// MetricsPort serves /metrics, /livez and /readyz.
	MetricsPort int32
	// DrainTimeout is how long a worker finishes held requests after SIGTERM;
	// it must be shorter than TerminationGracePeriod, after which the kubelet kills.
	DrainTimeout, TerminationGracePeriod time.Duration
	// CPU and memory of every worker, CPU or GPU.
	CPURequest, CPULimit, MemoryRequest, MemoryLimit resource.Quantity
	// GPUNodeSelector and GPUTolerations place GPU workers on GPU nodes.
	GPUNodeSelector map[string]string
	GPUTolerations  []corev1.Toleration
	// ONNXRuntimeLib, when set, is the path of libonnxruntime.so in the image.
	ONNXRuntimeLib string
	// ServiceAccountName runs workers under that account; empty means the namespace default.
	ServiceAccountName string
	// NATSCredentials mounts each revision's Secret CredentialsSecretName of
	// its Deployment, whose user may serve that revision only.
	NATSCredentials bool
	// NATSCAConfigMap, when set, names the ConfigMap whose ca.crt signed
	// NATS's TLS certificate, for a tls:// NATSURL.
	NATSCAConfigMap string
}

// DefaultWorkerConfig runs sluice:latest in namespace sluice against the
// Service nats, with 1 CPU and 1 GiB requested, 2 CPU and 2 GiB at most,
// draining for 30s within a 45s grace period, and GPU workers on nodes
// labelled nvidia.com/gpu.present=true that tolerate the nvidia.com/gpu taint.
func DefaultWorkerConfig() WorkerConfig {
	return WorkerConfig{
		Image:                  "sluice:latest",
		ImagePullPolicy:        corev1.PullIfNotPresent,
		Namespace:              "sluice",
		NATSURL:                "nats://nats:4222",
		MetricsPort:            9090,
		DrainTimeout:           30 * time.Second,
		TerminationGracePeriod: 45 * time.Second,
		CPURequest:             resource.MustParse("1"),
		CPULimit:               resource.MustParse("2"),
		MemoryRequest:          resource.MustParse("1Gi"),
		MemoryLimit:            resource.MustParse("2Gi"),
		GPUNodeSelector:        map[string]string{"nvidia.com/gpu.present": "true"},
		GPUTolerations: []corev1.Toleration{{
			Key: string(GPUResource), Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule,
		}},
	}
}

// Validate reports every field that is wrong.
func (c WorkerConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("worker config: "+format, args...)) }
	if c.Image == "" {
		bad("Image is required")
	}
	if problems := validation.IsDNS1123Label(c.Namespace); len(problems) > 0 {
		bad("Namespace %q: %v", c.Namespace, problems)
	}
	if c.NATSURL == "" {
		bad("NATSURL is required")
	}
	if c.MetricsPort < 1 || c.MetricsPort > 65535 {
		bad("MetricsPort must be between 1 and 65535, got %d", c.MetricsPort)
	}
	if c.DrainTimeout <= 0 || c.DrainTimeout >= c.TerminationGracePeriod {
		bad("want 0 < DrainTimeout < TerminationGracePeriod, got %s and %s", c.DrainTimeout, c.TerminationGracePeriod)
	}
	if c.TerminationGracePeriod%time.Second != 0 {
		bad("TerminationGracePeriod must be whole seconds, got %s", c.TerminationGracePeriod)
	}
	if c.CPURequest.Sign() <= 0 || c.CPULimit.Cmp(c.CPURequest) < 0 {
		bad("want 0 < CPURequest <= CPULimit, got %s and %s", c.CPURequest.String(), c.CPULimit.String())
	}
	if c.MemoryRequest.Sign() <= 0 || c.MemoryLimit.Cmp(c.MemoryRequest) < 0 {
		bad("want 0 < MemoryRequest <= MemoryLimit, got %s and %s", c.MemoryRequest.String(), c.MemoryLimit.String())
	}
	return errors.Join(errs...)
}

// DeploymentName is the name of the worker Deployment of one revision of a function.
func DeploymentName(function, revision string) string { return function + "-r" + revision }

// Labels are the labels that select the workers of one revision of a function.
func Labels(function, revision string) map[string]string {
	return map[string]string{FunctionLabel: function, RevisionLabel: revision}
}

// workerLabels are the selector labels plus the worker component label.
func workerLabels(function, revision string) map[string]string {
	labels := Labels(function, revision)
	labels[ComponentLabel] = ComponentWorker
	return labels
}

// Deployment builds the worker Deployment of one revision of fn, at zero
// replicas: the autoscaler owns its replica count from then on. The revision's
// runtime decides the CPU or GPU template. cfg must be valid.
func Deployment(fn *functions.Function, revision functions.RevisionStatus, cfg WorkerConfig) *appsv1.Deployment {
	name := fn.Metadata.Name
	grace := int64(cfg.TerminationGracePeriod / time.Second)
	pod := corev1.PodSpec{
		ServiceAccountName:            cfg.ServiceAccountName,
		TerminationGracePeriodSeconds: &grace,
		Containers:                    []corev1.Container{workerContainer(name, revision.Name, cfg)},
	}
	if cfg.NATSCredentials {
		withCredentials(&pod, CredentialsSecretName(DeploymentName(name, revision.Name)))
		pod.Containers[0].Args = append(pod.Containers[0].Args, "--nats-creds", credentialsPath)
	}
	withNATSCA(&pod, cfg.NATSCAConfigMap)
	hardened(&pod)
	if revision.Runtime.Device == functions.DeviceGPU {
		onGPU(&pod, cfg)
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: DeploymentName(name, revision.Name), Namespace: cfg.Namespace, Labels: workerLabels(name, revision.Name)},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: Labels(name, revision.Name)},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: workerLabels(name, revision.Name)}, Spec: pod},
		},
	}
}

// hardened makes a pod run as every sluice pod does: not as root, with the
// runtime's seccomp profile, and each container on a read-only root
// filesystem (with a writable /tmp), without privilege escalation or
// capabilities.
func hardened(pod *corev1.PodSpec) {
	pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	pod.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	for i := range pod.Containers {
		container := &pod.Containers[i]
		container.VolumeMounts = append(container.VolumeMounts, corev1.VolumeMount{Name: "tmp", MountPath: "/tmp"})
		container.SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
	}
}

// workerContainer runs `sluice worker` for one revision.
func workerContainer(function, revision string, cfg WorkerConfig) corev1.Container {
	port := intstr.FromString("metrics")
	container := corev1.Container{
		Name:            "worker",
		Image:           cfg.Image,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Args: []string{
			"worker", "--function", function, "--revision", revision, "--nats-url", cfg.NATSURL,
			"--metrics-addr", ":" + strconv.Itoa(int(cfg.MetricsPort)), "--drain-timeout", cfg.DrainTimeout.String(),
		},
		Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: cfg.MetricsPort, Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: cfg.CPURequest, corev1.ResourceMemory: cfg.MemoryRequest},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: cfg.CPULimit, corev1.ResourceMemory: cfg.MemoryLimit},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: port}},
			PeriodSeconds: 2, FailureThreshold: 2,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/livez", Port: port}},
			PeriodSeconds: 10, FailureThreshold: 3, TimeoutSeconds: 5,
		},
	}
	if cfg.ONNXRuntimeLib != "" {
		container.Env = append(container.Env, corev1.EnvVar{Name: ONNXRuntimeLibEnv, Value: cfg.ONNXRuntimeLib})
	}
	return container
}

// onGPU asks for one GPU and places the pod on a GPU node.
func onGPU(pod *corev1.PodSpec, cfg WorkerConfig) {
	limits := pod.Containers[0].Resources.Limits
	limits[GPUResource] = resource.MustParse("1")
	if len(cfg.GPUNodeSelector) > 0 {
		pod.NodeSelector = make(map[string]string, len(cfg.GPUNodeSelector))
		for key, value := range cfg.GPUNodeSelector {
			pod.NodeSelector[key] = value
		}
	}
	pod.Tolerations = append([]corev1.Toleration(nil), cfg.GPUTolerations...)
}

func ptr[T any](v T) *T { return &v }
