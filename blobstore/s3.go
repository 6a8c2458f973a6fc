package blobstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// DefaultRegion is the region used when S3Config.Region is empty.
const DefaultRegion = "us-east-1"

// S3Config configures an S3Store. The names follow the S3 driver options
// of the CNCF registry (registry:2).
type S3Config struct {
	// Endpoint is the server as host:port or as a URL such as
	// "http://minio:9000" ("regionendpoint" in registry:2). A URL's scheme
	// decides TLS and overrides Secure. Empty means Amazon S3 over TLS.
	Endpoint string
	// Region is the bucket's region, DefaultRegion when empty. A known
	// region also saves minio-go a bucket-location request.
	Region string
	// Bucket is the bucket that holds every object.
	Bucket string
	// AccessKey and SecretKey sign the requests. When both are empty the
	// keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
	AccessKey string
	SecretKey string
	// Secure turns TLS on for an Endpoint given as host:port.
	Secure bool
	// SkipVerify turns off the check of the server's TLS certificate.
	SkipVerify bool
	// ForcePathStyle addresses the bucket in the path (host/bucket/key)
	// rather than in the host name (bucket.host/key). Servers reached by
	// IP address or by a bare container name need it.
	ForcePathStyle bool
	// RootDirectory is a prefix for every key, such as "registry".
	RootDirectory string
	// CACertFile is a PEM file of certificates to trust in addition to the
	// system roots.
	CACertFile string
	// MaxRetries is the number of attempts minio-go makes for a request
	// whose body can be read again. 0 keeps minio-go's default of 10, and 1
	// turns retries off.
	MaxRetries int
	// SkipBucketCheck skips the request that NewS3 sends to check that the
	// bucket exists.
	SkipBucketCheck bool
}

// S3Store is a Store on an S3-compatible bucket. It streams every body:
// Put sends one PUT of known size, UploadPart sends one part, and neither
// buffers the body nor computes its MD5 or SHA-256.
type S3Store struct {
	core   *minio.Core
	bucket string
	prefix string
	logger *slog.Logger
	counts *requestCounts
}

var _ Store = (*S3Store)(nil)

// NewS3 returns a store on the configured bucket. Unless
// cfg.SkipBucketCheck is set, it checks that the bucket exists, and an
// unreachable server then yields an error wrapping ErrUnavailable.
func NewS3(ctx context.Context, cfg S3Config, logger *slog.Logger) (*S3Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("blobstore: s3 bucket is not set")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	host, secure, err := parseEndpoint(cfg.Endpoint, cfg.Secure)
	if err != nil {
		return nil, err
	}
	transport, err := s3Transport(secure, cfg.SkipVerify, cfg.CACertFile)
	if err != nil {
		return nil, err
	}

	region := cfg.Region
	if region == "" {
		region = DefaultRegion
	}
	lookup := minio.BucketLookupAuto
	if cfg.ForcePathStyle {
		lookup = minio.BucketLookupPath
	}
	creds := credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	if cfg.AccessKey == "" && cfg.SecretKey == "" {
		creds = credentials.NewEnvAWS()
	}
	counts := newRequestCounts()
	core, err := minio.NewCore(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Transport:    &countingTransport{base: transport, counts: counts},
		Region:       region,
		BucketLookup: lookup,
		MaxRetries:   cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("blobstore: s3 client for %s: %w", host, err)
	}

	s := &S3Store{
		core:   core,
		bucket: cfg.Bucket,
		prefix: strings.Trim(cfg.RootDirectory, "/"),
		logger: logger.With("bucket", cfg.Bucket),
		counts: counts,
	}
	if s.prefix != "" {
		s.prefix += "/"
	}

	if !cfg.SkipBucketCheck {
		if err := s.CheckBucket(ctx); err != nil {
			return nil, err
		}
	}
	s.logger.Info("s3 blob store opened", "endpoint", host, "tls", secure,
		"path_style", cfg.ForcePathStyle, "root", s.prefix)
	return s, nil
}

