// Package kubetest runs a real Kubernetes control plane for a test: etcd,
// kube-apiserver and kube-controller-manager on 127.0.0.1. With WithFakeNodes
// it also runs kube-scheduler and kwok, which plays the kubelet of fake nodes
// so that pods turn Running and Ready although no container runs; with
// WithNode, a real node instead (node.go): containerd, a kubelet, kube-proxy
// and CoreDNS, on which pods really run.
//
// The binaries come from `make kube-bins`, which builds them from the Go
// module proxy into .cache/kube/<version>/bin; $SLUICE_KUBE_BIN overrides
// where they are looked for. A test that cannot find them fails: it never skips.
package kubetest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Versions of the binaries that `make kube-bins` builds; they must match the Makefile.
const (
	KubeVersion = "v1.37.2"
	KwokVersion = "v0.8.0"
)

// BinEnv names the environment variable that says where the binaries are.
const BinEnv = "SLUICE_KUBE_BIN"

const (
	adminToken   = "sluice-kubetest-admin"
	serviceRange = "10.96.0.0/16"
	serviceIP    = "10.96.0.1" // the first address of the service range, the apiserver's in-cluster address
	stopGrace    = 10 * time.Second
)

// Cluster is a running control plane. Everything it started stops when the test ends.
type Cluster struct {
	// Config reaches the apiserver as an admin (group system:masters).
	Config *rest.Config
	// Client is a clientset over Config.
	Client kubernetes.Interface
	// Kubeconfig is the path of a kubeconfig file for Config, for kubectl.
	Kubeconfig string

	dir       string
	bin       string
	address   string // the apiserver's address: 127.0.0.1, or NodeIP with a real node
	node      *node  // the real node of WithNode, or nil
	pki       *pki
	processes []*process // in start order; stopped in reverse
	logged    bool       // the logs were printed already
}

// Option changes what Start runs.
type Option func(*options)

type options struct {
	fakeNodes bool
	node      bool
	images    []string
	bin       string
}

// WithFakeNodes also runs kube-scheduler and kwok with two fake nodes, so pods
// are scheduled and turn Running and Ready: CPUNode, and GPUNode, which has
// nvidia.com/gpu capacity, the label nvidia.com/gpu.present=true and a
// nvidia.com/gpu NoSchedule taint, as the NVIDIA GPU operator sets them.
func WithFakeNodes() Option { return func(o *options) { o.fakeNodes = true } }

// WithBinDir looks for the binaries in dir instead of $SLUICE_KUBE_BIN.
func WithBinDir(dir string) Option { return func(o *options) { o.bin = dir } }

// Start runs a control plane for t and returns once the apiserver is ready,
// the controller-manager works and, with WithFakeNodes, the nodes are Ready.
// It fails t, printing the processes' logs, if any of that does not happen.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	o := options{bin: os.Getenv(BinEnv)}
	for _, opt := range opts {
		opt(&o)
	}
	if o.bin == "" {
		o.bin = defaultBinDir()
	}
	binaries := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"}
	if o.fakeNodes {
		binaries = append(binaries, "kube-scheduler", "kwok")
	}
	if o.node {
		binaries = append(binaries, nodeBinaries...)
	}
	for _, name := range binaries {
		if err := checkBinary(filepath.Join(o.bin, name)); err != nil {
			t.Fatalf("kubetest: %s is missing (%v): run `make kube-bins` to build the Kubernetes %s binaries into %s, or set $%s",
				name, err, KubeVersion, o.bin, BinEnv)
		}
	}
	c := &Cluster{dir: t.TempDir(), bin: o.bin, address: "127.0.0.1"}
	t.Cleanup(func() { c.stop(t) })
	if o.node {
		c.must(t, c.prepareNode(t))
	}
	var err error
	if c.pki, err = newPKI(c.dir); err != nil {
		t.Fatalf("kubetest: certificates: %v", err)
	}
	c.must(t, c.startEtcdAndAPIServer(t))
	c.must(t, c.startControllerManager(t))
	if o.fakeNodes {
		c.must(t, c.startFakeNodes(t))
	}
	if o.node {
		c.must(t, c.startNode(t, o.images))
	}
	return c
}

