package kubetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The real node of WithNode: one per machine at a time, since it changes the
// host's network (a bridge, iptables rules, sysctls), which it restores.
const (
	// NodeName is the real node's name.
	NodeName = "sluice-node"
	// NodeIP is the host's address on the pod network: the bridge's gateway,
	// where the apiserver, the kubelet and CoreDNS listen, and where pods
	// reach a server the test runs on the host.
	NodeIP      = "10.244.0.1"
	podSubnet   = "10.244.0.0/24"
	bridgeName  = "sluice0"
	pauseImage  = "localhost/sluice-pause:test"
	podGrace    = 30 * time.Second
	nodeTimeout = 90 * time.Second
)

// nodeBinaries are what WithNode runs from the kube-bins directory.
var nodeBinaries = []string{"kubelet", "kube-proxy", "coredns", "kube-scheduler"}

// hostCommands are what WithNode runs from the machine: `make kube-node`
// installs them from Debian's packages (podman comes with `make containers`).
var hostCommands = []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "iptables-save", "iptables-restore", "ip", "podman"}

// cniPlugins are the CNI plugins the pod network uses, from Debian's containernetworking-plugins.
const cniDir = "/usr/lib/cni"

var cniPlugins = []string{"bridge", "host-local", "portmap", "loopback"}

// WithNode also runs a real node, NodeName: containerd with runc and a CNI
// bridge, a kubelet built from the same module as the control plane,
// kube-proxy for Services, CoreDNS for cluster DNS (cluster.local), and
// kube-scheduler. The podman images named are imported into containerd
// first, so pods run them with imagePullPolicy IfNotPresent or Never; name
// them as podman does (localhost/NAME:TAG). The node needs root.
func WithNode(images ...string) Option {
	return func(o *options) { o.node, o.images = true, append(o.images, images...) }
}

// node is the state of the real node: its directory (outside the test's, as
// the kubelet mounts below it) and what the host looked like before.
type node struct {
	dir      string
	socket   string              // containerd's
	sysctls  []sysctl            // as they were
	netns    []string            // network namespaces present before
	iptables bool                // rules may have been added: remove the node's chains
	chains   map[string][]string // KUBE-* and CNI-* chains present before, by command: kept
}

type sysctl struct{ path, value string }

// prepareNode checks the host, and makes the pod network's bridge with
// NodeIP, before the apiserver listens there.
func (c *Cluster) prepareNode(t testing.TB) error {
	if os.Geteuid() != 0 {
		return errors.New("a real node needs root (containerd, the kubelet, iptables)")
	}
	for _, name := range hostCommands {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("%s is missing: run `make kube-node` (containerd, runc, CNI plugins, iptables) and `make containers` (podman)", name)
		}
	}
	for _, name := range cniPlugins {
		if err := checkBinary(filepath.Join(cniDir, name)); err != nil {
			return fmt.Errorf("CNI plugin %s is missing (%v): run `make kube-node`", name, err)
		}
	}
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		return fmt.Errorf("the bridge %s exists: another real node runs on this machine, or one was not cleaned up (ip link delete %s)", bridgeName, bridgeName)
	}
	dir, err := os.MkdirTemp("", "kubenode-")
	if err != nil {
		return err
	}
	c.node = &node{dir: dir, socket: filepath.Join(dir, "containerd.sock"), netns: netnsNames()}
	c.address = NodeIP
	for _, s := range []sysctl{
		{"/proc/sys/net/ipv4/ip_forward", "1"},                 // pods' traffic is routed through the host
		{"/proc/sys/net/bridge/bridge-nf-call-iptables", "1"},  // Services between pods on the bridge
		{"/proc/sys/net/bridge/bridge-nf-call-ip6tables", "1"}, // the same for IPv6
		{"/proc/sys/net/ipv4/conf/all/route_localnet", "1"},    // kube-proxy's node ports on localhost
	} {
		if err := c.node.setSysctl(s); err != nil {
			return err
		}
	}
	// The kubelet sets these for itself (protectKernelDefaults is off): they
	// are put back as they were too.
	for _, path := range kubeletSysctls {
		c.node.rememberSysctl(path)
	}
	c.node.chains = map[string][]string{"iptables": nodeChains("iptables"), "ip6tables": nodeChains("ip6tables")}
	return run("ip", "link", "add", bridgeName, "type", "bridge").
		then("ip", "addr", "add", NodeIP+"/24", "dev", bridgeName).
		then("ip", "link", "set", bridgeName, "up").err
}

