package cluster

import (
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/internal/testenv"
)

// conformanceTests is the "tests" count of junit.xml for a full run of
// github.com/opencontainers/distribution-spec/conformance at
// v0.0.0-20260831232431-97274622c111 with the settings of
// runConformance. tests/conformance_test.go expects the same count of a
// single node. A different count means that a workflow was switched off
// or that the program changed.
const conformanceTests = 986

// conformanceTimeout bounds one run of the program.
const conformanceTimeout = 10 * time.Minute

// TestConformanceThroughProxy runs the OCI conformance program through
// the round-robin proxy, where every request of an upload session can
// land on another node, and then against each node directly unless
// -short is set.
func TestConformanceThroughProxy(t *testing.T) {
	bin := testenv.Tool(t, "conformance")
	c := Start(t, Options{})
	proxy := StartProxy(t, c)

	targets := []struct{ name, host string }{{"proxy", proxy.Host}}
	if !testing.Short() {
		for _, n := range c.Members() {
			targets = append(targets, struct{ name, host string }{n.ID, n.APIAddr})
		}
	}
	for _, target := range targets {
		t.Run(target.name, func(t *testing.T) {
			runConformance(t, bin, c, target.host, "conformance-"+target.name)
		})
	}
	st := proxy.Stats()
	t.Logf("proxy: %d requests, per node %v", st.Requests, st.PerBackend)
	for id, count := range st.PerBackend {
		if count == 0 {
			t.Errorf("the proxy sent no request to %s", id)
		}
	}
}

func runConformance(t *testing.T, bin string, c *Cluster, host, repoPrefix string) {
	resultsDir := t.TempDir()
	settings := map[string]string{
		"OCI_REGISTRY":      host,
		"OCI_TLS":           "enabled",
		"OCI_REPO1":         repoPrefix + "/repo1",
		"OCI_REPO2":         repoPrefix + "/repo2",
		"OCI_USERNAME":      c.Username,
		"OCI_PASSWORD":      c.Password,
		"OCI_RESULTS_DIR":   resultsDir,
		"OCI_VERSION":       "1.1",
		"OCI_LOG":           "warn",
		"OCI_CACHE_AUTH":    "true",
		"OCI_CONFIGURATION": os.DevNull,
		// Sparse manifests (blobs never uploaded) are rejected by
		// design, so that every acknowledged manifest can be pulled.
		"OCI_DATA_SPARSE": "false",
	}
	for _, name := range []string{
		"API_PING", "API_PULL", "API_PUSH",
		"API_BLOBS_ATOMIC", "API_BLOBS_DELETE", "API_BLOBS_DIGEST_HEADER",
		"API_BLOBS_MOUNT_ANONYMOUS", "API_BLOBS_UPLOAD_CANCEL",
		"API_MANIFESTS_ATOMIC", "API_MANIFESTS_DELETE", "API_MANIFESTS_DIGEST_HEADER",
		"API_MANIFESTS_TAG_PARAM",
		"API_TAGS_ATOMIC", "API_TAGS_DELETE", "API_TAGS_LIST",
		"API_REFERRER",
		"DATA_IMAGE", "DATA_INDEX", "DATA_INDEX_LIST",
		"DATA_ARTIFACT", "DATA_SUBJECT", "DATA_SUBJECT_MISSING",
		"DATA_ARTIFACT_LIST", "DATA_SUBJECT_LIST", "DATA_DATA_FIELD",
		"DATA_NONDISTRIBUTABLE", "DATA_CUSTOM_FIELDS", "DATA_NO_LAYERS",
		"DATA_EMPTY_BLOB", "DATA_SHA512",
	} {
		settings["OCI_"+name] = "true"
	}
	env := []string{"SSL_CERT_FILE=" + c.APICertFile}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCI_") && !strings.HasPrefix(kv, "SSL_CERT_") {
			env = append(env, kv)
		}
	}
	for key, value := range settings {
		env = append(env, key+"="+value)
	}

	ctx, cancel := context.WithTimeout(t.Context(), conformanceTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = t.TempDir()
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, runErr := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("conformance program timed out after %v\n%s", conformanceTimeout, tailString(string(out), 8<<10))
	}
	report := readConformanceReport(t, filepath.Join(resultsDir, "junit.xml"), out)
	t.Logf("conformance against %s: %d tests, %d failures, %d errors, %d skipped in %v",
		host, report.Tests, report.Failures, report.Errors, report.Skipped, time.Since(start).Round(time.Second))
	for _, tc := range report.Cases {
		if tc.Status == "passed" {
			continue
		}
		t.Errorf("%s: %s\n  error: %s\n  requests and responses (end):\n%s", tc.Status, tc.Name,
			truncate(strings.TrimSpace(tc.SystemOut), 2<<10), tailString(tc.SystemErr, 3<<10))
	}
	if report.Failures != 0 || report.Errors != 0 {
		t.Errorf("report counts %d failures and %d errors, want 0", report.Failures, report.Errors)
	}
	if report.Skipped != 0 {
		t.Errorf("report counts %d skipped tests, want 0: every workflow must run", report.Skipped)
	}
	if report.Tests != conformanceTests {
		t.Errorf("conformance program ran %d tests, want %d: a workflow was switched off or the program changed",
			report.Tests, conformanceTests)
	}
	if runErr != nil && report.Failures+report.Errors > 0 {
		t.Errorf("conformance program exited with %v", runErr)
	}
}

// conformanceReport is the single test suite of the program's
// junit.xml.
type conformanceReport struct {
	Tests    int             `xml:"tests,attr"`
	Failures int             `xml:"failures,attr"`
	Errors   int             `xml:"errors,attr"`
	Skipped  int             `xml:"skipped,attr"`
	Cases    []conformanceTC `xml:"testcase"`
}

// conformanceTC is one test case. The program writes a failed test's
// errors to system-out and the requests and responses to system-err.
type conformanceTC struct {
	Name      string `xml:"name,attr"`
	Status    string `xml:"status,attr"`
	SystemOut string `xml:"system-out"`
	SystemErr string `xml:"system-err"`
}

func readConformanceReport(t *testing.T, path string, output []byte) conformanceReport {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("conformance program wrote no junit.xml (%v); its output:\n%s", err, tailString(string(output), 8<<10))
	}
	var suites struct {
		Suites []conformanceReport `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &suites); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	if len(suites.Suites) != 1 {
		t.Fatalf("%s has %d test suites, want 1", path, len(suites.Suites))
	}
	return suites.Suites[0]
}

func tailString(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return "[...]" + s[len(s)-limit:]
}
