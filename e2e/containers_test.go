package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/access"
	"sluice.dev/sluice/functions"
)

// TestTheImageAsACluster: containers of the image, started by
// testcontainers-go, as deploy/base runs them — three NATS servers of one
// cluster (`sluice nats serve`, sync_interval always, the auth.conf of
// `sluice nats init`), an activator and a worker, each with its own NATS
// user — serve a prediction; the function's queue has three replicas.
func TestTheImageAsACluster(t *testing.T) {
	image := os.Getenv(imageEnv)
	if image == "" {
		t.Fatalf("$%s names no image: run the tests through `make test`, whose `make image` builds it", imageEnv)
	}
	podmanService(t)
	ctx := context.Background()
	dir := t.TempDir()
	sluice(t, "nats", "init", "--out", dir)
	ports := freePorts(t, 7) // 3 client, 3 cluster, the activator's HTTP
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[3+i]))
	}
	for i := range 3 {
		conf := fmt.Sprintf(`server_name: nats-%d
listen: 127.0.0.1:%d
jetstream { store_dir: /tmp/data, sync_interval: always }
cluster { name: sluice, listen: 127.0.0.1:%d, routes: [%s] }
include auth.conf
`, i, ports[i], ports[3+i], strings.Join(routes, ", "))
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("nats-%d.conf", i)), []byte(conf), 0o644))
	}
	readable(t, dir)
	for i := range 3 {
		run(t, ctx, image, dir, "nats", "serve", "--config", fmt.Sprintf("/auth/nats-%d.conf", i))
	}
	urls := make([]string, 3)
	for i := range urls {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
	}
	natsURL := strings.Join(urls, ",")

	_, deployed := deployOnCluster(t, natsURL, dir)
	readable(t, dir)
	common := []string{"--nats-url", natsURL, "--nats-replicas", "3"}
	run(t, ctx, image, dir, append([]string{"worker", "--function", "iris", "--revision", deployed.Status.Revision,
		"--nats-creds", "/auth/worker.creds", "--metrics-addr", "127.0.0.1:0"}, common...)...)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[6]))
	run(t, ctx, image, dir, append([]string{"activator", "--addr", addr, "--grpc-addr", "", "--nats-creds", "/auth/activator.creds"}, common...)...)

	p := &platform{url: "http://" + addr}
	code, answer := 0, []byte(nil)
	for deadline := time.Now().Add(90 * time.Second); code != http.StatusOK && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		code, answer = p.post(t, "/v2/models/iris/infer", irisRequest, nil)
	}
	require.Equal(t, http.StatusOK, code, "a prediction through the containers: %s", answer)
	requireIrisAnswer(t, answer)
}

// deployOnCluster logs in to the NATS cluster at natsURL as the operator of
// dir (`sluice nats init`), deploys the iris function with its queue at three
// replicas, and writes worker.creds, the credentials of a worker of its
// revision, into dir. The connection closes when the test ends.
func deployOnCluster(t *testing.T, natsURL, dir string) (jetstream.JetStream, *functions.Function) {
	t.Helper()
	ctx := context.Background()
	// JetStream answers once the three servers have elected a leader.
	var nc *nats.Conn
	require.Eventually(t, func() bool {
		var err error
		nc, err = nats.Connect(natsURL, nats.UserCredentials(filepath.Join(dir, "admin.creds")), nats.MaxReconnects(-1))
		return err == nil
	}, 60*time.Second, 500*time.Millisecond, "the NATS servers admit the operator")
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	var catalog *functions.Catalog
	require.Eventually(t, func() bool {
		catalog, err = functions.OpenCatalog(ctx, js)
		return err == nil
	}, 60*time.Second, time.Second, "JetStream's cluster is ready: %v", err)
	_, model := trainIris(t)
	version, err := catalog.PutModel(ctx, "iris", model, nil)
	require.NoError(t, err)
	queue := events.DefaultQueueConfig()
	queue.Replicas = 3
	fn := &functions.Function{APIVersion: functions.APIVersion, Kind: functions.Kind, Metadata: functions.Metadata{Name: "iris"},
		Spec: functions.Spec{Model: functions.ModelSpec{URI: version.Object}}}
	deployed, err := functions.NewDeployer(js, catalog, queue).Deploy(ctx, fn, nil)
	require.NoError(t, err)
	stream, err := js.Stream(ctx, events.StreamName("iris"))
	require.NoError(t, err)
	require.Equal(t, 3, stream.CachedInfo().Config.Replicas)

	// The worker's user may serve this revision only; the activator's may not serve at all.
	authority, err := access.Load(dir)
	require.NoError(t, err)
	permissions, err := catalog.WorkerAccess(ctx, deployed, deployed.Status.Revision)
	require.NoError(t, err)
	require.NoError(t, authority.WriteCredentials(filepath.Join(dir, "worker.creds"), "worker iris "+deployed.Status.Revision, permissions))
	return js, deployed
}

// run starts a container of image on the host's network, with dir at /auth,
// that runs the sluice command args, and removes it when the test ends.
func run(t *testing.T, ctx context.Context, image, dir string, args ...string) {
	t.Helper()
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image: image,
			Cmd:   args,
			HostConfigModifier: func(host *container.HostConfig) {
				host.NetworkMode = "host"
				host.ReadonlyRootfs = true
				host.Tmpfs = map[string]string{"/tmp": "rw,size=4g"}
				host.Binds = []string{dir + ":/auth:ro"}
			},
		},
		Started: true,
	})
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				if logs, err := c.Logs(ctx); err == nil {
					data, _ := io.ReadAll(logs)
					t.Logf("sluice %s:\n%s", strings.Join(args, " "), data)
				}
			}
			_ = c.Terminate(ctx)
		})
	}
	require.NoError(t, err, "sluice %s", strings.Join(args, " "))
}

// readable lets the image's user (10001) read the credentials the test
// wrote for it: on a cluster they are Secrets mounted for it.
func readable(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, os.Chmod(dir, 0o755))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, entry := range entries {
		require.NoError(t, os.Chmod(filepath.Join(dir, entry.Name()), 0o644))
	}
}

// freePorts returns n ports free on loopback now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer listener.Close()
		ports[i] = listener.Addr().(*net.TCPAddr).Port
	}
	return ports
}
