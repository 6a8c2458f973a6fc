package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// certValidity is how long the generated certificates are valid. The
// start is an hour in the past, so clock skew between the test and a
// node cannot make a fresh certificate "not yet valid".
const certValidity = 24 * time.Hour

// CertAuthority is a test CA that signs node certificates for the
// cluster port.
type CertAuthority struct {
	// CertFile is the PEM certificate of the CA, the file that
	// REGISTRY_CLUSTER_TLS_CA names.
	CertFile string
	Cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	dir      string
}

// NewCertAuthority creates a CA named name and writes its certificate
// into dir.
func NewCertAuthority(t testing.TB, dir, name string) *CertAuthority {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Flotilla cluster tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}

	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA certificate %s: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse CA certificate %s: %v", name, err)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("create CA folder: %v", err)
	}
	ca := &CertAuthority{
		CertFile: filepath.Join(dir, name+"-ca.pem"),
		Cert:     cert,
		key:      key,
		dir:      dir,
	}
	writePEM(t, ca.CertFile, "CERTIFICATE", der, 0o644)
	return ca
}

// IssueNodeCert writes a certificate and key for a node named name,
// signed by ca, with the serverAuth and clientAuth extended key usages
// and the given hosts (IP addresses or DNS names) as subject alternative
// names. It returns the paths of the PEM files.
func (ca *CertAuthority) IssueNodeCert(t testing.TB, name string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(t),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Flotilla cluster tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}

	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("create certificate for %s: %v", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key for %s: %v", name, err)
	}

	certFile = filepath.Join(ca.dir, name+"-cert.pem")
	keyFile = filepath.Join(ca.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der, 0o644)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER, 0o600)
	return certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return key
}

func newSerial(t testing.TB) *big.Int {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("generate serial number: %v", err)
	}
	return serial
}

func writePEM(t testing.TB, path, blockType string, der []byte, mode os.FileMode) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}
