package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// NATS over TLS, as README's "TLS" says: `sluice nats serve` with a tls
// block and the auth.conf of `sluice nats init`; the CLI connects with a
// tls:// URL and --nats-ca, and is refused without the CA.
func TestNATSOverTLS(t *testing.T) {
	dir := t.TempDir()
	sluice(t, "nats", "init", "--out", dir)
	writeCertificates(t, dir)
	port := freePorts(t, 1)[0]
	conf := fmt.Sprintf(`listen: 127.0.0.1:%d
jetstream { store_dir: %q }
tls { cert_file: %q, key_file: %q }
include auth.conf
`, port, filepath.Join(dir, "js"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(conf), 0o600))
	server := exec.Command(binary, "nats", "serve", "--config", filepath.Join(dir, "nats.conf"))
	require.NoError(t, server.Start())
	t.Cleanup(func() { _ = server.Process.Kill(); _ = server.Wait() })

	url := fmt.Sprintf("tls://127.0.0.1:%d", port)
	args := []string{"status", "--nats-url", url, "--nats-creds", filepath.Join(dir, "admin.creds")}
	var out []byte
	var err error
	require.Eventually(t, func() bool {
		out, err = exec.Command(binary, append(args, "--nats-ca", filepath.Join(dir, "ca.pem"))...).CombinedOutput()
		return err == nil
	}, 20*time.Second, 200*time.Millisecond, "the CLI connects over TLS with the CA")
	require.Contains(t, string(out), "FUNCTION")
	out, err = exec.Command(binary, args...).CombinedOutput()
	require.Error(t, err, "without the CA the server's certificate is not trusted: %s", out)
	require.Contains(t, string(out), "certificate")
}

// writeCertificates writes a CA (ca.pem) and a certificate for 127.0.0.1
// that it signed (server.pem, server-key.pem) to dir.
func writeCertificates(t *testing.T, dir string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &serverKey.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(serverKey)
	require.NoError(t, err)
	for name, block := range map[string]*pem.Block{
		"ca.pem": {Type: "CERTIFICATE", Bytes: caDER}, "server.pem": {Type: "CERTIFICATE", Bytes: leafDER},
		"server-key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600))
	}
}
