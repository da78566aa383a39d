package e2e

import (
	"context"
	"log/slog"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	autoscalerkube "sluice.dev/sluice/autoscaler/kube"
	"sluice.dev/sluice/e2e/kubetest"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/access"
	"sluice.dev/sluice/functions"
	functionskube "sluice.dev/sluice/functions/kube"
	"sluice.dev/sluice/functions/retrain"
)

// identity is a client of the API server acting as one component's
// service account from deploy/rbac.
type identity struct {
	client  kubernetes.Interface
	dynamic dynamic.Interface
}

func as(t *testing.T, cluster *kubetest.Cluster, namespace, account string) identity {
	t.Helper()
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + namespace + ":" + account}
	client, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	dynamicClient, err := dynamic.NewForConfig(cfg)
	require.NoError(t, err)
	return identity{client: client, dynamic: dynamicClient}
}

// TestEachComponentMayDoOnlyWhatItNeeds runs the controller's and the
// autoscaler's real code as their service accounts of deploy/rbac against
// the real API server — all of it works — and then tries what neither needs,
// and what the activator, which needs nothing, might: each is Forbidden.
func TestEachComponentMayDoOnlyWhatItNeeds(t *testing.T) {
	k := startKube(t)
	cluster, namespace, nc, js, catalog, version := k.cluster, k.namespace, k.nc, k.js, k.catalog, k.model
	out, err := cluster.Kubectl(t, "", "apply", "--namespace", namespace, "-k", "../deploy/rbac")
	require.NoError(t, err, out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	controllerID := as(t, cluster, namespace, "sluice-controller")
	autoscalerID := as(t, cluster, namespace, "sluice-autoscaler")
	activatorID := as(t, cluster, namespace, "sluice-activator")

	// The controller, as itself: leads, reconciles, launches a Job, deletes.
	cfg := functionskube.DefaultControllerConfig()
	cfg.Workers.Namespace, cfg.Resync = namespace, 500*time.Millisecond
	cfg.Authority, err = access.NewAuthority()
	require.NoError(t, err)
	cfg.Workers.NATSCredentials = true
	controller, err := functionskube.NewController(controllerID.client, controllerID.dynamic, js, catalog, functions.NewDeployer(js, catalog, events.DefaultQueueConfig()), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	var wg sync.WaitGroup
	lead := func(account identity, lease string, run func(context.Context) error) {
		leader := autoscalerkube.DefaultLeaderConfig(namespace, lease+"-e2e")
		leader.Lease = lease
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := autoscalerkube.RunAsLeader(ctx, account.client, leader, run); ctx.Err() == nil {
				require.NoError(t, err)
			}
		}()
	}
	lead(controllerID, "sluice-controller", controller.Run)
	lead(autoscalerID, "sluice-autoscaler", func(ctx context.Context) error {
		return autoscalerkube.RecordScaleEvents(ctx, nc, autoscalerID.client, namespace)
	})
	defer func() { cancel(); wg.Wait() }()

	out, err = cluster.Kubectl(t, "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: iris}\nspec: {model: {uri: "+version.Object+"}}\n", "apply", "--namespace", namespace, "-f", "-")
	require.NoError(t, err, out)
	deployments := cluster.Client.AppsV1().Deployments(namespace)
	require.Eventually(t, func() bool {
		_, err := deployments.Get(ctx, functionskube.DeploymentName("iris", "1"), metav1.GetOptions{})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "the controller, as itself, created the worker Deployment")
	_, err = cluster.Client.CoreV1().Secrets(namespace).Get(ctx, functionskube.CredentialsSecretName(functionskube.DeploymentName("iris", "1")), metav1.GetOptions{})
	require.NoError(t, err, "and the Secret of its workers' NATS credentials")
	require.Eventually(t, func() bool {
		out, err := cluster.Kubectl(t, "", "get", "functions", "--namespace", namespace)
		return err == nil && regexp.MustCompile(`iris\s+True`).MatchString(out)
	}, 30*time.Second, 100*time.Millisecond, "and wrote its status")
	jobs := functionskube.DefaultJobConfig()
	jobs.Namespace = namespace
	launcher, err := functionskube.NewJobLauncher(controllerID.client, jobs)
	require.NoError(t, err)
	require.NoError(t, launcher.Launch(ctx, retrain.Run{Name: "iris-train-1-abcdef", Function: "iris", Args: []string{"train"}, Deadline: time.Minute, Credentials: []byte("creds")}))
	_, err = cluster.Client.CoreV1().Secrets(namespace).Get(ctx, functionskube.CredentialsSecretName("iris-train-1-abcdef"), metav1.GetOptions{})
	require.NoError(t, err, "the controller made the Secret of the trainer's NATS credentials")
	_, err = launcher.Status(ctx, "iris-train-1-abcdef")
	require.NoError(t, err, "the controller reads the Jobs it launched")

	// The autoscaler, as itself: scales through /scale, reads readiness, records Events.
	scaler := autoscalerkube.NewScaler(autoscalerID.client, namespace)
	require.NoError(t, scaler.Scale(ctx, "iris", "1", 2))
	_, err = scaler.Ready(ctx, "iris", "1")
	require.NoError(t, err)
	require.NoError(t, events.PublishScaleEvent(ctx, nc, "up", events.ScaleStatus{Function: "iris", Revision: "1", Desired: 2, Reason: "rbac test", At: time.Now()}))
	require.Eventually(t, func() bool {
		list, err := cluster.Client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) > 0
	}, 10*time.Second, 100*time.Millisecond, "the autoscaler, as itself, recorded the decision as an Event")

	forbidden := []struct {
		name string
		try  func() error
	}{
		{"the controller deletes a Deployment", func() error {
			return controllerID.client.AppsV1().Deployments(namespace).Delete(ctx, functionskube.DeploymentName("iris", "1"), metav1.DeleteOptions{})
		}},
		{"the controller scales a Deployment", func() error {
			_, err := controllerID.client.AppsV1().Deployments(namespace).GetScale(ctx, functionskube.DeploymentName("iris", "1"), metav1.GetOptions{})
			return err
		}},
		{"the controller reads Secrets", func() error {
			_, err := controllerID.client.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"the controller lists Pods", func() error {
			_, err := controllerID.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"the controller reaches another namespace", func() error {
			_, err := controllerID.dynamic.Resource(functionskube.FunctionResource).Namespace("default").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"the autoscaler creates a Deployment", func() error {
			_, err := autoscalerID.client.AppsV1().Deployments(namespace).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}},
		{"the autoscaler changes a Deployment itself", func() error {
			deployment, err := cluster.Client.AppsV1().Deployments(namespace).Get(ctx, functionskube.DeploymentName("iris", "1"), metav1.GetOptions{})
			require.NoError(t, err)
			_, err = autoscalerID.client.AppsV1().Deployments(namespace).Update(ctx, deployment, metav1.UpdateOptions{})
			return err
		}},
		{"the autoscaler reads Functions", func() error {
			_, err := autoscalerID.dynamic.Resource(functionskube.FunctionResource).Namespace(namespace).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"the autoscaler creates a Job", func() error {
			launcher, err := functionskube.NewJobLauncher(autoscalerID.client, jobs)
			require.NoError(t, err)
			return launcher.Launch(ctx, retrain.Run{Name: "x", Function: "iris", Args: []string{"train"}, Deadline: time.Minute})
		}},
		{"the activator reads Functions", func() error {
			_, err := activatorID.dynamic.Resource(functionskube.FunctionResource).Namespace(namespace).Get(ctx, "iris", metav1.GetOptions{})
			return err
		}},
		{"the activator lists Deployments", func() error {
			_, err := activatorID.client.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"the activator reads Secrets", func() error {
			_, err := activatorID.client.CoreV1().Secrets(namespace).Get(ctx, "x", metav1.GetOptions{})
			return err
		}},
		{"the activator creates Events", func() error {
			_, err := activatorID.client.CoreV1().Events(namespace).Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}},
	}
	for _, f := range forbidden {
		t.Run(f.name, func(t *testing.T) {
			err := f.try()
			require.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
		})
	}

	out, err = cluster.Kubectl(t, "", "delete", "function", "iris", "--namespace", namespace, "--timeout=30s")
	require.NoError(t, err, out)
	_, err = catalog.Get(ctx, "iris")
	require.ErrorIs(t, err, functions.ErrNotFound, "the controller, as itself, let the deleted Function go")
}