// CheckBucket sends one HEAD request for the bucket and returns an error
// naming the bucket when it does not exist or cannot be reached.
func (s *S3Store) CheckBucket(ctx context.Context) error {
	ok, err := s.core.BucketExists(withOperation(ctx, opHeadBucket), s.bucket)
	if err != nil {
		return s3Error("check bucket", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("blobstore: s3 bucket %q does not exist: create it or fix the bucket name", s.bucket)
	}
	return nil
}

// Put sends one PUT request with a Content-Length of size. Amazon S3
// accepts at most 5 GiB in one PUT; larger objects need a multipart upload.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("blobstore: put %s: negative size %d", key, size)
	}
	body, state := newBody(r, size)
	_, err := s.core.PutObject(withOperation(ctx, opPutObject), s.bucket, s.prefix+key,
		body, size, "", "", minio.PutObjectOptions{
			ContentType:          "application/octet-stream",
			DisableContentSha256: true,
		})
	if err != nil {
		return state.wrap("put", key, err)
	}
	return nil
}

// Open sends one GET request, with a Range header unless the whole object
// is read. A length of 0 is served by a HEAD request instead.
func (s *S3Store) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if offset < 0 || length < -1 {
		return nil, fmt.Errorf("%w: offset %d, length %d for %s", ErrInvalidRange, offset, length, key)
	}
	if length == 0 {
		return s.openEmpty(ctx, key, offset)
	}
	var opts minio.GetObjectOptions
	switch {
	case offset == 0 && length == -1:
		// No Range header: S3 rejects "bytes=0-" on an empty object.
	case length == -1:
		err := opts.SetRange(offset, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidRange, err)
		}
	default:
		err := opts.SetRange(offset, offset+length-1)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidRange, err)
		}
	}
	body, _, _, err := s.core.GetObject(withOperation(ctx, opGetObject), s.bucket, s.prefix+key, opts)
	if err != nil {
		err = s3Error("open", key, err)
		if offset == 0 && errors.Is(err, ErrInvalidRange) {
			// Only an empty object rejects a range that starts at 0.
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, err
	}
	return &s3Reader{body: body, key: key}, nil
}

func (s *S3Store) openEmpty(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	if offset > 0 && offset >= info.Size {
		return nil, fmt.Errorf("%w: offset %d of %s, which has %d bytes", ErrInvalidRange, offset, key, info.Size)
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// Stat sends one HEAD request.
func (s *S3Store) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	oi, err := s.core.StatObject(withOperation(ctx, opHeadObject), s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, s3Error("stat", key, err)
	}
	return Info{Key: key, Size: oi.Size}, nil
}

// Delete sends one DELETE request.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	err := s.core.RemoveObject(withOperation(ctx, opDeleteObject), s.bucket, s.prefix+key, minio.RemoveObjectOptions{})
	if err != nil {
		err = s3Error("delete", key, err)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// CreateMultipart sends one CreateMultipartUpload request.
func (s *S3Store) CreateMultipart(ctx context.Context, key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	id, err := s.core.NewMultipartUpload(withOperation(ctx, opCreateMultipart), s.bucket, s.prefix+key, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return "", s3Error("create multipart upload", key, err)
	}
	return id, nil
}

// UploadPart sends one UploadPart request that streams size bytes of r.
func (s *S3Store) UploadPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) (Part, error) {
	if err := ValidateKey(key); err != nil {
		return Part{}, err
	}
	if uploadID == "" {
		return Part{}, fmt.Errorf("%w: empty multipart upload id for %s", ErrNotFound, key)
	}
	if n < 1 || n > MaxParts {
		return Part{}, fmt.Errorf("%w: part number %d is outside 1..%d", ErrInvalidPart, n, MaxParts)
	}
	if size < 0 {
		return Part{}, fmt.Errorf("blobstore: upload part %d of %s: negative size %d", n, key, size)
	}
	body, state := newBody(r, size)
	op, err := s.core.PutObjectPart(withOperation(ctx, opUploadPart), s.bucket, s.prefix+key, uploadID, n,
		body, size, minio.PutObjectPartOptions{DisableContentSha256: true})
	if err != nil {
		return Part{}, state.wrap(fmt.Sprintf("upload part %d of", n), key, err)
	}
	return Part{Number: n, ETag: op.ETag, Size: size}, nil
}

// CompleteMultipart sends one CompleteMultipartUpload request.
func (s *S3Store) CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if uploadID == "" {
		return fmt.Errorf("%w: empty multipart upload id for %s", ErrNotFound, key)
	}
	if len(parts) == 0 {
		return fmt.Errorf("%w: no parts to complete %s", ErrInvalidPart, key)
	}
	complete := make([]minio.CompletePart, len(parts))
	for i, p := range parts {
		complete[i] = minio.CompletePart{PartNumber: p.Number, ETag: p.ETag}
	}
	_, err := s.core.CompleteMultipartUpload(withOperation(ctx, opCompleteMultipart), s.bucket, s.prefix+key,
		uploadID, complete, minio.PutObjectOptions{})
	if err != nil {
		return s3Error("complete multipart upload", key, err)
	}
	return nil
}

