package kube_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/e2e/kubetest"
	"sluice.dev/sluice/functions/kube"
	"sluice.dev/sluice/functions/retrain"
)

// The contract's trainer: with trainerEnv set, the test binary appends a
// line to the file named by recordEnv, prints a line, and then succeeds,
// exits 3 or hangs. The fake kubelet reads the same variables from a Job's
// Pod, so one Run means the same to both launchers. Read in init, before
// flags are parsed: the Run's Args are the trainer's, not the test's.
const (
	trainerEnv = "SLUICE_CONTRACT_TRAINER"
	recordEnv  = "SLUICE_CONTRACT_RECORD"
)

const (
	trainerSucceeds = "succeed"
	trainerFails    = "fail"
	trainerHangs    = "hang"
	trainerExitCode = 3
)

func init() {
	if behaviour := os.Getenv(trainerEnv); behaviour != "" {
		os.Exit(playTrainer(behaviour, os.Getenv(recordEnv)))
	}
}

func playTrainer(behaviour, record string) int {
	if err := recordStart(record); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("training")
	switch behaviour {
	case trainerSucceeds:
		return 0
	case trainerFails:
		fmt.Fprintln(os.Stderr, "no data")
		return trainerExitCode
	}
	time.Sleep(time.Hour) // until the launcher stops it
	return 0
}

// recordStart appends a line to path, once per trainer started.
func recordStart(path string) error {
	file, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = file.WriteString("started\n")
	return errors.Join(err, file.Close())
}

// launcherUnderTest is one implementation of retrain.Launcher, and the checks
// of its own it makes once the contract has run.
type launcherUnderTest struct {
	launcher retrain.Launcher
	after    func(t *testing.T, launched []retrain.Run)
}

// TestLauncherContract runs the same assertions against every Launcher.
func TestLauncherContract(t *testing.T) {
	implementations := []struct {
		name  string
		start func(t *testing.T) launcherUnderTest
	}{
		{name: "process", start: startProcessLauncher},
		{name: "job", start: startJobLauncher},
	}
	for _, implementation := range implementations {
		t.Run(implementation.name, func(t *testing.T) {
			runLauncherContract(t, implementation.start(t))
		})
	}
}

// runLauncherContract is what every Launcher must do: report a run that
// succeeds, one that fails and one stopped at its deadline; start a name
// launched twice once; not know a name never launched; refuse nonsense.
func runLauncherContract(t *testing.T, under launcherUnderTest) {
	t.Helper()
	ctx := t.Context()
	launcher := under.launcher
	records := t.TempDir()
	newRun := func(name, behaviour string, deadline time.Duration) retrain.Run {
		return retrain.Run{
			Name: name, Function: "iris", Deadline: deadline,
			Args: []string{"train", "--function", "iris", "--publish"},
			Env:  map[string]string{trainerEnv: behaviour, recordEnv: filepath.Join(records, name), "SLUICE_FUNCTION": "iris"},
		}
	}
	succeeds := newRun("iris-succeeds", trainerSucceeds, time.Minute)
	fails := newRun("iris-fails", trainerFails, time.Minute)
	hangs := newRun("iris-hangs", trainerHangs, 1500*time.Millisecond)
	launched := []retrain.Run{succeeds, fails, hangs}

	started := time.Now()
	for _, run := range launched {
		require.NoError(t, launcher.Launch(ctx, run))
	}
	require.NoError(t, launcher.Launch(ctx, succeeds), "launching a name again is no error")

	done := awaitDone(t, launcher, 30*time.Second, succeeds.Name, fails.Name, hangs.Name)
	require.Equal(t, retrain.RunStatus{Phase: retrain.Succeeded}, done[succeeds.Name].status)

	failed := done[fails.Name].status
	require.Equal(t, retrain.Failed, failed.Phase)
	require.Equal(t, retrain.ReasonTrainerFailed, failed.Reason)
	require.NotEmpty(t, failed.Message, "a person learns why")

	stopped := done[hangs.Name]
	require.Equal(t, retrain.Failed, stopped.status.Phase)
	require.Equal(t, retrain.ReasonDeadlineExceeded, stopped.status.Reason)
	require.NotEmpty(t, stopped.status.Message)
	after := stopped.at.Sub(started)
	// A Job's start time has whole seconds, so its deadline may come up to 1s early.
	require.GreaterOrEqual(t, after, hangs.Deadline-time.Second, "stopped before its deadline")
	require.Less(t, after, hangs.Deadline+5*time.Second, "stopped late")

	require.NoError(t, launcher.Launch(ctx, succeeds), "launching a finished run again is no error")
	status, err := launcher.Status(ctx, succeeds.Name)
	require.NoError(t, err)
	require.Equal(t, retrain.Succeeded, status.Phase, "and changes nothing")
	require.Equal(t, 1, linesIn(t, succeeds.Env[recordEnv]), "three launches of one name start one trainer")

	_, err = launcher.Status(ctx, "iris-never-launched")
	require.ErrorIs(t, err, retrain.ErrRunNotFound)

	noName := newRun("", trainerSucceeds, time.Minute)
	require.Error(t, launcher.Launch(ctx, noName), "a run needs a name")
	noDeadline := newRun("iris-no-deadline", trainerSucceeds, 0)
	require.Error(t, launcher.Launch(ctx, noDeadline), "a run needs a deadline")
	_, err = launcher.Status(ctx, noDeadline.Name)
	require.ErrorIs(t, err, retrain.ErrRunNotFound, "a run refused is not launched")

	under.after(t, launched)
}

