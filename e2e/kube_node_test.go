//go:build e2ekube

package e2e

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/e2e/kubetest"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	functionskube "sluice.dev/sluice/functions/kube"
)

// TestSluiceOnKubernetes is the proof that Sluice runs on Kubernetes as a
// cluster operator installs it (`make e2e-kube`): a real control plane and a
// real kubelet node, every component a pod of the sluice image installed
// with `kubectl apply -k` of deploy/base, NATS included: three servers of a
// StatefulSet on PersistentVolumes, every stream at 3 replicas, reached
// through cluster DNS, and NATS authorization on — each component, each
// worker and the trainer logs in as its own user, from the Secrets of
// `sluice nats init` and those the controller makes.
//
// kubectl apply of a Function → Ready → a prediction through the activator's
// Service → a burst scales the worker Deployment 0 → 2 → 0 → `sluice
// retrain` runs a trainer Job pod that publishes version 2, the controller
// leader is killed while it runs, the other replica rolls version 2 out
// while a client keeps calling and sees no failure → kubectl delete cleans
// up. kubectl get functions shows the columns throughout; a bad Function is
// refused with its field's path.
func TestSluiceOnKubernetes(t *testing.T) {
	image := "localhost/" + strings.TrimPrefix(cmp.Or(os.Getenv("SLUICE_IMAGE"), "sluice:latest"), "localhost/")
	cluster := kubetest.Start(t, kubetest.WithNode(image))
	t.Cleanup(func() {
		if t.Failed() {
			printPods(t, cluster)
		}
	})
	ctx := t.Context()
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		out, err := cluster.Kubectl(t, stdin, append([]string{"--namespace", sluiceNamespace}, args...)...)
		require.NoError(t, err, "kubectl %s:\n%s", strings.Join(args, " "), out)
		return out
	}

	model, data := modelAndData(t)
	files := serveFiles(t, map[string][]byte{"/iris.onnx": model, "/iris.csv": data})

	install(t, cluster, image)
	// NATS's identities, from `sluice nats init`, and the callers' keys
	// (sluice keys create) are Secrets, as the README says.
	auth := t.TempDir()
	sluice(t, "nats", "init", "--out", auth)
	for secret, files := range map[string][]string{
		"sluice-nats-auth": {"auth.conf"}, "sluice-nats-controller": {"controller.creds", "authority.json"},
		"sluice-nats-activator": {"activator.creds"}, "sluice-nats-autoscaler": {"autoscaler.creds"},
	} {
		args := []string{"create", "secret", "generic", secret}
		for _, file := range files {
			args = append(args, "--from-file="+filepath.Join(auth, file))
		}
		kubectl("", args...)
	}
	keys, secrets := keysFile(t, map[string]string{"e2e": "admin:iris"})
	kubectl("", "create", "secret", "generic", "sluice-api-keys", "--from-file=keys.yaml="+keys)
	kubectl("", "rollout", "status", "statefulset/nats", "--timeout=180s")
	for _, component := range []string{"controller", "autoscaler", "activator"} {
		kubectl("", "rollout", "status", "deployment/sluice-"+component, "--timeout=180s")
	}
	js := natsAs(t, serviceIP(t, cluster, "nats"), filepath.Join(auth, "admin.creds"))
	activator := &platform{url: "http://" + serviceIP(t, cluster, "sluice-activator"), key: secrets["e2e"]}
	code, _ := (&platform{url: activator.url}).post(t, "/v2/models/iris/infer", irisRequest, nil)
	require.Equal(t, http.StatusUnauthorized, code, "the activator's Service asks for a key")

	out, err := cluster.Kubectl(t, "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: bad}\nspec: {model: {uri: iris/x.onnx}, runtime: {device: tpu}}\n",
		"apply", "--namespace", sluiceNamespace, "-f", "-")
	require.Error(t, err, "a bad Function is refused at admission")
	require.Contains(t, out, `spec.runtime.device: Unsupported value: "tpu"`)

	kubectl(fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {name: iris}
spec:
  model: {uri: %[1]s/iris.onnx, sha256: %[2]s}
  scaling: {maxReplicas: 2, targetQueueDepth: 10, scaleToZeroAfter: 5s}
  timeouts: {request: 60s}
  retrain: {data: {uri: %[1]s/iris.csv, sha256: %[3]s}, label: species}
  rollout: {steps: [50, 100], interval: 2s, minRequests: 10, maxErrorRate: 0.05}
`, files, sha256Of(model), sha256Of(data)), "apply", "-f", "-")
	kubectl("", "wait", "--for=condition=Ready", "function/iris", "--timeout=120s")
	columns := func(when, pattern string) {
		t.Helper()
		out := kubectl("", "get", "functions")
		t.Logf("kubectl get functions, %s:\n%s", when, out)
		require.Regexp(t, `NAME\s+READY\s+REPLICAS\s+DEPTH\s+VERSION\s+WEIGHTS\s+AGE\n`+pattern, out)
	}
	columns("once Ready", `iris\s+True\s+0\s+0\s+1\s+1=100\s`)
	for _, name := range []string{events.StreamName("iris"), "KV_" + events.FunctionsBucket, "OBJ_" + events.ModelsBucket} {
		stream, err := js.Stream(ctx, name)
		require.NoError(t, err)
		require.Equal(t, 3, stream.CachedInfo().Config.Replicas, "%s is kept on the three NATS servers", name)
		require.Len(t, stream.CachedInfo().Cluster.Replicas, 2, "%s: a leader and two current followers", name)
	}

	// A prediction through the activator's Service wakes revision 1 from zero.
	code, body := activator.post(t, "/v2/models/iris/infer", irisRequest, nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	requireIrisAnswer(t, body)
	replicas := func(revision string) int32 {
		deployment, err := cluster.Client.AppsV1().Deployments(sluiceNamespace).Get(ctx, functionskube.DeploymentName("iris", revision), metav1.GetOptions{})
		if err != nil {
			return -1
		}
		return *deployment.Spec.Replicas
	}
	require.Eventually(t, func() bool { return replicas("1") == 0 }, 60*time.Second, 200*time.Millisecond, "idle: back to zero")

	// A burst of asynchronous requests scales it 0 → 2 → 0, and every one is answered.
	locations := make([]string, 200)
	for i := range locations {
		code, body := activator.post(t, "/v2/models/iris/infer", irisRequest, http.Header{"Prefer": {"respond-async"}})
		require.Equal(t, http.StatusAccepted, code, "%s", body)
		var accepted struct{ Location string }
		require.NoError(t, json.Unmarshal(body, &accepted))
		locations[i] = accepted.Location
	}
	require.Eventually(t, func() bool { return replicas("1") == 2 }, 30*time.Second, 100*time.Millisecond, "the burst scales to maxReplicas")
	columns("in the burst", `iris\s+True\s+[0-2]\s+\d+\s+1\s+1=100\s`)
	for _, location := range locations {
		requireIrisAnswer(t, activator.awaitResult(t, location))
	}
	// A burst panics the autoscaler, which then scales down no sooner than its stable window (60 s).
	require.Eventually(t, func() bool { return replicas("1") == 0 }, 150*time.Second, 200*time.Millisecond, "idle again: back to zero")

	// Retraining runs as a Job pod; the controller's leader dies while it runs.
	traffic := keepCalling(t, activator)
	t.Log(kubectl("", "exec", "deployment/sluice-controller", "--", "sluice", "retrain", "iris", "--reason", "e2e"))
	var job string
	require.Eventually(t, func() bool {
		jobs, err := cluster.Client.BatchV1().Jobs(sluiceNamespace).List(ctx, metav1.ListOptions{LabelSelector: functionskube.FunctionLabel + "=iris"})
		if err == nil && len(jobs.Items) == 1 {
			job = jobs.Items[0].Name
		}
		return job != ""
	}, 60*time.Second, 200*time.Millisecond, "a retrain event starts a trainer Job")
	leader := leaseHolder(t, cluster, "sluice-controller")
	kubectl("", "delete", "pod", leader, "--grace-period=0", "--force")

	kubectl("", "wait", "--for=condition=Complete", "job/"+job, "--timeout=180s")
	var rollout functions.RolloutStatus
	catalog, err := functions.OpenCatalog(ctx, js)
	require.NoError(t, err)
	var weights []string // as kubectl shows them
	require.Eventually(t, func() bool {
		if shown := kubectl("", "get", "function", "iris", "-o", "jsonpath={.status.weights}"); !slices.Contains(weights, shown) {
			weights = append(weights, shown)
		}
		fn, err := catalog.Get(ctx, "iris")
		if err != nil || fn.Status.Rollout == nil {
			return false
		}
		rollout = *fn.Status.Rollout
		return rollout.Candidate == "2" && rollout.Done()
	}, 4*time.Minute, 500*time.Millisecond, "the trainer's version 2 rolls out")
	require.Equal(t, functions.RolloutPromoted, rollout.Phase, "%+v", rollout)
	require.Contains(t, weights, "1=50,2=50", "the weights move a step at a time")
	t.Log(kubectl("", "exec", "deployment/sluice-controller", "--", "sluice", "rollout", "status", "iris"))
	require.NotEqual(t, leader, leaseHolder(t, cluster, "sluice-controller"), "the other replica leads")
	columns("once version 2 is promoted", `iris\s+True\s+\d+\s+\d+\s+2\s+2=100\s`)
	answered := traffic.stop()
	require.Empty(t, answered.failures, "no client sees the leader die or the rollout")
	require.Positive(t, answered.byVersion["1"])
	require.Positive(t, answered.byVersion["2"])

	require.Empty(t, cluster.ExternalLookups(t), "no pod looks up a name outside the cluster: nothing phones home")

	// kubectl delete takes the function out of NATS, and its Deployments go with it.
	kubectl("", "delete", "function", "iris", "--timeout=30s")
	_, err = catalog.Get(ctx, "iris")
	require.ErrorIs(t, err, functions.ErrNotFound)
	require.Eventually(t, func() bool {
		deployments, err := cluster.Client.AppsV1().Deployments(sluiceNamespace).List(ctx, metav1.ListOptions{LabelSelector: functionskube.FunctionLabel + "=iris"})
		return err == nil && len(deployments.Items) == 0
	}, 60*time.Second, 200*time.Millisecond, "the worker Deployments are owned by the Function")
}

// natsAs connects to NATS at addr with the credentials in creds, the
// operator's from the host through the Service's cluster address.
func natsAs(t *testing.T, addr, creds string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect("nats://"+addr, nats.UserCredentials(creds))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// modelAndData are the demo model, trained here, and its training data.
func modelAndData(t *testing.T) ([]byte, []byte) {
	t.Helper()
	_, model := trainIris(t)
	data, err := os.ReadFile("../deploy/demo/iris.csv")
	require.NoError(t, err)
	return model, data
}

func sha256Of(data []byte) string {
	digest := sha256.Sum256(data)
	return hex.EncodeToString(digest[:])
}

// serveFiles serves files over HTTP on the node's address, as any web server
// would, and returns the base URL.
func serveFiles(t *testing.T, files map[string][]byte) string {
	t.Helper()
	listener, err := net.Listen("tcp", net.JoinHostPort(kubetest.NodeIP, "0"))
	require.NoError(t, err)
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		file, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(file)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(func() { _ = server.Close() })
	return "http://" + listener.Addr().String()
}

// install applies deploy/base as an operator would, through an overlay that
// names the image and asks less of the one small node for each worker, after
// making the node's storage: a PersistentVolume (a host folder) for each of
// the three NATS servers' claims, as a storage class would.
func install(t *testing.T, cluster *kubetest.Cluster, image string) {
	t.Helper()
	dir := t.TempDir()
	volumes, err := os.MkdirTemp("", "sluice-volumes-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(volumes) })
	require.NoError(t, os.Chmod(volumes, 0o755))
	for i := range 3 {
		path := filepath.Join(volumes, fmt.Sprintf("nats-%d", i))
		require.NoError(t, os.Mkdir(path, 0o700))
		require.NoError(t, os.Chown(path, 10001, 10001)) // the pods' user: a host folder takes no fsGroup
		out, err := cluster.Kubectl(t, fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: nats-%d}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: %s, name: data-nats-%d}
  hostPath: {path: %s, type: Directory}
`, i, sluiceNamespace, i, path), "apply", "-f", "-")
		require.NoError(t, err, out)
	}
	base, err := filepath.Abs("../deploy/base")
	require.NoError(t, err)
	relative, err := filepath.Rel(dir, base)
	require.NoError(t, err)
	name, tag, _ := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
	name = image[:strings.LastIndex(image, "/")+1] + name
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: %s
resources: [%s]
images: [{name: sluice, newName: %s, newTag: %s}]
patches:
  - target: {kind: Deployment, name: sluice-controller}
    patch: |
      - {op: add, path: /spec/template/spec/containers/0/args/-, value: --worker-cpu-request=100m}
      - {op: add, path: /spec/template/spec/containers/0/args/-, value: --worker-memory-request=128Mi}