// AbortMultipart sends one AbortMultipartUpload request.
func (s *S3Store) AbortMultipart(ctx context.Context, key, uploadID string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if uploadID == "" {
		return fmt.Errorf("%w: empty multipart upload id for %s", ErrNotFound, key)
	}
	err := s.core.AbortMultipartUpload(withOperation(ctx, opAbortMultipart), s.bucket, s.prefix+key, uploadID)
	if err != nil {
		return s3Error("abort multipart upload", key, err)
	}
	return nil
}

// parseEndpoint returns the host:port that minio-go expects and whether to
// use TLS.
func parseEndpoint(endpoint string, secure bool) (string, bool, error) {
	if endpoint == "" {
		return "s3.amazonaws.com", true, nil
	}
	if !strings.Contains(endpoint, "://") {
		return strings.TrimSuffix(endpoint, "/"), secure, nil
	}
	// The messages leave out the endpoint's text when it may contain a
	// password.
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, errors.New("blobstore: invalid s3 endpoint: not a URL or host:port")
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", false, fmt.Errorf("blobstore: invalid s3 endpoint %q: use scheme://host[:port] without path, query or user", u.Redacted())
	}
	switch u.Scheme {
	case "http":
		return u.Host, false, nil
	case "https":
		return u.Host, true, nil
	default:
		return "", false, fmt.Errorf("blobstore: invalid s3 endpoint %q: scheme must be http or https", u.Redacted())
	}
}

// s3Transport builds the HTTP transport. TLS trusts the system roots plus
// caFile; the minio-go default transport is not used because it also adds
// certificates from SSL_CERT_FILE on its own. A plain-HTTP endpoint gets no
// TLS settings at all, whatever AWS_CA_BUNDLE or SSL_CERT_FILE contain.
func s3Transport(secure, skipVerify bool, caFile string) (*http.Transport, error) {
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		ExpectContinueTimeout: time.Second,
		// Objects are opaque bytes: never decode a Content-Encoding.
		DisableCompression: true,
	}
	if !secure {
		return tr, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: skipVerify}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("blobstore: read s3 CA certificate file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("blobstore: s3 CA certificate file %s contains no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	tr.TLSClientConfig = cfg
	return tr, nil
}

// s3Reader translates errors while an object body is read.
type s3Reader struct {
	body io.ReadCloser
	key  string
}

func (r *s3Reader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if err != nil && err != io.EOF {
		err = s3Error("read", r.key, err)
	}
	return n, err
}

func (r *s3Reader) Close() error { return r.body.Close() }

