package blobstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/flotilla-registry/flotilla/blobstore"
	"github.com/flotilla-registry/flotilla/blobstore/storetest"
	"github.com/flotilla-registry/flotilla/internal/logging"
	"github.com/flotilla-registry/flotilla/internal/testenv"
)

// s3Config returns a configuration for srv under its own key prefix.
func s3Config(srv testenv.S3Server, prefix string) blobstore.S3Config {
	return blobstore.S3Config{
		Endpoint:       srv.Endpoint,
		Secure:         srv.Secure,
		Region:         srv.Region,
		Bucket:         srv.Bucket,
		AccessKey:      srv.AccessKey,
		SecretKey:      srv.SecretKey,
		ForcePathStyle: true,
		RootDirectory:  prefix,
	}
}

func newS3(t *testing.T, cfg blobstore.S3Config) *blobstore.S3Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := blobstore.NewS3(ctx, cfg, logging.Discard())
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return s
}

func TestS3(t *testing.T) {
	srv := testenv.StartS3(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) blobstore.Store {
		return newS3(t, s3Config(srv, fmt.Sprintf("run-%d", n.Add(1))))
	})
}

func TestS3RequestCounts(t *testing.T) {
	srv := testenv.StartS3(t)
	s := newS3(t, s3Config(srv, "counts"))
	ctx := context.Background()
	data := storetest.Data(1, 1000)
	if err := s.Put(ctx, "a", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if _, err := s.Stat(ctx, "a"); err != nil {
		t.Fatalf("Stat: %v", err)
	}
	rc, err := s.Open(ctx, "a", 1, 10)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	rc.Close()
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}

	want := map[string]int64{
		"HeadBucket":   1, // from NewS3
		"PutObject":    1,
		"HeadObject":   1,
		"GetObject":    1,
		"DeleteObject": 1,
	}
	got := s.RequestCounts()
	for op, n := range got {
		if n != want[op] {
			t.Errorf("RequestCounts()[%s] = %d, want %d", op, n, want[op])
		}
	}
	if total := s.TotalRequests(); total != 5 {
		t.Errorf("TotalRequests() = %d, want 5", total)
	}
}

func TestS3RootDirectory(t *testing.T) {
	srv := testenv.StartS3(t)
	s := newS3(t, s3Config(srv, "/prefix/dir/"))
	ctx := context.Background()
	if err := s.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
		t.Fatalf("Put: %v", err)
	}
	_, err := srv.S3Client(t).StatObject(ctx, srv.Bucket, "prefix/dir/k", minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("object not stored under the root directory: %v", err)
	}
}

func TestS3MissingBucket(t *testing.T) {
	srv := testenv.StartS3(t)
	cfg := s3Config(srv, "")
	cfg.Bucket = "no-such-bucket"
	_, err := blobstore.NewS3(context.Background(), cfg, logging.Discard())
	if err == nil {
		t.Fatal("NewS3 with a missing bucket returned no error")
	}
	if !strings.Contains(err.Error(), "no-such-bucket") {
		t.Errorf("error %q does not name the bucket", err)
	}
	if errors.Is(err, blobstore.ErrUnavailable) {
		t.Errorf("error %q wraps ErrUnavailable for a missing bucket", err)
	}
}

func TestS3WrongSecret(t *testing.T) {
	srv := testenv.StartS3(t)
	cfg := s3Config(srv, "")
	cfg.SkipBucketCheck = true
	cfg.SecretKey = "wrong-secret-value"
	s := newS3(t, cfg)
	err := s.Put(context.Background(), "k", strings.NewReader("v"), 1)
	if err == nil {
		t.Fatal("Put with a wrong secret returned no error")
	}
	if strings.Contains(err.Error(), cfg.SecretKey) || strings.Contains(err.Error(), srv.SecretKey) {
		t.Errorf("error %q contains a secret key", err)
	}
	if errors.Is(err, blobstore.ErrUnavailable) || errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("error %q is mapped to a retryable or not-found error", err)
	}
}

func TestS3Unavailable(t *testing.T) {
	srv := testenv.StartS3(t)
	cfg := s3Config(srv, "")
	cfg.MaxRetries = 1
	s := newS3(t, cfg)
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.Stat(ctx, "k")
	if !errors.Is(err, blobstore.ErrUnavailable) {
		t.Errorf("Stat with the server stopped: %v, want ErrUnavailable", err)
	}
	err = s.Put(ctx, "k", strings.NewReader("v"), 1)
	if !errors.Is(err, blobstore.ErrUnavailable) {
		t.Errorf("Put with the server stopped: %v, want ErrUnavailable", err)
	}
	_, err = blobstore.NewS3(ctx, cfg, logging.Discard())
	if !errors.Is(err, blobstore.ErrUnavailable) {
		t.Errorf("NewS3 with the server stopped: %v, want ErrUnavailable", err)
	}
}

