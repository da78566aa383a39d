package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sluice.dev/sluice/e2e/kubetest"
)

// NATS over TLS, as README's "TLS" says: `sluice nats serve` with a tls
// block and the auth.conf of `sluice nats init`; the CLI connects with a
// tls:// URL and --nats-ca, and is refused without the CA.
func TestNATSOverTLS(t *testing.T) {
	dir := t.TempDir()
	sluice(t, "nats", "init", "--out", dir)
	ca, cert, key, err := kubetest.ServingCertificates(dir)
	require.NoError(t, err)
	port := freePorts(t, 1)[0]
	conf := fmt.Sprintf(`listen: 127.0.0.1:%d
jetstream { store_dir: %q }
tls { cert_file: %q, key_file: %q }
include auth.conf
`, port, filepath.Join(dir, "js"), cert, key)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(conf), 0o600))
	server := exec.Command(binary, "nats", "serve", "--config", filepath.Join(dir, "nats.conf"))
	require.NoError(t, server.Start())
	t.Cleanup(func() { _ = server.Process.Kill(); _ = server.Wait() })

	url := fmt.Sprintf("tls://127.0.0.1:%d", port)
	args := []string{"status", "--nats-url", url, "--nats-creds", filepath.Join(dir, "admin.creds")}
	var out []byte
	require.Eventually(t, func() bool {
		out, err = exec.Command(binary, append(args, "--nats-ca", ca)...).CombinedOutput()
		return err == nil
	}, 20*time.Second, 200*time.Millisecond, "the CLI connects over TLS with the CA")
	require.Equal(t, "No functions found.\n", string(out), "nothing is deployed on this server")
	out, err = exec.Command(binary, args...).CombinedOutput()
	require.Error(t, err, "without the CA the server's certificate is not trusted: %s", out)
	require.Contains(t, string(out), "certificate")
}
