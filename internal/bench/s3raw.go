package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/opencontainers/go-digest"
)

// s3PartSize is the part size of the raw S3 baseline's multipart
// uploads, the same 8 MiB that Flotilla's upload engine uses by default.
const s3PartSize = 8 << 20

// S3Config is how the raw S3 baseline reaches the object store.
type S3Config struct {
	// Endpoint is host:port, or an http:// or https:// URL.
	Endpoint  string
	Region    string
	Bucket    string
	AccessKey string
	SecretKey string
	// CACertFile is the CA of an https endpoint; empty uses the system
	// roots.
	CACertFile string
}

// NewS3Client returns a minio-go client with path-style addressing. The
// transport is built here, so the client's trust does not depend on
// SSL_CERT_FILE or AWS_CA_BUNDLE.
func NewS3Client(cfg S3Config) (*minio.Client, error) {
	endpoint, secure := cfg.Endpoint, false
	switch {
	case strings.HasPrefix(endpoint, "https://"):
		endpoint, secure = strings.TrimPrefix(endpoint, "https://"), true
	case strings.HasPrefix(endpoint, "http://"):
		endpoint = strings.TrimPrefix(endpoint, "http://")
	}
	if endpoint == "" || strings.Contains(endpoint, "/") {
		return nil, fmt.Errorf("invalid S3 endpoint %q: use HOST:PORT or http://HOST:PORT", cfg.Endpoint)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.MaxIdleConnsPerHost = 256
	if secure && cfg.CACertFile != "" {
		pool, err := loadCertPool(cfg.CACertFile)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	client, err := minio.New(endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    transport,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", cfg.Endpoint, err)
	}
	return client, nil
}

// MakeBucket creates cfg.Bucket unless it exists already.
func MakeBucket(ctx context.Context, cfg S3Config) error {
	client, err := NewS3Client(cfg)
	if err != nil {
		return err
	}
	err = client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
	if err == nil {
		return nil
	}
	code := minio.ToErrorResponse(err).Code
	if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
		return nil
	}
	return fmt.Errorf("create bucket %s: %w", cfg.Bucket, err)
}

// S3RawConfig configures RunS3Raw.
type S3RawConfig struct {
	S3 S3Config
	// LargeSize is the size of the one large object; 0 skips it.
	LargeSize int64
	// Objects small objects of ObjectSize bytes are written and read
	// with Concurrency clients; 0 objects skips them.
	Objects     int
	ObjectSize  int64
	Concurrency int
	// Timeout bounds the transfer of one object.
	Timeout   time.Duration
	MaxErrors int
}

// RunS3Raw measures the object store without a registry: PutObject and
// GetObject with minio-go of one large object ("large-put", "large-get")
// and of many small ones ("small-put", "small-get"). Content is fresh
// random data, streamed and hashed with SHA-256 on the client as the
// registry workloads do, and every read is checked against its digest.
func RunS3Raw(ctx context.Context, o Options, cfg S3RawConfig) ([]Result, error) {
	client, err := NewS3Client(cfg.S3)
	if err != nil {
		return nil, err
	}
	prefix := "flotilla-bench/" + randomHex(4)
	var results []Result
	if cfg.LargeSize > 0 {
		results = append(results, s3Phase(ctx, o, client, cfg, prefix+"/large", 1, cfg.LargeSize, 1, "large")...)
	}
	if cfg.Objects > 0 {
		results = append(results, s3Phase(ctx, o, client, cfg, prefix+"/small", cfg.Objects, cfg.ObjectSize,
			cfg.Concurrency, "small")...)
	}
	return results, nil
}

// s3Phase writes count objects of size bytes under prefix with c
// clients, then reads them back. It returns NAME-put and NAME-get.
func s3Phase(ctx context.Context, o Options, client *minio.Client, cfg S3RawConfig,
	prefix string, count int, size int64, c int, name string,
) []Result {
	log := o.logger()
	digests := make([]digest.Digest, count)
	key := func(i int64) string { return fmt.Sprintf("%s/%d", prefix, i) }
	log.Info("raw S3 PUT starting", "objects", count, "bytes", size, "clients", c)

	s3 := o.s3Before(ctx)
	rec := runCount(ctx, c, int64(count), cfg.MaxErrors, cfg.Timeout,
		func(ctx context.Context, _ int, i int64) (int64, error) {
			digester := digest.Canonical.Digester()
			body := io.TeeReader(newBlobSpec(size).reader(), digester.Hash())
			info, err := client.PutObject(ctx, cfg.S3.Bucket, key(i), body, size, minio.PutObjectOptions{
				ContentType: "application/octet-stream",
				PartSize:    s3PartSize,
			})
			if err != nil {
				return 0, fmt.Errorf("PutObject %s: %w", key(i), err)
			}
			digests[i] = digester.Digest()
			return info.Size, nil
		})
	put := rec.result(name+"-put", "object")
	put.S3 = s3(put.Ops)
	log.Info("raw S3 PUT done", "mib_per_sec", put.MiBPerSec, "errors", put.Errors)

	s3 = o.s3Before(ctx)
	rec = runCount(ctx, c, int64(count), cfg.MaxErrors, cfg.Timeout,
		func(ctx context.Context, _ int, i int64) (int64, error) {
			if digests[i] == "" {
				return 0, errors.New("GetObject: its PutObject failed")
			}
			obj, err := client.GetObject(ctx, cfg.S3.Bucket, key(i), minio.GetObjectOptions{})
			if err != nil {
				return 0, fmt.Errorf("GetObject %s: %w", key(i), err)
			}
			defer obj.Close()
			verifier := digests[i].Verifier()
			n, err := io.CopyBuffer(verifier, obj, make([]byte, copyBufferSize))
			if err != nil {
				return n, fmt.Errorf("GetObject %s after %d bytes: %w", key(i), n, err)
			}
			if n != size || !verifier.Verified() {
				return n, fmt.Errorf("GetObject %s: %d bytes not matching the written %d", key(i), n, size)
			}
			return n, nil
		})
	get := rec.result(name+"-get", "object")
	get.S3 = s3(get.Ops)
	log.Info("raw S3 GET done", "mib_per_sec", get.MiBPerSec, "errors", get.Errors)
	return []Result{put, get}
}
