package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// imageEnv names the image the container tests run; `make image` builds it.
const imageEnv = "SLUICE_IMAGE"

// podman is podman's Docker-compatible API for testcontainers-go, one
// service for every container test (testcontainers-go keeps its first
// client), stopped by TestMain.
var podman struct {
	once    sync.Once
	socket  string
	service *exec.Cmd
	err     error
}

// podmanService points testcontainers-go at podman's service, started by the
// first test that needs it.
func podmanService(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is missing: run `make image`, which installs it and builds the image")
	}
	podman.once.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-podman-")
		if err != nil {
			podman.err = err
			return
		}
		podman.socket = filepath.Join(dir, "podman.sock")
		podman.service = exec.Command("podman", "system", "service", "--time=0", "unix://"+podman.socket)
		podman.err = podman.service.Start()
	})
	require.NoError(t, podman.err)
	require.Eventually(t, func() bool { _, err := os.Stat(podman.socket); return err == nil }, 10*time.Second, 50*time.Millisecond)
	t.Setenv("DOCKER_HOST", "unix://"+podman.socket)
	t.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true") // its reaper image is in no local store; Terminate cleans up
	t.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
}

// TestTheImageRunsTheDemo: the image of deploy/Dockerfile runs `sluice up`
// with the demo as a non-root user on a read-only root filesystem, and
// answers a prediction through a mapped port.
func TestTheImageRunsTheDemo(t *testing.T) {
	image := os.Getenv(imageEnv)
	if image == "" {
		t.Fatalf("$%s names no image: run the tests through `make test`, whose `make image` builds it", imageEnv)
	}
	podmanService(t)
	demo := t.TempDir()
	out := sluice(t, "train", "--input", "../deploy/demo/iris.csv", "--output", filepath.Join(demo, "iris.onnx"))
	require.Contains(t, out, "held-out accuracy")
	for _, name := range []string{"iris.yaml", "iris.csv"} {
		data, err := os.ReadFile(filepath.Join("../deploy/demo", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(demo, name), data, 0o644))
	}
	require.NoError(t, os.Chmod(demo, 0o755))

	ctx := context.Background()
	up, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:        image,
			Cmd:          []string{"up", "--addr", ":8080", "--grpc-addr", "", "--nats-port", "-1", "--data-dir", "/tmp/data", "--deploy", "/demo/iris.yaml"},
			ExposedPorts: []string{"8080/tcp"},
			HostConfigModifier: func(host *container.HostConfig) {
				host.ReadonlyRootfs = true
				host.Tmpfs = map[string]string{"/tmp": "rw,size=8g"} // JetStream reserves its streams' bounds
				host.Binds = []string{demo + ":/demo:ro"}
			},
			WaitingFor: wait.ForHTTP("/v2/health/ready").WithPort("8080/tcp").WithStartupTimeout(60 * time.Second),
		},
		Started: true,
	})
	if up != nil {
		t.Cleanup(func() {
			if t.Failed() {
				if logs, err := up.Logs(ctx); err == nil {
					data, _ := io.ReadAll(logs)
					t.Logf("container output:\n%s", data)
				}
			}
			_ = up.Terminate(ctx)
		})
	}
	require.NoError(t, err)
	endpoint, err := up.PortEndpoint(ctx, "8080/tcp", "http")
	require.NoError(t, err)
	var code int
	var answer []byte
	require.Eventually(t, func() bool { // the first request wakes a worker inside
		resp, err := http.Post(endpoint+"/v2/models/iris/infer", "application/json", strings.NewReader(irisRequest))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		code = resp.StatusCode
		answer, _ = io.ReadAll(resp.Body)
		return code == http.StatusOK
	}, 60*time.Second, 200*time.Millisecond, "no prediction from the container: %d %s", code, answer)
	requireIrisAnswer(t, answer)

	exit, reader, err := up.Exec(ctx, []string{"/usr/local/bin/sluice", "--help"})
	require.NoError(t, err)
	require.Zero(t, exit)
	_, _ = io.Copy(io.Discard, reader)
	health, err := exec.Command("podman", "healthcheck", "run", up.GetContainerID()).CombinedOutput()
	require.NoError(t, err, "the image's health check (sluice health) passes once the platform is ready: %s", health)
	inspect, err := up.Inspect(ctx)
	require.NoError(t, err)
	require.Equal(t, "10001:10001", inspect.Config.User, "the image runs as a non-root user")
	require.True(t, inspect.HostConfig.ReadonlyRootfs)

	// What is in it: CA certificates, for models and data by https; no shell.
	certificates, err := up.CopyFileFromContainer(ctx, "/etc/ssl/certs/ca-certificates.crt")
	require.NoError(t, err, "the CA certificates are in the image")
	pem, err := io.ReadAll(certificates)
	require.NoError(t, err)
	require.Greater(t, strings.Count(string(pem), "BEGIN CERTIFICATE"), 50)
	for _, shell := range []string{"/bin/sh", "/bin/bash", "/usr/bin/apt-get"} {
		_, err := up.CopyFileFromContainer(ctx, shell)
		require.Error(t, err, "%s is not in the image", shell)
	}
	size, err := exec.Command("podman", "image", "inspect", image, "--format", "{{.Size}}").Output()
	require.NoError(t, err)
	bytes, err := strconv.ParseInt(strings.TrimSpace(string(size)), 10, 64)
	require.NoError(t, err)
	t.Logf("image %s: %.0f MB", image, float64(bytes)/1e6)
	require.LessOrEqual(t, bytes, int64(imageBudget), "the image's size budget (the binary, ONNX Runtime, the C/C++ runtime)")
}

// stopPodman stops podman's service, if a test started it.
func stopPodman() {
	if podman.service != nil && podman.service.Process != nil {
		_ = podman.service.Process.Kill()
		_ = podman.service.Wait()
		_ = os.RemoveAll(filepath.Dir(podman.socket))
	}
}

// imageBudget is the most the image may weigh: about 92 MB of binary, 46 MB
// of ONNX Runtime and 5 MB of C/C++ runtime and certificates today.
const imageBudget = 160e6
