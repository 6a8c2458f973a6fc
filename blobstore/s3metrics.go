package blobstore

import (
	"context"
	"maps"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Operation names of the S3 request counters, as the S3 API names them.
const (
	opPutObject         = "PutObject"
	opGetObject         = "GetObject"
	opHeadObject        = "HeadObject"
	opDeleteObject      = "DeleteObject"
	opCreateMultipart   = "CreateMultipartUpload"
	opUploadPart        = "UploadPart"
	opCompleteMultipart = "CompleteMultipartUpload"
	opAbortMultipart    = "AbortMultipartUpload"
	opHeadBucket        = "HeadBucket"
	opOther             = "Other"
)

var s3Operations = []string{
	opPutObject, opGetObject, opHeadObject, opDeleteObject, opCreateMultipart,
	opUploadPart, opCompleteMultipart, opAbortMultipart, opHeadBucket, opOther,
}

// requestCounts contains one counter per operation. The map is filled once and
// only read afterwards, so it needs no lock.
type requestCounts struct {
	byOp map[string]*atomic.Int64
}

func newRequestCounts() *requestCounts {
	c := &requestCounts{byOp: make(map[string]*atomic.Int64, len(s3Operations))}
	for _, op := range s3Operations {
		c.byOp[op] = new(atomic.Int64)
	}
	return c
}

func (c *requestCounts) add(op string) {
	counter, ok := c.byOp[op]
	if !ok {
		counter = c.byOp[opOther]
	}
	counter.Add(1)
}

type operationKey struct{}

// withOperation labels the requests sent under ctx with op for the
// counters.
func withOperation(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, operationKey{}, op)
}

// countingTransport counts every HTTP request that reaches the wire, so
// minio-go's retries count too.
type countingTransport struct {
	base   http.RoundTripper
	counts *requestCounts
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	op, _ := req.Context().Value(operationKey{}).(string)
	t.counts.add(op)
	return t.base.RoundTrip(req)
}

// RequestCounts returns the number of HTTP requests sent to S3 since the
// store was created, by S3 operation name (PutObject, GetObject,
// HeadObject, DeleteObject, CreateMultipartUpload, UploadPart,
// CompleteMultipartUpload, AbortMultipartUpload, HeadBucket, Other).
// Retries count as requests.
func (s *S3Store) RequestCounts() map[string]int64 {
	out := make(map[string]int64, len(s.counts.byOp))
	for op, counter := range s.counts.byOp {
		out[op] = counter.Load()
	}
	return out
}

// TotalRequests returns the sum of RequestCounts.
func (s *S3Store) TotalRequests() int64 {
	var total int64
	for v := range maps.Values(s.RequestCounts()) {
		total += v
	}
	return total
}

var s3RequestsDesc = prometheus.NewDesc(
	"flotilla_blobstore_s3_requests_total",
	"HTTP requests sent to the S3 store, retries included, by S3 operation.",
	[]string{"operation"}, nil,
)

// Describe implements prometheus.Collector, so the caller can register the
// store's request counters with its own registry.
func (s *S3Store) Describe(ch chan<- *prometheus.Desc) {
	ch <- s3RequestsDesc
}

// Collect implements prometheus.Collector.
func (s *S3Store) Collect(ch chan<- prometheus.Metric) {
	for op, counter := range s.counts.byOp {
		ch <- prometheus.MustNewConstMetric(s3RequestsDesc, prometheus.CounterValue, float64(counter.Load()), op)
	}
}
