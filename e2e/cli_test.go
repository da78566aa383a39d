package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runExit runs the built binary and returns its combined output and exit code.
func runExit(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	require.NoError(t, err)
	return string(out), 0
}

// What scripts rely on: an unknown subcommand fails (with a suggestion), the
// version is one string everywhere, and a taken port is named at once.
func TestCLIScriptsCanTrust(t *testing.T) {
	out, code := runExit(t, "functions", "lis")
	require.Equal(t, 1, code, "an unknown subcommand is an error: %s", out)
	require.Contains(t, out, `unknown command "lis" for "sluice functions"; did you mean "list"?`)
	_, code = runExit(t, "functions", "ls", "--nats-url", "nats://127.0.0.1:1")
	require.Equal(t, 1, code, "ls is list (and fails here for want of NATS)")

	out, code = runExit(t, "version")
	require.Zero(t, code)
	version := strings.TrimSpace(strings.TrimPrefix(out, "sluice "))
	require.NotEmpty(t, version)
	out, code = runExit(t, "--version")
	require.Zero(t, code)
	require.Equal(t, "sluice version "+version, strings.TrimSpace(out))
	p := startPlatform(t)
	resp, err := http.Get(p.url + "/v2")
	require.NoError(t, err)
	defer resp.Body.Close()
	var metadata struct{ Version string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&metadata))
	require.Equal(t, version, metadata.Version, "GET /v2 reports the binary's version")

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	start := time.Now()
	out, code = runExit(t, "up", "--data-dir", filepath.Join(t.TempDir(), "data"), "--nats-port", port, "--addr", "127.0.0.1:0", "--grpc-addr", "")
	require.Equal(t, 1, code, "%s", out)
	require.Contains(t, out, "address already in use")
	require.Contains(t, out, "--nats-port")
	require.Less(t, time.Since(start), 5*time.Second, "said at once, not after nats-server's 10 s wait")

	// Ctrl-C ends a command with the shell's code for an interrupt: here a
	// health check waiting on a server that never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	health := exec.Command(binary, "health", "http://"+silent.Addr().String()+"/")
	require.NoError(t, health.Start())
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, health.Process.Signal(os.Interrupt))
	var exit *exec.ExitError
	require.ErrorAs(t, health.Wait(), &exit)
	require.Equal(t, 130, exit.ExitCode())
}