// doneRun is a run's final status and when it was first seen.
type doneRun struct {
	status retrain.RunStatus
	at     time.Time
}

// awaitDone polls every named run together until all are done, so that each
// one's time is that of its end, not of the runs waited for before it.
func awaitDone(t *testing.T, launcher retrain.Launcher, waitFor time.Duration, names ...string) map[string]doneRun {
	t.Helper()
	done := map[string]doneRun{}
	require.Eventually(t, func() bool {
		for _, name := range names {
			if _, ok := done[name]; ok {
				continue
			}
			status, err := launcher.Status(t.Context(), name)
			if err == nil && status.Done() {
				done[name] = doneRun{status: status, at: time.Now()}
			}
		}
		return len(done) == len(names)
	}, waitFor, 50*time.Millisecond, "runs done: %v", done)
	return done
}

func linesIn(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return bytes.Count(data, []byte("\n"))
}

func startProcessLauncher(t *testing.T) launcherUnderTest {
	t.Helper()
	output := &lockedBuffer{}
	cfg := retrain.DefaultProcessConfig()
	cfg.Program, cfg.Output, cfg.StopTimeout = os.Args[0], output, 5*time.Second
	launcher, err := retrain.NewProcessLauncher(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(launcher.Close)
	return launcherUnderTest{launcher: launcher, after: func(t *testing.T, launched []retrain.Run) {
		t.Helper()
		for _, run := range launched {
			require.Contains(t, output.String(), run.Name+": training\n", "each line of output is prefixed by its run")
		}
		// Close stops what still runs and waits for it.
		closing := launched[0]
		closing.Name, closing.Env = "iris-closing", map[string]string{trainerEnv: trainerHangs, recordEnv: closing.Env[recordEnv] + "-closing"}
		require.NoError(t, launcher.Launch(t.Context(), closing))
		require.Eventually(t, func() bool { return strings.Contains(output.String(), "iris-closing: training\n") },
			10*time.Second, 20*time.Millisecond, "the trainer started")
		launcher.Close()
		status, err := launcher.Status(t.Context(), closing.Name)
		require.NoError(t, err)
		require.Equal(t, retrain.Failed, status.Phase, "stopped by Close")
		require.Error(t, launcher.Launch(t.Context(), closing), "closed")
	}}
}

func startJobLauncher(t *testing.T) launcherUnderTest {
	t.Helper()
	cluster := kubetest.Start(t) // the real Job controller, and no kubelet: the fake one plays it
	cfg := kube.DefaultJobConfig()
	cfg.Namespace, cfg.Image, cfg.ServiceAccountName = cluster.NewNamespace(t), "registry.example/sluice:1.2.3", "trainer"
	launcher, err := kube.NewJobLauncher(cluster.Client, cfg)
	require.NoError(t, err)
	runFakeKubelet(t, cluster.Client, cfg.Namespace)
	return launcherUnderTest{launcher: launcher, after: func(t *testing.T, launched []retrain.Run) {
		t.Helper()
		requireJobs(t, cluster.Client, cfg, launched)
	}}
}

// requireJobs checks the Jobs of the launched runs: one each, built as the
// Job launcher promises.
func requireJobs(t *testing.T, client kubernetes.Interface, cfg kube.JobConfig, launched []retrain.Run) {
	t.Helper()
	jobs, err := client.BatchV1().Jobs(cfg.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: kube.FunctionLabel + "=iris"})
	require.NoError(t, err)
	require.Len(t, jobs.Items, len(launched), "one Job per name, however often launched")

	run := launched[0]
	job, err := client.BatchV1().Jobs(cfg.Namespace).Get(t.Context(), run.Name, metav1.GetOptions{})
	require.NoError(t, err)
	labels := map[string]string{kube.FunctionLabel: "iris", kube.ComponentLabel: kube.ComponentTrainer}
	for key, value := range labels {
		require.Equal(t, value, job.Labels[key])
		require.Equal(t, value, job.Spec.Template.Labels[key])
	}
	require.Equal(t, int32(0), *job.Spec.BackoffLimit, "the retrain controller decides retries")
	require.Equal(t, int64(60), *job.Spec.ActiveDeadlineSeconds)
	require.Equal(t, int32(3600), *job.Spec.TTLSecondsAfterFinished)
	pod := job.Spec.Template.Spec
	require.Equal(t, corev1.RestartPolicyNever, pod.RestartPolicy)
	require.Equal(t, "trainer", pod.ServiceAccountName)
	require.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.Len(t, pod.Containers, 1)
	container := pod.Containers[0]
	require.Equal(t, cfg.Image, container.Image)
	require.Equal(t, run.Args, container.Args)
	require.Equal(t, []corev1.EnvVar{
		{Name: recordEnv, Value: run.Env[recordEnv]},
		{Name: trainerEnv, Value: run.Env[trainerEnv]},
		{Name: "SLUICE_FUNCTION", Value: "iris"},
	}, container.Env, "sorted by name")
	require.False(t, *container.SecurityContext.AllowPrivilegeEscalation)
	require.True(t, *container.SecurityContext.ReadOnlyRootFilesystem)
	require.Equal(t, []corev1.Capability{"ALL"}, container.SecurityContext.Capabilities.Drop)

	hangs, err := client.BatchV1().Jobs(cfg.Namespace).Get(t.Context(), launched[2].Name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(2), *hangs.Spec.ActiveDeadlineSeconds, "1.5s rounds up to 2s")
}