// kubeletSysctls are the kernel settings the kubelet changes.
var kubeletSysctls = []string{
	"/proc/sys/kernel/panic", "/proc/sys/kernel/panic_on_oops", "/proc/sys/vm/overcommit_memory",
	"/proc/sys/vm/panic_on_oom", "/proc/sys/kernel/keys/root_maxkeys", "/proc/sys/kernel/keys/root_maxbytes",
}

// rememberSysctl records a setting as it is, for cleanUp; one that does not
// exist here is left out.
func (n *node) rememberSysctl(path string) {
	if old, err := os.ReadFile(path); err == nil {
		n.sysctls = append(n.sysctls, sysctl{path, strings.TrimSpace(string(old))})
	}
}

// setSysctl writes s, remembering what it was.
func (n *node) setSysctl(s sysctl) error {
	old, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("sysctl: %w", err)
	}
	n.sysctls = append(n.sysctls, sysctl{s.path, strings.TrimSpace(string(old))})
	return os.WriteFile(s.path, []byte(s.value), 0o644)
}

// startNode starts containerd, imports the images, and starts the kubelet,
// kube-proxy, CoreDNS and kube-scheduler; it returns once the node is Ready,
// the Service kubernetes has its endpoint and CoreDNS answers.
func (c *Cluster) startNode(t testing.TB, images []string) error {
	n := c.node
	if err := n.writeConfigs(t, c); err != nil {
		return err
	}
	containerd, err := c.startBinary("containerd", mustLookPath("containerd"), "--config", filepath.Join(n.dir, "containerd.toml"))
	if err != nil {
		return err
	}
	if err := waitReady(containerd, 30*time.Second, func(ctx context.Context) error {
		return n.ctr(ctx, "version")
	}); err != nil {
		return err
	}
	if err := n.importImages(c.dir, images); err != nil {
		return err
	}
	n.iptables = true
	kubelet, err := c.start("kubelet", "--config="+filepath.Join(n.dir, "kubelet.yaml"), "--kubeconfig="+c.Kubeconfig,
		"--root-dir="+filepath.Join(n.dir, "kubelet"), "--cert-dir="+filepath.Join(n.dir, "kubelet-pki"),
		"--hostname-override="+NodeName, "--node-ip="+NodeIP, "--v=1")
	if err != nil {
		return err
	}
	if err := waitReady(kubelet, nodeTimeout, c.nodesReady(NodeName)); err != nil {
		return err
	}
	proxy, err := c.start("kube-proxy", "--config="+filepath.Join(n.dir, "kube-proxy.yaml"))
	if err != nil {
		return err
	}
	dns, err := c.start("coredns", "-conf", filepath.Join(n.dir, "Corefile"))
	if err != nil {
		return err
	}
	if _, err := c.start("kube-scheduler", "--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--secure-port=0"); err != nil {
		return err
	}
	if err := waitReady(proxy, 30*time.Second, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, "iptables-save", "-t", "nat").Output()
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), serviceIP+"/32") {
			return errors.New("no rule for the Service kubernetes yet")
		}
		return nil
	}); err != nil {
		return err
	}
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(NodeIP, "53"))
	}}
	return waitReady(dns, 30*time.Second, func(ctx context.Context) error {
		addresses, err := resolver.LookupHost(ctx, "kubernetes.default.svc.cluster.local")
		if err != nil {
			return err
		}
		if !slices.Contains(addresses, serviceIP) {
			return fmt.Errorf("kubernetes.default.svc.cluster.local is %v, not %s", addresses, serviceIP)
		}
		return nil
	})
}