// must fails t with err and the logs of every process.
func (c *Cluster) must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		c.printLogs(t)
		t.Fatalf("kubetest: %v", err)
	}
}

// defaultBinDir is .cache/kube/<version>/bin under the repository root, the
// first directory above the working directory with the go.mod of sluice.
func defaultBinDir() string {
	dir, err := os.Getwd()
	if err != nil {
		return filepath.Join(".cache", "kube", KubeVersion, "bin")
	}
	for start := dir; ; {
		if isSluiceRoot(dir) {
			return filepath.Join(dir, ".cache", "kube", KubeVersion, "bin")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return filepath.Join(start, ".cache", "kube", KubeVersion, "bin")
		}
		dir = parent
	}
}

func isSluiceRoot(dir string) bool {
	file, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		if line := strings.TrimSpace(scanner.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module")) == "sluice.dev/sluice"
		}
	}
	return false
}

// startEtcdAndAPIServer starts etcd, then the apiserver on it, and waits for both.
func (c *Cluster) startEtcdAndAPIServer(t testing.TB) error {
	ports := freePorts(t, 3)
	etcdURL, peerURL := "http://127.0.0.1:"+strconv.Itoa(ports[0]), "http://127.0.0.1:"+strconv.Itoa(ports[1])
	etcd, err := c.start("etcd",
		"--name=default", "--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return err
	}
	if err := waitReady(etcd, 30*time.Second, httpOK(http.DefaultClient, etcdURL+"/health")); err != nil {
		return err
	}
	host := "https://" + c.address + ":" + strconv.Itoa(ports[2])
	tokens := filepath.Join(c.dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	// Pods of a real node reach the apiserver through the Service kubernetes,
	// whose endpoint the apiserver keeps, with service-account tokens; the
	// apiserver reaches the kubelet (kubectl logs, exec) by its address, as
	// the node's name resolves nowhere.
	node := []string{"--endpoint-reconciler-type=none", "--disable-admission-plugins=ServiceAccount"}
	if c.node != nil {
		node = []string{"--endpoint-reconciler-type=lease", "--enable-admission-plugins=ServiceAccount", "--kubelet-preferred-address-types=InternalIP"}
	}
	apiserver, err := c.start("kube-apiserver", append([]string{
		"--etcd-servers=" + etcdURL, "--bind-address=" + c.address, "--secure-port=" + strconv.Itoa(ports[2]),
		"--advertise-address=" + c.address,
		"--cert-dir=" + filepath.Join(c.dir, "apiserver"),
		"--tls-cert-file=" + c.pki.servingCert, "--tls-private-key-file=" + c.pki.servingKey,
		"--client-ca-file=" + c.pki.caCert, "--token-auth-file=" + tokens, "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.pki.serviceAccountPub, "--service-account-signing-key-file=" + c.pki.serviceAccountKey,
		"--service-cluster-ip-range=" + serviceRange, "--allow-privileged=true"}, node...)...)
	if err != nil {
		return err
	}
	c.Config = &rest.Config{
		Host: host, BearerToken: adminToken, TLSClientConfig: rest.TLSClientConfig{CAData: c.pki.caPEM},
		QPS: 200, Burst: 400, Timeout: 30 * time.Second,
	}
	httpClient, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return err
	}
	if err := waitReady(apiserver, 60*time.Second, httpOK(httpClient, host+"/readyz")); err != nil {
		return err
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.dir, "kubeconfig")
	return os.WriteFile(c.Kubeconfig, []byte(kubeconfig(host, c.pki.caCert)), 0o600)
}