// runFakeKubelet plays the kubelet for namespace until the test ends: it
// "runs" each new Pod's trainer as the test binary would — records its
// start, then marks the Pod Succeeded, Failed with exit code 3, or leaves it.
func runFakeKubelet(t *testing.T, client kubernetes.Interface, namespace string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		played := map[types.UID]bool{}
		ticker := time.NewTicker(50 * time.Millisecond)
		defer ticker.Stop()
		for {
			pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
			for i := 0; err == nil && i < len(pods.Items); i++ {
				pod := &pods.Items[i]
				if played[pod.UID] || pod.DeletionTimestamp != nil {
					continue
				}
				if err := playPod(ctx, client, pod); err != nil {
					t.Logf("fake kubelet: pod %s: %v", pod.Name, err) // tried again on the next tick
					continue
				}
				played[pod.UID] = true
			}
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// playPod records the Pod's start and writes the status its trainer would end with.
func playPod(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) error {
	container := pod.Spec.Containers[0]
	env := map[string]string{}
	for _, variable := range container.Env {
		env[variable.Name] = variable.Value
	}
	phase, exitCode := corev1.PodSucceeded, int32(0)
	switch env[trainerEnv] {
	case trainerFails:
		phase, exitCode = corev1.PodFailed, trainerExitCode
	case trainerHangs:
		return recordStart(env[recordEnv]) // runs until the Job controller deletes it
	}
	pod.Status.Phase = phase
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: container.Name, Image: container.Image,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode}},
	}}
	if _, err := client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return err
	}
	return recordStart(env[recordEnv])
}

// lockedBuffer is a bytes.Buffer that the launcher writes while the test reads.
type lockedBuffer struct {
	mu     sync.Mutex
	buffer bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buffer.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buffer.String()
}
