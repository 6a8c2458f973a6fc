package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestPrefix(t *testing.T) {
	s := newTestServer(t, func(o *Options) { o.Prefix = "/registry/" })
	expect(t, s.do(request{method: "GET", path: "/registry/v2/"}), 200, "")
	for _, path := range []string{"/v2/", "/other"} {
		r := s.do(request{method: "GET", path: path})
		expect(t, r, 404, "")
		if r.code() != "" {
			t.Errorf("GET %s: OCI error code %q outside the API, want a plain 404", path, r.code())
		}
	}
	expect(t, s.do(request{method: "GET", path: "/healthz"}), 200, "")

	content := []byte("layer under a prefix")
	r := s.do(request{method: "POST", path: "/registry/v2/p/blobs/uploads/"})
	expect(t, r, 202, "")
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, "/registry/v2/p/blobs/uploads/") {
		t.Fatalf("upload Location %q lacks the prefix", loc)
	}
	r = s.do(request{method: "PUT", path: loc + "?digest=" + digestOf(content), body: content})
	expect(t, r, 201, "")
	if loc := r.header.Get("Location"); loc != "/registry/v2/p/blobs/"+digestOf(content) {
		t.Fatalf("blob Location %q, want it under /registry/v2/", loc)
	}
	expect(t, s.do(request{method: "GET", path: "/registry/v2/p/blobs/" + digestOf(content)}), 200, "")
}

// testCert returns a certificate signed by parent (self-signed when
// parent is nil) for name.
func testCert(t *testing.T, name string, parent *tls.Certificate, isCA bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IsCA:                  isCA,
		BasicConstraintsValid: true,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	}
	signer, signerKey := tmpl, any(key)
	if parent != nil {
		signer, signerKey = parent.Leaf, parent.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestClientCertRequired(t *testing.T) {
	ca := testCert(t, "client CA", nil, true)
	other := testCert(t, "other CA", nil, true)
	good := testCert(t, "good client", &ca, false)
	foreign := testCert(t, "foreign client", &other, false)

	base := newTestServer(t, func(o *Options) { o.ClientCertRequired = true })
	// Plain HTTP carries no certificate at all.
	expect(t, base.do(request{method: "GET", path: "/v2/"}), 403, "DENIED")
	expect(t, base.do(request{method: "GET", path: "/healthz"}), 200, "")

	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)
	hs := httptest.NewUnstartedServer(base.handler)
	hs.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	hs.StartTLS()
	t.Cleanup(hs.Close)

	get := func(cert *tls.Certificate, path string) (int, error) {
		tr := hs.Client().Transport.(*http.Transport).Clone()
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", hs.URL+path, nil)
		req.SetBasicAuth(testUser, testPassword)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(&good, "/v2/"); err != nil || code != 200 {
		t.Errorf("with a certificate of the client CA: %d, %v; want 200", code, err)
	}
	if code, err := get(nil, "/v2/"); err != nil || code != 403 {
		t.Errorf("without a certificate: %d, %v; want 403", code, err)
	}
	if code, err := get(nil, "/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz without a certificate: %d, %v; want 200", code, err)
	}
	// The client holds back a certificate that no CA of the server's
	// request signed, so this is denied like no certificate, or fails in
	// the handshake.
	if code, err := get(&foreign, "/v2/"); err == nil && code != 403 {
		t.Errorf("a certificate of another CA got %d, want 403 or a failed handshake", code)
	}
}