`, sluiceNamespace, relative, name, tag)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o600))
	out, err := cluster.Kubectl(t, "", "apply", "-k", dir)
	require.NoError(t, err, "kubectl apply -k:\n%s", out)
}

// serviceIP is a Service's cluster address and first port, which the host
// reaches through kube-proxy's rules.
func serviceIP(t *testing.T, cluster *kubetest.Cluster, name string) string {
	t.Helper()
	service, err := cluster.Client.CoreV1().Services(sluiceNamespace).Get(t.Context(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return net.JoinHostPort(service.Spec.ClusterIP, strconv.Itoa(int(service.Spec.Ports[0].Port)))
}

// leaseHolder is who holds a Lease of the namespace.
func leaseHolder(t *testing.T, cluster *kubetest.Cluster, name string) string {
	t.Helper()
	var holder string
	require.Eventually(t, func() bool {
		lease, err := cluster.Client.CoordinationV1().Leases(sluiceNamespace).Get(t.Context(), name, metav1.GetOptions{})
		if err == nil && lease.Spec.HolderIdentity != nil {
			holder = *lease.Spec.HolderIdentity
		}
		return holder != ""
	}, 30*time.Second, 200*time.Millisecond, "the Lease %s has a holder", name)
	return holder
}

// calls is what a client calling without pause saw.
type calls struct {
	byVersion map[string]int
	failures  []string
}

// caller calls the iris function over and over from two clients until stopped.
type caller struct {
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	seen    calls
	stopped atomic.Bool
}

func keepCalling(t *testing.T, activator *platform) *caller {
	c := &caller{done: make(chan struct{}), seen: calls{byVersion: map[string]int{}}}
	for range 2 {
		c.wg.Go(func() {
			for !c.stopped.Load() {
				code, body := activator.post(t, "/v2/models/iris/infer", irisRequest, nil)
				var answer oipResponse
				c.mu.Lock()
				if err := json.Unmarshal(body, &answer); code != http.StatusOK || err != nil {
					c.seen.failures = append(c.seen.failures, fmt.Sprintf("%d %s", code, body))
				} else {
					c.seen.byVersion[answer.ModelVersion]++
				}
				c.mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	t.Cleanup(func() { c.stop() })
	return c
}

func (c *caller) stop() calls {
	c.stopped.Store(true)
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen
}

// printPods logs what a person debugging would look at: the pods, their
// events, and the end of every container's log.
func printPods(t *testing.T, cluster *kubetest.Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := cluster.Kubectl(t, "", "get", "pods,jobs,deployments,functions", "--all-namespaces", "-o", "wide")
	t.Logf("kubectl get:\n%s", out)
	out, _ = cluster.Kubectl(t, "", "get", "events", "--all-namespaces", "--sort-by=.lastTimestamp")
	t.Logf("events:\n%s", out)
	pods, err := cluster.Client.CoreV1().Pods(sluiceNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, pod := range pods.Items {
		out, _ := cluster.Kubectl(t, "", "logs", "--namespace", sluiceNamespace, pod.Name, "--all-containers", "--tail=40")
		t.Logf("logs of %s:\n%s", pod.Name, out)
	}
}
