package kubetest

import (
	"crypto"
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
	"path/filepath"
	"time"
)

// pki is the files of a test cluster's certificates and keys, all made here
// in Go: a CA, the apiserver's serving certificate, the service-account key.
type pki struct {
	caCert, caKey           string
	servingCert, servingKey string
	// serviceAccountKey signs service-account tokens; serviceAccountPub checks them.
	serviceAccountKey, serviceAccountPub string
	// caPEM is caCert's content, for clients.
	caPEM []byte
}

// newPKI writes a fresh CA, a serving certificate for 127.0.0.1 and the
// in-cluster names of the apiserver, and a service-account key pair into dir.
func newPKI(dir string) (*pki, error) {
	p := &pki{
		caCert: filepath.Join(dir, "ca.crt"), caKey: filepath.Join(dir, "ca.key"),
		servingCert: filepath.Join(dir, "apiserver.crt"), servingKey: filepath.Join(dir, "apiserver.key"),
		serviceAccountKey: filepath.Join(dir, "sa.key"), serviceAccountPub: filepath.Join(dir, "sa.pub"),
	}
	now := time.Now()
	caKey, err := writeKey(p.caKey)
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice-kubetest-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	if p.caPEM, err = writeCert(p.caCert, caDER); err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	if err := writeServingCert(p, ca, caKey, now); err != nil {
		return nil, err
	}
	saKey, err := writeKey(p.serviceAccountKey)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	return p, os.WriteFile(p.serviceAccountPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

// ServingCertificates writes to dir a fresh CA and a serving certificate for
// 127.0.0.1 it signed, with the certificate's key, and returns the three
// files: the test cluster's own, for a test of another TLS server.
func ServingCertificates(dir string) (ca, cert, key string, err error) {
	p, err := newPKI(dir)
	if err != nil {
		return "", "", "", err
	}
	return p.caCert, p.servingCert, p.servingKey, nil
}

// writeServingCert signs the apiserver's serving certificate with the CA.
func writeServingCert(p *pki, ca *x509.Certificate, caKey crypto.Signer, now time.Time) error {
	key, err := writeKey(p.servingKey)
	if err != nil {
		return err
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(NodeIP), net.ParseIP(serviceIP)},
		DNSNames: []string{
			"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, key.Public(), caKey)
	if err != nil {
		return fmt.Errorf("create serving certificate: %w", err)
	}
	// The serving file holds the certificate alone; the CA file holds the CA alone.
	_, err = writeCert(p.servingCert, der)
	return err
}

// writeKey makes an ECDSA P-256 key and writes it as PKCS#8 PEM.
func writeKey(path string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return key, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeCert writes a DER certificate as PEM and returns the PEM.
func writeCert(path string, der []byte) ([]byte, error) {
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return data, os.WriteFile(path, data, 0o600)
}