// startControllerManager starts every controller and waits until the
// service-account controller has done its first piece of work.
func (c *Cluster) startControllerManager(t testing.TB) error {
	manager, err := c.start("kube-controller-manager",
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--secure-port=0", "--controllers=*",
		"--service-account-private-key-file="+c.pki.serviceAccountKey, "--root-ca-file="+c.pki.caCert,
		"--cluster-signing-cert-file="+c.pki.caCert, "--cluster-signing-key-file="+c.pki.caKey)
	if err != nil {
		return err
	}
	return waitReady(manager, 60*time.Second, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// NewNamespace creates a namespace with a fresh name for one test and returns the name.
func (c *Cluster) NewNamespace(t testing.TB) string {
	t.Helper()
	namespace, err := c.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create namespace: %v", err)
	}
	return namespace.Name
}

// CreateDeployment creates deployment in its namespace, for tests whose
// package keeps out of the Kubernetes API types.
func (c *Cluster) CreateDeployment(t testing.TB, deployment *appsv1.Deployment) {
	t.Helper()
	_, err := c.Client.AppsV1().Deployments(deployment.Namespace).Create(context.Background(), deployment, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create deployment %s/%s: %v", deployment.Namespace, deployment.Name, err)
	}
}

// Kubectl runs the cluster's kubectl as an admin with args, and returns what
// it printed, standard output and error together, and how it ended: the way
// a person at a terminal sees it.
func (c *Cluster) Kubectl(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.bin, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// InstallCRDs applies the CustomResourceDefinitions in file and waits until
// the API server serves them.
func (c *Cluster) InstallCRDs(t testing.TB, file string) {
	t.Helper()
	for _, args := range [][]string{{"apply", "-f", file}, {"wait", "--for=condition=Established", "--timeout=30s", "-f", file}} {
		if out, err := c.Kubectl(t, "", args...); err != nil {
			t.Fatalf("kubetest: kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// start runs one binary of the cluster; stop ends it.
func (c *Cluster) start(name string, args ...string) (*process, error) {
	return c.startBinary(name, filepath.Join(c.bin, name), args...)
}

// startBinary runs the program at path as part of the cluster.
func (c *Cluster) startBinary(name, path string, args ...string) (*process, error) {
	p, err := startProcess(c.dir, name, path, childEnv(c.dir), args...)
	if err != nil {
		return nil, err
	}
	c.processes = append(c.processes, p)
	return p, nil
}

// stop ends every process, newest first, and prints their logs if t failed.
func (c *Cluster) stop(t testing.TB) {
	t.Helper()
	if t.Failed() {
		c.printLogs(t)
	}
	if c.node != nil {
		c.drainNode(t) // while the kubelet still runs, so it stops the containers
	}
	for i := len(c.processes) - 1; i >= 0; i-- {
		c.processes[i].stop(stopGrace)
	}
	c.processes = nil
	if c.node != nil {
		c.node.cleanUp(t)
	}
}

// printLogs logs the end of every process's output to t, once.
func (c *Cluster) printLogs(t testing.TB) {
	t.Helper()
	if c.logged {
		return
	}
	c.logged = true
	for _, p := range c.processes {
		state := "running"
		if ended, err := p.exited(); ended {
			state = fmt.Sprintf("exited: %v", err)
		}
		t.Logf("kubetest: --- %s (%s), log %s ---\n%s", p.name, state, p.logPath, p.logTail(16<<10))
	}
}

// httpOK checks that GET url answers 200.
func httpOK(client *http.Client, url string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		response, err := client.Do(request)
		if err != nil {
			return err
		}
		defer response.Body.Close()
		if response.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, response.Status)
		}
		return nil
	}
}

// kubeconfig is a kubeconfig file for the admin token.
func kubeconfig(host, caFile string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster: {server: %q, certificate-authority: %q}
users:
- name: admin
  user: {token: %q}
contexts:
- name: kubetest
  context: {cluster: kubetest, user: admin}
current-context: kubetest
`, host, caFile, adminToken)
}
