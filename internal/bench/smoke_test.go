package bench_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/internal/bench"
	"github.com/flotilla-registry/flotilla/internal/logging"
	"github.com/flotilla-registry/flotilla/internal/testenv"
	"github.com/flotilla-registry/flotilla/tests/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// runBench runs flotilla-bench with args plus --json and returns the
// report. It fails the test on a non-zero exit status.
func runBench(t *testing.T, args ...string) *bench.Report {
	t.Helper()
	out := filepath.Join(t.TempDir(), "report.json")
	var stdout, stderr bytes.Buffer
	args = append(args, "--json", out, "--quiet")
	if code := bench.Main(args, &stdout, &stderr); code != 0 {
		t.Fatalf("flotilla-bench %s: exit status %d\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), code, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("read report: %v", err)
	}
	var r bench.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("decode report: %v", err)
	}
	t.Logf("%s", stdout.String())
	return &r
}

// checkResults checks that the report has the named results, each with
// operations, no errors and ordered latency percentiles.
func checkResults(t *testing.T, r *bench.Report, names ...string) map[string]bench.Result {
	t.Helper()
	if r.Error != "" {
		t.Fatalf("%s stopped: %s", r.Workload, r.Error)
	}
	byName := map[string]bench.Result{}
	for _, res := range r.Results {
		byName[res.Name] = res
	}
	for _, name := range names {
		res, ok := byName[name]
		if !ok {
			t.Fatalf("%s: no result %q in %+v", r.Workload, name, r.Results)
		}
		if res.Errors != 0 {
			t.Errorf("%s %s: %d errors: %v", r.Workload, name, res.Errors, res.ErrorSamples)
		}
		if res.Ops <= 0 || res.OpsPerSec <= 0 {
			t.Errorf("%s %s: %d operations at %.1f/s, want some", r.Workload, name, res.Ops, res.OpsPerSec)
		}
		l := res.Latency
		if l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max {
			t.Errorf("%s %s: latency percentiles out of order: %+v", r.Workload, name, l)
		}
	}
	return byName
}

// registryArgs are the connection flags for a harness node.
func registryArgs(n *harness.Node) []string {
	return []string{"--url", n.URL, "--cacert", n.CAFile, "--username", n.Username, "--password", n.Password}
}

func TestWorkloadsAgainstNode(t *testing.T) {
	node := harness.StartNode(t, harness.NodeOptions{Storage: harness.StorageFilesystem})
	reg := registryArgs(node)

	t.Run("images", func(t *testing.T) {
		r := runBench(t, append([]string{"images", "--images", "3", "--layers", "2", "--layer-size", "16KiB",
			"--concurrency", "2"}, reg...)...)
		res := checkResults(t, r, "push", "pull")
		// Two layers of 16 KiB per image plus a config blob.
		if got, min := res["push"].Bytes, int64(3*2*16<<10); got <= min {
			t.Errorf("push sent %d bytes, want more than %d", got, min)
		}
		if res["pull"].Bytes != res["push"].Bytes {
			t.Errorf("pull received %d bytes, push sent %d", res["pull"].Bytes, res["push"].Bytes)
		}
	})
	t.Run("large", func(t *testing.T) {
		// Larger than one 8 MiB part, so the node uses a multipart upload.
		r := runBench(t, append([]string{"large", "--size", "9MiB"}, reg...)...)
		res := checkResults(t, r, "large-push", "large-pull")
		for _, name := range []string{"large-push", "large-pull"} {
			if res[name].Bytes != 9<<20 || res[name].MiBPerSec <= 0 {
				t.Errorf("%s: %d bytes at %.1f MiB/s, want 9 MiB", name, res[name].Bytes, res[name].MiBPerSec)
			}
		}
	})
	t.Run("head", func(t *testing.T) {
		r := runBench(t, append([]string{"head", "--duration", "300ms", "--concurrency", "2"}, reg...)...)
		checkResults(t, r, "head")
	})
	t.Run("tags", func(t *testing.T) {
		r := runBench(t, append([]string{"tags", "--duration", "300ms", "--concurrency", "2"}, reg...)...)
		res := checkResults(t, r, "tag-write")
		if len(res["tag-write"].Notes) == 0 {
			t.Errorf("tag-write has no note of the tag list check")
		}
	})
	t.Run("list", func(t *testing.T) {
		r := runBench(t, append([]string{"list", "--repos", "5", "--tags-per-repo", "2", "--tags", "12",
			"--page-size", "5", "--duration", "200ms", "--concurrency", "2"}, reg...)...)
		checkResults(t, r, "seed-tags", "seed-repos", "list-tags", "catalog")
	})
	t.Run("wait", func(t *testing.T) {
		r := runBench(t, append([]string{"wait", "--status", "200", "--timeout", "10s"}, reg...)...)
		checkResults(t, r, "ready")
	})
	t.Run("wait for missing tag times out", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		args := append([]string{"wait", "--repo", "missing/repo", "--timeout", "300ms", "--quiet"}, reg...)
		if code := bench.Main(args, &stdout, &stderr); code != 1 {
			t.Fatalf("exit status %d, want 1\n%s%s", code, stdout.String(), stderr.String())
		}
	})
	t.Run("round robin proxy", func(t *testing.T) {
		proxyURL, caFile := startRoundRobin(t, node)
		args := []string{"head", "--duration", "300ms", "--url", proxyURL, "--cacert", caFile,
			"--username", node.Username, "--password", node.Password}
		checkResults(t, runBench(t, args...), "head")
	})
	t.Run("procstat", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "procstat.json")
		var stdout, stderr bytes.Buffer
		args := []string{"procstat", "--label", "flotilla", "--json", out, "node1=" + strconv.Itoa(node.PID())}
		if code := bench.Main(args, &stdout, &stderr); code != 0 {
			t.Fatalf("procstat: exit status %d: %s", code, stderr.String())
		}
		var snap bench.ProcessSnapshot
		b, _ := os.ReadFile(out)
		if err := json.Unmarshal(b, &snap); err != nil || len(snap.Processes) != 1 {
			t.Fatalf("procstat record %s: %v", b, err)
		}
		if p := snap.Processes[0]; p.PeakRSS < 1<<20 || p.CPUSeconds <= 0 {
			t.Errorf("node figures %+v, want a peak RSS over 1 MiB and some CPU time", p)
		}
	})
}

