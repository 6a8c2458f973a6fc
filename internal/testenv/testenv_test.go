package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

func TestWriteSelfSignedCert(t *testing.T) {
	certFile, keyFile := WriteSelfSignedCert(t, t.TempDir(), "registry.test", "10.1.2.3")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("load key pair: %v", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	if !cert.IsCA {
		t.Error("certificate is not a CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	for _, host := range []string{"127.0.0.1", "::1", "localhost", "registry.test", "10.1.2.3"} {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: roots})
		if err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "other.test", Roots: roots}); err == nil {
		t.Error("certificate verifies for a host it was not made for")
	}
}

func TestStartS3(t *testing.T) {
	srv := StartS3(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := srv.S3Client(t)
	ok, err := client.BucketExists(ctx, srv.Bucket)
	if err != nil || !ok {
		t.Fatalf("BucketExists(%s) = %v, %v; want true", srv.Bucket, ok, err)
	}
	srv.Stop()
	srv.Stop()
	if _, err := client.BucketExists(ctx, srv.Bucket); err == nil {
		t.Error("BucketExists succeeded after Stop")
	}
}
