package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/functions/retrain"
)

// ComponentTrainer is the ComponentLabel of training Jobs and their Pods.
const ComponentTrainer = "trainer"

// JobConfig says how training Jobs are built; the run says what they train.
type JobConfig struct {
	// Image is the sluice image; its entrypoint is the sluice binary, which
	// a run's Args follow.
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// Namespace holds the training Jobs.
	Namespace string
	// ServiceAccountName runs trainers under that account; empty means the namespace default.
	ServiceAccountName string
	// TTLAfterFinished is how long a finished Job is kept, and with it the
	// run's status: after it, Status says ErrRunNotFound. Whole seconds.
	TTLAfterFinished time.Duration
	// NATSCAConfigMap, when set, names the ConfigMap whose ca.crt signed
	// NATS's TLS certificate (WorkerConfig.NATSCAConfigMap).
	NATSCAConfigMap string
}

// DefaultJobConfig runs sluice:latest in namespace sluice and keeps finished
// Jobs for an hour.
func DefaultJobConfig() JobConfig {
	return JobConfig{
		Image:            "sluice:latest",
		ImagePullPolicy:  corev1.PullIfNotPresent,
		Namespace:        "sluice",
		TTLAfterFinished: time.Hour,
	}
}

// Validate reports every field that is wrong.
func (c JobConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("job config: "+format, args...)) }
	if c.Image == "" {
		bad("Image is required")
	}
	if problems := validation.IsDNS1123Label(c.Namespace); len(problems) > 0 {
		bad("Namespace %q: %v", c.Namespace, problems)
	}
	if c.TTLAfterFinished <= 0 || c.TTLAfterFinished%time.Second != 0 {
		bad("TTLAfterFinished must be positive whole seconds, got %s", c.TTLAfterFinished)
	}
	return errors.Join(errs...)
}

// JobLauncher runs each training run as a batch/v1 Job named after it and
// reads the run's status from the Job's conditions. The Job controller runs
// the Pod once: retrying is the retrain controller's decision.
type JobLauncher struct {
	client kubernetes.Interface
	cfg    JobConfig
}

var _ retrain.Launcher = (*JobLauncher)(nil)

// NewJobLauncher returns a JobLauncher that creates Jobs through client.
func NewJobLauncher(client kubernetes.Interface, cfg JobConfig) (*JobLauncher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &JobLauncher{client: client, cfg: cfg}, nil
}

// Launch creates run's Job; a Job of that name existing already is no error.
func (l *JobLauncher) Launch(ctx context.Context, run retrain.Run) error {
	if problems := validation.IsDNS1123Label(run.Name); len(problems) > 0 {
		return fmt.Errorf("launch %q: Name must be a DNS label: %v", run.Name, problems)
	}
	if run.Deadline <= 0 {
		return fmt.Errorf("launch %s: Deadline must be positive, got %s", run.Name, run.Deadline)
	}
	job, err := l.client.BatchV1().Jobs(l.cfg.Namespace).Create(ctx, trainingJob(run, l.cfg), metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("launch %s: create job %s/%s: %w", run.Name, l.cfg.Namespace, run.Name, err)
	}
	if run.Credentials == nil {
		return nil
	}
	// The Job's pod waits for its credentials' Secret, which goes with the Job.
	secret := credentialsSecret(CredentialsSecretName(run.Name), l.cfg.Namespace, job.Labels, run.Credentials)
	secret.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}
	if _, err := l.client.CoreV1().Secrets(l.cfg.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("launch %s: create secret %s: %w", run.Name, secret.Name, err)
	}
	return nil
}

// Status reads the run's status from its Job; a Job that is not there, never
// created or deleted after TTLAfterFinished, is ErrRunNotFound.
func (l *JobLauncher) Status(ctx context.Context, name string) (retrain.RunStatus, error) {
	job, err := l.client.BatchV1().Jobs(l.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return retrain.RunStatus{}, fmt.Errorf("status %s: job %s/%s: %w", name, l.cfg.Namespace, name, retrain.ErrRunNotFound)
	}
	if err != nil {
		return retrain.RunStatus{}, fmt.Errorf("status %s: get job %s/%s: %w", name, l.cfg.Namespace, name, err)
	}
	return jobStatus(job), nil
}

// jobStatus maps a Job's conditions to a run's status. Since Kubernetes 1.31
// a Job is first SuccessCriteriaMet or FailureTarget, and Complete or Failed
// only once its Pods have terminated; the first is final already, and sooner.
func jobStatus(job *batchv1.Job) retrain.RunStatus {
	for _, condition := range job.Status.Conditions {
		if condition.Status != corev1.ConditionTrue {
			continue
		}
		switch condition.Type {
		case batchv1.JobComplete, batchv1.JobSuccessCriteriaMet:
			return retrain.RunStatus{Phase: retrain.Succeeded}
		case batchv1.JobFailed, batchv1.JobFailureTarget:
			status := retrain.RunStatus{Phase: retrain.Failed, Reason: retrain.ReasonTrainerFailed, Message: condition.Message}
			if condition.Reason == batchv1.JobReasonDeadlineExceeded {
				status.Reason = retrain.ReasonDeadlineExceeded
			}
			if status.Message == "" {
				status.Message = condition.Reason
			}
			return status
		}
	}
	return retrain.RunStatus{Phase: retrain.Running}
}

// trainingJob builds run's Job: one Pod, never restarted nor retried, stopped
// at the run's deadline rounded up to whole seconds, locked down like a worker.
func trainingJob(run retrain.Run, cfg JobConfig) *batchv1.Job {
	labels := map[string]string{FunctionLabel: run.Function, ComponentLabel: ComponentTrainer}
	deadline := max(1, int64((run.Deadline+time.Second-1)/time.Second))
	ttl := int32(cfg.TTLAfterFinished / time.Second)
	container := corev1.Container{
		Name:            "trainer",
		Image:           cfg.Image,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Args:            run.Args,
		Env:             sortedEnv(run.Env),
	}
	pod := corev1.PodSpec{
		RestartPolicy:      corev1.RestartPolicyNever,
		ServiceAccountName: cfg.ServiceAccountName,
		Containers:         []corev1.Container{container},
	}
	if run.Credentials != nil {
		withCredentials(&pod, CredentialsSecretName(run.Name))
		pod.Containers[0].Env = append(pod.Containers[0].Env, corev1.EnvVar{Name: retrain.EnvNATSCreds, Value: credentialsPath})
	}
	withNATSCA(&pod, cfg.NATSCAConfigMap)
	hardened(&pod)
	return &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: run.Name, Namespace: cfg.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr(int32(0)),
			ActiveDeadlineSeconds:   &deadline,
			TTLSecondsAfterFinished: &ttl,
			Template:                corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod},
		},
	}
}

// sortedEnv is env as container variables, sorted by name.
func sortedEnv(env map[string]string) []corev1.EnvVar {
	vars := make([]corev1.EnvVar, 0, len(env))
	for name, value := range env {
		vars = append(vars, corev1.EnvVar{Name: name, Value: value})
	}
	sort.Slice(vars, func(i, j int) bool { return vars[i].Name < vars[j].Name })
	return vars
}