// startRoundRobin serves a RoundRobinProxy over TLS in front of the node,
// listed twice as a backend, and returns its URL and CA file.
func startRoundRobin(t *testing.T, node *harness.Node) (string, string) {
	t.Helper()
	files, err := bench.WriteCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := bench.NewRoundRobinProxy([]string{node.URL, node.URL}, node.CAFile, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(proxy)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, files.CA
}

func TestS3RequestsCounted(t *testing.T) {
	s3 := testenv.StartS3(t)
	proxy, err := bench.NewS3CountingProxy(s3.URL(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	proxySrv := httptest.NewServer(proxy)
	t.Cleanup(proxySrv.Close)
	statsSrv := httptest.NewServer(proxy.StatsHandler())
	t.Cleanup(statsSrv.Close)

	// The node and the raw S3 client reach versitygw only through the
	// proxy; the proxy keeps the Host header the requests were signed
	// for.
	through := s3
	through.Endpoint = strings.TrimPrefix(proxySrv.URL, "http://")
	node := harness.StartNode(t, harness.NodeOptions{Storage: harness.StorageS3, S3: &through})

	const layers = 3
	r := runBench(t, append([]string{"images", "--images", "2", "--layers", strconv.Itoa(layers),
		"--layer-size", "8KiB", "--s3-requests-url", statsSrv.URL}, registryArgs(node)...)...)
	res := checkResults(t, r, "push", "pull")
	push := res["push"].S3
	if push == nil {
		t.Fatal("push result has no S3 figures")
	}
	// Every blob needs at least one write: the layers and the config.
	if push.PerOp < layers+1 {
		t.Errorf("%.1f S3 requests per pushed image, want at least %d: %v", push.PerOp, layers+1, push.ByOperation)
	}
	if pull := res["pull"].S3; pull == nil || pull.ByOperation["GetObject"] == 0 {
		t.Errorf("pull S3 figures %+v, want GetObject requests", pull)
	}

	t.Run("s3raw", func(t *testing.T) {
		r := runBench(t, "s3raw", "--s3-endpoint", proxySrv.URL, "--s3-bucket", s3.Bucket,
			"--s3-access-key", s3.AccessKey, "--s3-secret-key", s3.SecretKey, "--s3-region", s3.Region,
			"--large-size", "9MiB", "--objects", "4", "--object-size", "4KiB", "--concurrency", "2",
			"--s3-requests-url", statsSrv.URL)
		res := checkResults(t, r, "large-put", "large-get", "small-put", "small-get")
		if s := res["small-put"].S3; s == nil || s.PerOp != 1 {
			t.Errorf("small-put S3 figures %+v, want one PutObject per object", s)
		}
	})
}

func TestReportFromResults(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	result := func(name string, opsPerSec, mibPerSec float64) bench.Result {
		return bench.Result{Name: name, Unit: "op", Ops: 10, OpsPerSec: opsPerSec, MiBPerSec: mibPerSec,
			Latency: bench.Latency{P50: 1, P90: 2, P99: 3, Max: 4}}
	}
	write("s3.json", bench.Report{Kind: "workload", Label: bench.LabelS3, Workload: "s3raw",
		Results: []bench.Result{result("large-put", 1, 100)}})
	write("flotilla.json", bench.Report{Kind: "workload", Label: bench.LabelFlotilla, Workload: "large",
		Results: []bench.Result{result("large-push", 1, 50)}, Started: time.Now()})
	if err := os.WriteFile(filepath.Join(dir, "skipped-cluster.txt"), []byte("nodes exited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := bench.Main([]string{"report", "--dir", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("report: exit status %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"| Large layer push vs raw S3 PUT, one node | 50.0 MiB/s | 100 MiB/s | 0.50× | ≥ 0.80× | **missed**: 38% below the target |",
		"skipped: nodes exited",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
