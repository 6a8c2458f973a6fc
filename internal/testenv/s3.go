package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Time limits for starting and stopping versitygw.
const (
	s3StartTimeout = 15 * time.Second
	s3StopTimeout  = 5 * time.Second
	s3StartTries   = 3
)

// S3Server is a versitygw process with a POSIX backend in a temporary
// folder, listening on a loopback port, with one empty bucket.
type S3Server struct {
	// Endpoint is host:port of the server.
	Endpoint string
	// Secure is true when the server speaks TLS. CACertFile is then the
	// self-signed certificate to trust.
	Secure     bool
	CACertFile string
	Region     string
	Bucket     string
	AccessKey  string
	SecretKey  string
	// Root is the folder that contains the buckets.
	Root string

	proc *s3Process
}

// URL returns the endpoint with its scheme.
func (s S3Server) URL() string {
	if s.Secure {
		return "https://" + s.Endpoint
	}
	return "http://" + s.Endpoint
}

// Stop stops the server before the test ends, for tests of an unavailable
// store. Calling it again does nothing.
func (s S3Server) Stop() {
	s.proc.stop()
}

// S3Option changes how StartS3 starts the server.
type S3Option func(*s3Options)

type s3Options struct {
	tls bool
}

// WithTLS makes the server speak TLS with a self-signed certificate.
func WithTLS() S3Option {
	return func(o *s3Options) { o.tls = true }
}

// StartS3 starts versitygw (v1.8.0, found in PATH through Tool) on a free
// loopback port, waits until it responds, creates a bucket, and stops the
// server when the test ends. When the test fails, the server's output is
// printed.
func StartS3(t testing.TB, opts ...S3Option) S3Server {
	t.Helper()
	var o s3Options
	for _, opt := range opts {
		opt(&o)
	}
	bin := Tool(t, "versitygw")

	dir := t.TempDir()
	srv := S3Server{
		Region:    "us-east-1",
		Bucket:    "flotilla-test",
		AccessKey: "flotillatest",
		SecretKey: randomHex(t, 20),
		Root:      filepath.Join(dir, "root"),
		Secure:    o.tls,
	}
	if err := os.Mkdir(srv.Root, 0o700); err != nil {
		t.Fatalf("create versitygw root: %v", err)
	}
	var certFile, keyFile string
	if o.tls {
		certFile, keyFile = WriteSelfSignedCert(t, dir)
		srv.CACertFile = certFile
	}

	var lastErr error
	for try := 1; try <= s3StartTries; try++ {
		port := FreePort(t, "127.0.0.1")
		srv.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args := []string{
			"--access", srv.AccessKey, "--secret", srv.SecretKey,
			"--region", srv.Region, "--port", srv.Endpoint, "--keep-alive", "--quiet",
		}
		if o.tls {
			args = append(args, "--cert", certFile, "--key", keyFile)
		}
		args = append(args, "posix", srv.Root)

		logFile := filepath.Join(dir, fmt.Sprintf("versitygw-%d.log", try))
		proc, err := startProcess(t, bin, args, logFile)
		if err != nil {
			t.Fatalf("start versitygw: %v", err)
		}
		srv.proc = proc
		t.Cleanup(func() {
			proc.stop()
			if t.Failed() {
				out, _ := os.ReadFile(logFile)
				t.Logf("versitygw output (%s):\n%s", logFile, out)
			}
		})
		lastErr = waitForS3(srv, proc)
		if lastErr == nil {
			break
		}
		// Another process may have taken the port between FreePort and
		// the start: stop this one and try another port.
		proc.stop()
	}
	if lastErr != nil {
		t.Fatalf("versitygw did not start after %d tries: %v", s3StartTries, lastErr)
	}

	makeBucket(t, srv)
	return srv
}

// S3Client returns a minio-go client for the server with path-style
// addressing, trusting the server's own certificate when it speaks TLS.
func (s S3Server) S3Client(t testing.TB) *minio.Client {
	t.Helper()
	tr := &http.Transport{}
	if s.Secure {
		pem, err := os.ReadFile(s.CACertFile)
		if err != nil {
			t.Fatalf("read certificate: %v", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	client, err := minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:       s.Secure,
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    tr,
	})
	if err != nil {
		t.Fatalf("minio client: %v", err)
	}
	return client
}

func makeBucket(t testing.TB, srv S3Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s3StartTimeout)
	defer cancel()
	err := srv.S3Client(t).MakeBucket(ctx, srv.Bucket, minio.MakeBucketOptions{Region: srv.Region})
	if err != nil {
		t.Fatalf("create bucket %s: %v", srv.Bucket, err)
	}
}

// waitForS3 polls the server until it sends any HTTP response, or returns
// an error when the process exits or s3StartTimeout passes.
func waitForS3(srv S3Server, proc *s3Process) error {
	client := &http.Client{Timeout: time.Second}
	if srv.Secure {
		// This check is for liveness only. The tests check the certificate.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	deadline := time.Now().Add(s3StartTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-proc.done:
			return fmt.Errorf("versitygw exited: %v", proc.waitErr)
		default:
		}
		resp, err := client.Get(srv.URL() + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("versitygw did not respond within " + s3StartTimeout.String())
}

// s3Process is a started versitygw process.
type s3Process struct {
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
}

func startProcess(t testing.TB, bin string, args []string, logFile string) (*s3Process, error) {
	t.Helper()
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	p := &s3Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends an interrupt and kills the process if it has not exited
// within s3StopTimeout.
func (p *s3Process) stop() {
	if p == nil {
		return
	}
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(s3StopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}
