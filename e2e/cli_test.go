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
	out, code = runExit(t, "functions", "ls", "--nats-url", "nats://127.0.0.1:1")
	require.Equal(t, 1, code, "ls is list (and fails here for want of NATS)")
	require.Contains(t, out, "connect to NATS at nats://127.0.0.1:1")
	out, code = runExit(t, "predict", "iris", "--data", "[[1,2,3,4]]", "--url", "http://127.0.0.1:1")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "cannot reach the activator at http://127.0.0.1:1 (--url, $SLUICE_URL)")

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

// sluice batch as scripts run it: what is wrong before the first row is
// said before any progress, with exit 1; a batch that finished with failed
// rows exits 2, and says where their error lines are.
func TestBatchExitCodes(t *testing.T) {
	p := startPlatform(t)
	dir := t.TempDir()
	input, output := filepath.Join(dir, "rows.csv"), filepath.Join(dir, "out.jsonl")
	writeIrisCSV(t, input, 100, map[int]string{7: "r7,5.1,abc,1.4,0.2"})
	url := natsURL(t, p)

	out, code := runExit(t, "--nats-url", url, "batch", "--function", "irs", "--input", input, "--output", output)
	require.Equal(t, 1, code, out)
	require.True(t, strings.HasPrefix(out, `sluice: --function: "irs" is not deployed`), "the error comes first, no progress bar:\n%s", out)
	out, code = runExit(t, "--nats-url", url, "batch", "--function", "iris", "--input", filepath.Join(dir, "missing.csv"), "--output", output)
	require.Equal(t, 1, code, out)
	require.True(t, strings.HasPrefix(out, "sluice: --input: stat "), out)

	out, code = runExit(t, "--nats-url", url, "batch", "--function", "iris", "--input", input, "--output", output, "--quiet")
	require.Equal(t, 2, code, "failed rows: %s", out)
	require.Contains(t, out, "99 scored, 1 failed")
	require.Contains(t, out, "failed rows: 1; their error lines are in "+output)
}

// Every command that shows objects prints them as a table, wide, JSON or
// YAML; scripts read the JSON, and an empty list says so where people look.
func TestCLIOutputFormats(t *testing.T) {
	p := startPlatform(t)
	url := natsURL(t, p)

	out, code := runExit(t, "--nats-url", url, "functions", "list", "-o", "json")
	require.Zero(t, code, out)
	var list struct {
		Kind  string
		Items []struct {
			Kind     string
			Metadata struct{ Name string }
			Status   struct{ Revision string }
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	require.Equal(t, "List", list.Kind)
	require.Len(t, list.Items, 1)
	require.Equal(t, "Function", list.Items[0].Kind)
	require.Equal(t, "iris", list.Items[0].Metadata.Name)

	out, code = runExit(t, "--nats-url", url, "fn", "get", "iris", "-o", "yaml")
	require.Zero(t, code, out)
	require.Contains(t, out, "kind: Function\nmetadata:\n  name: iris\n")
	out, code = runExit(t, "--nats-url", url, "functions", "ls", "-o", "wide")
	require.Zero(t, code, out)
	require.Regexp(t, `(?m)^NAME\s+REVISION\s+MODEL\s+DEVICE\s+MIN\s+MAX\s+UPDATED\s+SHA256\s+TRAFFIC\s+ROLLOUT$`, out)
	require.Regexp(t, `(?m)^iris\s+1\s+Ready\s+cpu\s+`, out)

	out, code = runExit(t, "--nats-url", url, "status", "-o", "json")
	require.Zero(t, code, out)
	var statuses struct {
		Items []struct{ Kind, Function, Revision string }
	}
	require.NoError(t, json.Unmarshal([]byte(out), &statuses), out)
	require.NotEmpty(t, statuses.Items)
	require.Equal(t, "RevisionStatus", statuses.Items[0].Kind)

	out, code = runExit(t, "--nats-url", url, "dlq", "ls")
	require.Zero(t, code, out)
	require.Equal(t, "No dead letters found.\n", out)

	out, code = runExit(t, "--nats-url", url, "rollout", "status", "iris", "-o", "json")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "function iris has no rollout")

	out, code = runExit(t, "--nats-url", url, "status", "-o", "xml")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, `--output: want table, wide, json or yaml, got "xml"`)
	out, code = runExit(t, "--nats-url", url, "status", "--bogus")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "unknown flag: --bogus")
}
