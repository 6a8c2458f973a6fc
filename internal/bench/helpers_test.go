package bench

import (
	"bytes"
	"io"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1048576", 1 << 20},
		{"512KiB", 512 << 10},
		{"1MiB", 1 << 20},
		{"1.5GiB", 3 << 29},
		{"2 GiB", 2 << 30},
		{"10MB", 10_000_000},
		{"7B", 7},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if err != nil {
			t.Errorf("parseSize(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("parseSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1MiB", "1XB", "1e30GiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) succeeded, want an error", bad)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{1 << 30: "1GiB", 3 << 20: "3MiB", 1536: "1536", 64 << 10: "64KiB"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestNextLink(t *testing.T) {
	tests := []struct{ header, want string }{
		{`</v2/r/tags/list?n=2&last=b>; rel="next"`, "/v2/r/tags/list?n=2&last=b"},
		{`<https://h/v2/_catalog?last=x>; rel="prev", </v2/_catalog?last=y>; rel="next"`, "/v2/_catalog?last=y"},
		{`</v2/_catalog?last=y>;rel="next"`, "/v2/_catalog?last=y"},
		{"", ""},
		{`</v2/_catalog?last=y>; rel="prev"`, ""},
	}
	for _, tt := range tests {
		if got := nextLink(tt.header); got != tt.want {
			t.Errorf("nextLink(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

func TestS3Operation(t *testing.T) {
	tests := []struct {
		method, target, copySource, want string
	}{
		{"GET", "/", "", "ListBuckets"},
		{"GET", "/b/k", "", "GetObject"},
		{"GET", "/b?list-type=2&prefix=x", "", "ListObjects"},
		{"GET", "/b/k?uploadId=1", "", "ListParts"},
		{"GET", "/b?uploads", "", "ListMultipartUploads"},
		{"HEAD", "/b", "", "HeadBucket"},
		{"HEAD", "/b/k", "", "HeadObject"},
		{"PUT", "/b", "", "CreateBucket"},
		{"PUT", "/b/k", "", "PutObject"},
		{"PUT", "/b/k", "/b/src", "CopyObject"},
		{"PUT", "/b/k?partNumber=1&uploadId=1", "", "UploadPart"},
		{"PUT", "/b/k?partNumber=1&uploadId=1", "/b/src", "UploadPartCopy"},
		{"POST", "/b/k?uploads", "", "CreateMultipartUpload"},
		{"POST", "/b/k?uploadId=1", "", "CompleteMultipartUpload"},
		{"POST", "/b?delete", "", "DeleteObjects"},
		{"DELETE", "/b/k", "", "DeleteObject"},
		{"DELETE", "/b/k?uploadId=1", "", "AbortMultipartUpload"},
		{"PATCH", "/b/k", "", "Other"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.target, nil)
		if tt.copySource != "" {
			r.Header.Set("X-Amz-Copy-Source", tt.copySource)
		}
		if got := s3Operation(r); got != tt.want {
			t.Errorf("%s %s: operation %q, want %q", tt.method, tt.target, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	var samples []time.Duration
	for i := 100; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	got := summarize(samples)
	want := Latency{Mean: 50.5, P50: 50, P90: 90, P99: 99, Max: 100}
	if got != want {
		t.Errorf("summarize(1..100 ms) = %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (Latency{}) {
		t.Errorf("summarize(nil) = %+v, want zero", got)
	}
	single := summarize([]time.Duration{3 * time.Millisecond})
	if single.P50 != 3 || single.P99 != 3 || single.Max != 3 {
		t.Errorf("summarize(3 ms) = %+v", single)
	}
}

func TestStatCPUSeconds(t *testing.T) {
	// The command name contains a space and a closing bracket.
	line := "1234 (my pro) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 10"
	got, err := statCPUSeconds(line)
	if err != nil {
		t.Fatal(err)
	}
	if got != 3 {
		t.Errorf("CPU seconds = %v, want 3 (250 + 50 ticks)", got)
	}
	if _, err := statCPUSeconds("1234 (short) S 1"); err == nil {
		t.Error("short stat line accepted")
	}
}

func TestStatusKiB(t *testing.T) {
	status := []byte("Name:\tflotilla\nVmHWM:\t   20480 kB\nVmRSS:\t  10240 kB\n")
	if got, err := statusKiB(status, "VmHWM"); err != nil || got != 20<<20 {
		t.Errorf("VmHWM = %d, %v; want %d", got, err, 20<<20)
	}
	if _, err := statusKiB(status, "VmSwap"); err == nil {
		t.Error("missing field found")
	}
}

func TestUsageSince(t *testing.T) {
	before := S3Stats{Requests: 10, ByOperation: map[string]int64{"PutObject": 6, "GetObject": 4}, BytesIn: 100}
	after := S3Stats{Requests: 22, ByOperation: map[string]int64{"PutObject": 14, "GetObject": 4, "HeadObject": 4}, BytesIn: 400}
	u := after.usageSince(before, 4)
	if u.Requests != 12 || u.PerOp != 3 || u.BytesIn != 300 {
		t.Errorf("usage = %+v, want 12 requests, 3 per op, 300 bytes in", u)
	}
	if len(u.ByOperation) != 2 || u.ByOperation["PutObject"] != 8 || u.ByOperation["HeadObject"] != 4 {
		t.Errorf("by operation = %v, want PutObject 8 and HeadObject 4 only", u.ByOperation)
	}
}

func TestBlobSpecRepeatable(t *testing.T) {
	spec := newBlobSpec(100_003)
	a, err := io.ReadAll(spec.reader())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(spec.reader())
	if len(a) != 100_003 || !bytes.Equal(a, b) {
		t.Fatalf("two reads of one spec differ or have the wrong length: %d, %d bytes", len(a), len(b))
	}
	other, _ := io.ReadAll(newBlobSpec(100_003).reader())
	if bytes.Equal(a, other) {
		t.Error("two specs produced the same content")
	}
	if got, want := spec.digest(), digest.FromBytes(a); got != want {
		t.Errorf("digest = %s, want %s", got, want)
	}
}

func TestParseBaseURL(t *testing.T) {
	for _, bad := range []string{"", "ftp://h", "https://", "https://u:p@h", "https://h?x=1"} {
		if _, err := parseBaseURL(bad); err == nil {
			t.Errorf("parseBaseURL(%q) succeeded, want an error", bad)
		}
	}
	u, err := parseBaseURL("https://127.0.0.1:5000/prefix/")
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{bases: []*url.URL{u}}
	if got := c.apiURL("/v2/"); got != "https://127.0.0.1:5000/prefix/v2/" {
		t.Errorf("apiURL = %q", got)
	}
}

func TestClientRoundRobin(t *testing.T) {
	c, err := NewClient(ClientConfig{URL: "https://a:1, https://b:2"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		got = append(got, c.apiURL("/v2/"))
	}
	want := []string{"https://a:1/v2/", "https://b:2/v2/", "https://a:1/v2/"}
	if !slices.Equal(got, want) {
		t.Errorf("URLs in turn = %v, want %v", got, want)
	}
	if c.URL() != "https://a:1,https://b:2" {
		t.Errorf("URL() = %q", c.URL())
	}
}