// failingReader returns some bytes and then an error, like a client that
// disconnects during an upload.
type failingReader struct{ n int }

var errClientGone = errors.New("client went away")

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errClientGone
	}
	n := min(len(p), r.n)
	clear(p[:n])
	r.n -= n
	return n, nil
}

func TestS3BodyError(t *testing.T) {
	srv := testenv.StartS3(t)
	s := newS3(t, s3Config(srv, ""))
	ctx := context.Background()
	err := s.Put(ctx, "k", &failingReader{n: 100}, 1000)
	if !errors.Is(err, errClientGone) {
		t.Errorf("Put with a failing body: %v, want the body's error", err)
	}
	if errors.Is(err, blobstore.ErrUnavailable) {
		t.Errorf("Put with a failing body: %v wraps ErrUnavailable", err)
	}
	id, err := s.CreateMultipart(ctx, "m")
	if err != nil {
		t.Fatalf("CreateMultipart: %v", err)
	}
	_, err = s.UploadPart(ctx, "m", id, 1, &failingReader{n: 100}, 1000)
	if !errors.Is(err, errClientGone) {
		t.Errorf("UploadPart with a failing body: %v, want the body's error", err)
	}
	if err := s.AbortMultipart(ctx, "m", id); err != nil {
		t.Errorf("AbortMultipart: %v", err)
	}
}

func TestS3TLS(t *testing.T) {
	srv := testenv.StartS3(t, testenv.WithTLS())
	// The machine's CA variables must neither break nor widen trust.
	t.Setenv("AWS_CA_BUNDLE", "/nonexistent/ca.pem")
	ctx := context.Background()
	tests := []struct {
		name    string
		modify  func(*blobstore.S3Config)
		wantErr bool
	}{
		{"trusted CA file", func(c *blobstore.S3Config) { c.CACertFile = srv.CACertFile }, false},
		{"URL endpoint", func(c *blobstore.S3Config) {
			c.Endpoint, c.Secure, c.CACertFile = srv.URL(), false, srv.CACertFile
		}, false},
		{"system roots only", func(c *blobstore.S3Config) {}, true},
		{"skip verify", func(c *blobstore.S3Config) { c.SkipVerify = true }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s3Config(srv, "")
			cfg.MaxRetries = 1
			tt.modify(&cfg)
			_, err := blobstore.NewS3(ctx, cfg, logging.Discard())
			if tt.wantErr && err == nil {
				t.Fatal("NewS3 returned no error for an untrusted certificate")
			}
			if tt.wantErr && errors.Is(err, blobstore.ErrUnavailable) {
				t.Fatalf("NewS3 error %v wraps ErrUnavailable for an untrusted certificate", err)
			}
			if !tt.wantErr && err != nil {
				t.Fatalf("NewS3: %v", err)
			}
		})
	}
}

func TestS3PlainHTTPIgnoresCAVariables(t *testing.T) {
	srv := testenv.StartS3(t)
	t.Setenv("AWS_CA_BUNDLE", "/nonexistent/ca.pem")
	t.Setenv("SSL_CERT_FILE", "/nonexistent/cert.pem")
	for _, endpoint := range []string{srv.Endpoint, srv.URL()} {
		cfg := s3Config(srv, "")
		cfg.Endpoint = endpoint
		s := newS3(t, cfg)
		if err := s.Put(context.Background(), "k", strings.NewReader("v"), 1); err != nil {
			t.Errorf("Put through %s: %v", endpoint, err)
		}
	}
}

func TestParseS3Config(t *testing.T) {
	tests := []struct {
		endpoint string
		ok       bool
	}{
		{"127.0.0.1:9000", true},
		{"http://minio:9000", true},
		{"https://s3.example.com", true},
		{"ftp://minio:9000", false},
		{"http://minio:9000/path", false},
		{"http://user:pass@minio:9000", false},
	}
	for _, tt := range tests {
		t.Run(tt.endpoint, func(t *testing.T) {
			cfg := blobstore.S3Config{Endpoint: tt.endpoint, Bucket: "b", SkipBucketCheck: true}
			_, err := blobstore.NewS3(context.Background(), cfg, nil)
			if tt.ok && err != nil {
				t.Errorf("NewS3: %v", err)
			}
			if !tt.ok && err == nil {
				t.Error("NewS3 returned no error")
			}
		})
	}
}