// sizedReader passes on exactly remaining bytes of r and records an error
// of r itself, so a failing or short request body is not mistaken for an
// unavailable store.
type sizedReader struct {
	r         io.Reader
	remaining int64
	err       error
}

func (b *sizedReader) Read(p []byte) (int, error) {
	if b.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.r.Read(p)
	b.remaining -= int64(n)
	if err == io.EOF && b.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	if b.remaining == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// seekableSizedReader lets minio-go retry a request whose body can be
// read again, such as a part buffered in memory: it seeks back to where the
// body started.
type seekableSizedReader struct {
	sizedReader
	seeker io.Seeker
	start  int64
	size   int64
}

func (b *seekableSizedReader) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekStart {
		return 0, errors.New("blobstore: request body can only seek to its start")
	}
	if b.err != nil {
		// The body itself failed, so a retry would fail again.
		return 0, b.err
	}
	if _, err := b.seeker.Seek(b.start, io.SeekStart); err != nil {
		return 0, err
	}
	b.remaining, b.err = b.size, nil
	return 0, nil
}

// newBody wraps a request body of size bytes. The result is an io.Seeker
// only when r is one.
func newBody(r io.Reader, size int64) (io.Reader, *sizedReader) {
	if seeker, ok := r.(io.ReadSeeker); ok {
		if start, err := seeker.Seek(0, io.SeekCurrent); err == nil {
			b := &seekableSizedReader{
				sizedReader: sizedReader{r: r, remaining: size},
				seeker:      seeker,
				start:       start,
				size:        size,
			}
			return b, &b.sizedReader
		}
	}
	b := &sizedReader{r: r, remaining: size}
	return b, b
}

// wrap returns the body's own error when reading it failed, else the
// translated S3 error.
func (b *sizedReader) wrap(op, key string, err error) error {
	if b.err != nil {
		return fmt.Errorf("blobstore: %s %s: read body: %w", op, key, b.err)
	}
	return s3Error(op, key, err)
}

// s3Error is the one place that translates minio-go and network errors into
// the package's errors. The S3 error code and message stay in the text,
// because minio-go's messages contain no credentials.
func s3Error(op, key string, err error) error {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		detail := fmt.Sprintf("%s (%s, HTTP %d)", resp.Error(), resp.Code, resp.StatusCode)
		switch {
		case resp.Code == "NoSuchKey" || resp.Code == "NoSuchUpload" || resp.Code == "NoSuchBucket" ||
			resp.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w: s3 %s %s: %s", ErrNotFound, op, key, detail)
		case resp.Code == "InvalidRange" || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
			return fmt.Errorf("%w: s3 %s %s: %s", ErrInvalidRange, op, key, detail)
		case resp.Code == "InvalidPart" || resp.Code == "InvalidPartOrder" || resp.Code == "EntityTooSmall":
			return fmt.Errorf("%w: s3 %s %s: %s", ErrInvalidPart, op, key, detail)
		case resp.Code == "SlowDown" || resp.Code == "RequestTimeout" || resp.Code == "InternalError" ||
			resp.Code == "ServiceUnavailable" || resp.StatusCode >= 500:
			return fmt.Errorf("%w: s3 %s %s: %s", ErrUnavailable, op, key, detail)
		default:
			return fmt.Errorf("blobstore: s3 %s %s: %s", op, key, detail)
		}
	}
	var tlsErr *tls.CertificateVerificationError
	if errors.Is(err, context.Canceled) || errors.As(err, &tlsErr) {
		// Neither a canceled request nor an untrusted certificate is cured
		// by a retry.
		return fmt.Errorf("blobstore: s3 %s %s: %w", op, key, err)
	}
	var netErr net.Error
	var urlErr *url.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) || errors.As(err, &urlErr) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: s3 %s %s: %w", ErrUnavailable, op, key, err)
	}
	return fmt.Errorf("blobstore: s3 %s %s: %w", op, key, err)
}