// writeConfigs writes containerd's, the CNI network's, the kubelet's,
// kube-proxy's and CoreDNS's configuration into the node's directory.
func (n *node) writeConfigs(t testing.TB, c *Cluster) error {
	for _, sub := range []string{"cni", "kubelet", "kubelet-pki", "logs"} {
		if err := os.MkdirAll(filepath.Join(n.dir, sub), 0o755); err != nil {
			return err
		}
	}
	ports := freePorts(t, 4)
	files := map[string]string{
		"containerd.toml": fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  # The sandbox has no CAP_SYS_RESOURCE here: a negative oom_score_adj is refused.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[5]q
    conf_dir = %[6]q
`, filepath.Join(n.dir, "containerd"), filepath.Join(n.dir, "containerd-state"), n.socket, pauseImage, cniDir, filepath.Join(n.dir, "cni")),
		"cni/10-sluice.conflist": fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "sluice-test",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "gateway": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, bridgeName, podSubnet, NodeIP, filepath.Join(n.dir, "ipam")),
		"kubelet.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
healthzBindAddress: 127.0.0.1
healthzPort: %[3]d
readOnlyPort: 0
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://%[4]s
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
clusterDNS: [%[1]s]
clusterDomain: cluster.local
resolvConf: ""
enforceNodeAllocatable: []
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
podLogsDir: %[5]q
`, NodeIP, ports[0], ports[1], n.socket, filepath.Join(n.dir, "logs")),
		"kube-proxy.yaml": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %q}
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, c.Kubeconfig, podSubnet, NodeName, ports[2], ports[3]),
		// Cluster names are answered from the API; any other name is
		// logged (ExternalLookups) and refused: the node has no upstream.
		"Corefile": fmt.Sprintf(`cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind %[1]s
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %[2]s kubetest
        pods insecure
    }
    cache 5
}
.:53 {
    bind %[1]s
    log . "%[3]s {name} {type}"
    template ANY ANY {
        rcode NXDOMAIN
    }
}
`, NodeIP, c.Kubeconfig, externalLookup),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(n.dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// importImages builds the pause image (a static binary that waits for
// SIGTERM) and moves it and images from podman into containerd.
func (n *node) importImages(testDir string, images []string) error {
	build := filepath.Join(n.dir, "pause-build")
	if err := os.MkdirAll(build, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(build, "Containerfile"), []byte("FROM scratch\nCOPY pause /pause\nUSER 65535\nENTRYPOINT [\"/pause\"]\n"), 0o600); err != nil {
		return err
	}
	pause := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(build, "pause"), "sluice.dev/sluice/e2e/kubetest/pause")
	pause.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := pause.CombinedOutput(); err != nil {
		return fmt.Errorf("build the pause program: %v\n%s", err, out)
	}
	archive := filepath.Join(n.dir, "images.tar")
	step := run("podman", "build", "--quiet", "-t", pauseImage, build).
		then(append([]string{"podman", "save", "--quiet", "--format", "docker-archive", "-m", "-o", archive, pauseImage}, images...)...)
	if step.err != nil {
		if len(images) > 0 {
			return fmt.Errorf("%w (images are made by `make image`)", step.err)
		}
		return step.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	defer os.Remove(archive)
	return n.ctr(ctx, "images", "import", "--no-unpack=false", archive)
}

// ctr runs containerd's client on the node's containerd, in Kubernetes' namespace.
func (n *node) ctr(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", n.socket, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// drainNode deletes every pod and waits until the kubelet has stopped them,
// so no container outlives the test; what is left is killed through containerd.
func (c *Cluster) drainNode(t testing.TB) {
	if c.Client == nil {
		return // nothing ran: the apiserver never started
	}
	ctx, cancel := context.WithTimeout(context.Background(), podGrace+15*time.Second)
	defer cancel()
	namespaces, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		namespaces = &corev1.NamespaceList{} // the apiserver is gone: containerd stops what runs
	}
	for _, ns := range namespaces.Items {
		// Controllers would make new pods: take their owners away first.
		_ = c.Client.AppsV1().Deployments(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = c.Client.BatchV1().Jobs(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationBackground)}, metav1.ListOptions{})
		_ = c.Client.AppsV1().ReplicaSets(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = c.Client.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	}
	for ctx.Err() == nil && len(namespaces.Items) > 0 {
		pods, err := c.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil || len(pods.Items) == 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	n := c.node
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", "--address", n.socket, "--namespace", "k8s.io", "tasks", "list", "--quiet").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		t.Logf("kubetest: container %s still runs after its pod was deleted: killing it", id)
		_ = n.ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id)
		_ = n.ctr(ctx, "tasks", "delete", "--force", id)
	}
}

// cleanUp undoes what the node did to the host once its processes have
// stopped: the kubelet's mounts, the pods' network namespaces, the bridge,
// the iptables chains of the kubelet, kube-proxy and CNI, and the sysctls.
func (n *node) cleanUp(t testing.TB) {
	var errs []error
	// drainNode has stopped the containers; shims left behind by containerd go too.
	if out, err := exec.Command("pgrep", "-f", "containerd-shim.*"+n.socket).Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			if id, err := strconv.Atoi(pid); err == nil {
				_ = killProcess(id)
			}
		}
	}
	errs = append(errs, unmountBelow(n.dir))
	for _, name := range netnsNames() {
		if strings.HasPrefix(name, "cni-") && !slices.Contains(n.netns, name) { // containerd's, not podman's
			path := filepath.Join("/var/run/netns", name)
			errs = append(errs, unmount(path), os.Remove(path))
		}
	}
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		errs = append(errs, run("ip", "link", "delete", bridgeName).err)
	}
	if n.iptables {
		errs = append(errs, removeChains("iptables", n.chains["iptables"]), removeChains("ip6tables", n.chains["ip6tables"]))
	}
	for i := len(n.sysctls) - 1; i >= 0; i-- {
		errs = append(errs, os.WriteFile(n.sysctls[i].path, []byte(n.sysctls[i].value), 0o644))
	}
	errs = append(errs, os.RemoveAll(n.dir))
	if err := errors.Join(errs...); err != nil {
		t.Errorf("kubetest: clean up the node: %v", err)
	}
}

// nodeChains lists the KUBE-* and CNI-* chains (the kubelet's, kube-proxy's
// and the CNI plugins') present in every table.
func nodeChains(command string) []string {
	out, err := exec.Command(command + "-save").Output()
	if err != nil {
		return nil
	}
	var chains []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(line, ":"); ok {
			name, _, _ = strings.Cut(name, " ")
			if strings.HasPrefix(name, "KUBE-") || strings.HasPrefix(name, "CNI-") {
				chains = append(chains, name)
			}
		}
	}
	return chains
}

// removeChains removes the KUBE-* and CNI-* chains that were not there
// before (kept), and every rule that jumps to one, by restoring the tables
// without them.
func removeChains(command string, kept []string) error {
	out, err := exec.Command(command + "-save").Output()
	if err != nil {
		return fmt.Errorf("%s-save: %w", command, err)
	}
	added := map[string]bool{}
	for _, chain := range nodeChains(command) {
		added[chain] = !slices.Contains(kept, chain)
	}
	var lines []string
	changed := false
	for _, line := range strings.Split(string(out), "\n") {
		if slices.ContainsFunc(strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == ':' }), func(field string) bool { return added[field] }) {
			changed = true
			continue
		}
		lines = append(lines, line)
	}
	if !changed {
		return nil
	}
	restore := exec.Command(command + "-restore")
	restore.Stdin = strings.NewReader(strings.Join(lines, "\n"))
	if out, err := restore.CombinedOutput(); err != nil {
		return fmt.Errorf("%s-restore: %v: %s", command, err, out)
	}
	return nil
}

// netnsNames lists the named network namespaces, where CNI puts pods'.
func netnsNames() []string {
	entries, _ := os.ReadDir("/var/run/netns")
	names := make([]string, 0, len(entries))
	for _, entry := range entries {
		names = append(names, entry.Name())
	}
	return names
}

func mustLookPath(name string) string {
	path, err := exec.LookPath(name)
	if err != nil {
		return name // prepareNode has checked it
	}
	return path
}

// externalLookup marks CoreDNS's log lines of names outside the cluster.
const externalLookup = "external-lookup"

// ExternalLookups lists the names outside the cluster that pods have looked
// up, as "NAME TYPE": a pod that phones home, or a manifest that names a
// server the cluster does not know.
func (c *Cluster) ExternalLookups(t testing.TB) []string {
	t.Helper()
	for _, p := range c.processes {
		if p.name != "coredns" {
			continue
		}
		data, err := os.ReadFile(p.logPath)
		if err != nil {
			t.Fatalf("kubetest: CoreDNS's log: %v", err)
		}
		var names []string
		for _, line := range strings.Split(string(data), "\n") {
			if _, lookup, ok := strings.Cut(line, externalLookup+" "); ok && !slices.Contains(names, lookup) {
				names = append(names, lookup)
			}
		}
		return names
	}
	t.Fatal("kubetest: ExternalLookups needs the real node of WithNode")
	return nil
}

func ptr[T any](v T) *T { return &v }

// step chains commands: the first that fails stops the rest.
type step struct{ err error }

func run(args ...string) step { return step{}.then(args...) }

func (s step) then(args ...string) step {
	if s.err != nil {
		return s
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return step{fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))}
	}
	return s
}

// unmountBelow unmounts every mount point under dir, deepest first: the
// kubelet's volumes and containerd's root filesystems.
func unmountBelow(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			points = append(points, fields[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, point := range points {
		errs = append(errs, unmount(point))
	}
	return errors.Join(errs...)
}

// unmount detaches the mount at path; nothing mounted there is no error.
func unmount(path string) error {
	if err := syscall.Unmount(path, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}

// killProcess kills pid with SIGKILL.
func killProcess(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
