package tests

import (
	"bufio"
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/internal/testenv"
	"github.com/flotilla-registry/flotilla/tests/harness"
)

// The size of a full run of the conformance program
// github.com/opencontainers/distribution-spec/conformance at
// v0.0.0-20260831232431-97274622c111 with conformanceEnv: the "tests"
// count of its junit.xml and the number of test cases listed there (the
// program counts some cases more than once). A different number means a
// workflow was switched off or the program changed, so both constants
// must be checked whenever either changes.
const (
	conformanceTests = 986
	conformanceCases = 793
)

// conformanceSwitchedOff lists the entries of results.yaml that
// conformanceEnv switches off, by section and name. Every other entry must
// be Pass.
var conformanceSwitchedOff = map[string]bool{
	"data/Sparse Manifests": true,
}

// conformanceTimeout bounds one run of the conformance program.
const conformanceTimeout = 15 * time.Minute

// conformanceEnv returns the program's settings. Every API and data
// workflow of the program is set explicitly, so a change of the
// program's defaults cannot switch one off. All are on but DATA_SPARSE,
// which pushes manifests whose blobs or child manifests were never
// uploaded. The specification lets a registry reject them, and Flotilla
// does, with 400 MANIFEST_BLOB_UNKNOWN, so that every acknowledged
// manifest can be pulled in full.
func conformanceEnv(node *harness.Node, resultsDir string) []string {
	settings := map[string]string{
		"OCI_REGISTRY":    node.Host,
		"OCI_TLS":         "enabled",
		"OCI_REPO1":       "conformance/repo1",
		"OCI_REPO2":       "conformance/repo2",
		"OCI_USERNAME":    node.Username,
		"OCI_PASSWORD":    node.Password,
		"OCI_RESULTS_DIR": resultsDir,
		"OCI_VERSION":     "1.1",
		"OCI_LOG":         "warn",
		"OCI_CACHE_AUTH":  "true",
		// The program would read ./oci-conformance.yaml without this.
		"OCI_CONFIGURATION": os.DevNull,

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
	env := []string{"SSL_CERT_FILE=" + node.CAFile}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCI_") && !strings.HasPrefix(kv, "SSL_CERT_") {
			env = append(env, kv)
		}
	}
	for key, value := range settings {
		env = append(env, key+"="+value)
	}
	return env
}

// TestConformance runs the OCI distribution-spec conformance program
// against a node with TLS, authentication and S3 storage.
func TestConformance(t *testing.T) {
	bin := testenv.Tool(t, "conformance")
	node := harness.StartNode(t, harness.NodeOptions{})
	resultsDir := t.TempDir()

	ctx, cancel := context.WithTimeout(t.Context(), conformanceTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = t.TempDir()
	cmd.Env = conformanceEnv(node, resultsDir)
	cmd.WaitDelay = 10 * time.Second
	out, runErr := cmd.CombinedOutput()
	outputFile := filepath.Join(resultsDir, "output.txt")
	if err := os.WriteFile(outputFile, out, 0o644); err != nil {
		t.Errorf("save conformance output: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("conformance program timed out after %v\n%s", conformanceTimeout, tail(out, 8<<10))
	}

	report := readJUnit(t, filepath.Join(resultsDir, "junit.xml"), out)
	counts := report.countStatuses()
	t.Logf("conformance: %d tests: %d passed, %d failed, %d errors, %d skipped "+
		"(%d disabled); results in %s", report.Tests, counts["passed"], counts["failure"],
		counts["error"], counts["skipped"], report.Disabled, resultsDir)
	for _, c := range report.notPassed() {
		t.Errorf("%s: %s\n%s", c.Status, c.Name, c.details())
	}
	if report.Failures != 0 || report.Errors != 0 {
		t.Errorf("report counts %d failures and %d errors, want 0", report.Failures, report.Errors)
	}
	if report.Skipped != 0 || report.Disabled != 0 {
		t.Errorf("report counts %d skipped and %d disabled tests, want 0: every workflow must run",
			report.Skipped, report.Disabled)
	}
	if report.Tests != conformanceTests {
		t.Errorf("conformance program ran %d tests, want %d: a workflow was switched off "+
			"or the program changed", report.Tests, conformanceTests)
	}
	if len(report.Cases) != conformanceCases {
		t.Errorf("junit.xml lists %d test cases, want %d", len(report.Cases), conformanceCases)
	}
	for section, statuses := range readResultsYAML(t, filepath.Join(resultsDir, "results.yaml")) {
		for name, status := range statuses {
			want := "Pass"
			if conformanceSwitchedOff[section+"/"+name] {
				want = "Disabled"
			}
			if status != want {
				t.Errorf("results.yaml %s %q: %s, want %s", section, name, status, want)
			}
		}
	}
	if runErr != nil {
		t.Errorf("conformance program exited with %v; its summary:\n%s", runErr, summary(out))
	}
}

// junitReport is the single test suite of the conformance program's
// junit.xml, with the attributes it writes.
type junitReport struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Disabled int         `xml:"disabled,attr"`
	Cases    []junitCase `xml:"testcase"`
}

// junitCase is one test. The program puts the errors of a failed test in
// system-out and the requests and responses in system-err.
type junitCase struct {
	Name      string `xml:"name,attr"`
	Status    string `xml:"status,attr"`
	SystemOut string `xml:"system-out"`
	SystemErr string `xml:"system-err"`
}

func (c junitCase) details() string {
	text := strings.TrimSpace(c.SystemOut)
	if text == "" {
		text = "(no error message)"
	}
	text = "  error: " + truncateMiddle(text, 2<<10)
	if exchange := strings.TrimSpace(c.SystemErr); exchange != "" {
		text += "\n  requests and responses (end):\n" + string(tail([]byte(exchange), 2<<10))
	}
	return text
}

func readJUnit(t *testing.T, path string, output []byte) junitReport {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("conformance program wrote no junit.xml (%v); its output:\n%s", err, tail(output, 8<<10))
	}
	var suites struct {
		Suites []junitReport `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &suites); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	if len(suites.Suites) != 1 {
		t.Fatalf("%s has %d test suites, want 1", path, len(suites.Suites))
	}
	return suites.Suites[0]
}

func (r junitReport) countStatuses() map[string]int {
	counts := map[string]int{}
	for _, c := range r.Cases {
		counts[c.Status]++
	}
	return counts
}

// notPassed returns the test cases whose status is not "passed", at most
// 40 so a broken node does not flood the output.
func (r junitReport) notPassed() []junitCase {
	var out []junitCase
	for _, c := range r.Cases {
		if c.Status != "passed" && len(out) < 40 {
			out = append(out, c)
		}
	}
	return out
}

// readResultsYAML returns the "apis" and "data" sections of results.yaml,
// which map each API or data type to a status such as Pass, FAIL, Skip or
// Disabled. The program writes them as flat "  name: status" lines.
func readResultsYAML(t *testing.T, path string) map[string]map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read conformance results: %v", err)
	}
	defer f.Close()
	sections := map[string]map[string]string{}
	var current map[string]string
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, " ") {
			current = nil
			if line == "apis:" || line == "data:" {
				current = map[string]string{}
				sections[strings.TrimSuffix(line, ":")] = current
			}
			continue
		}
		if current == nil {
			continue
		}
		name, status, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			t.Fatalf("%s: unexpected line %q", path, line)
		}
		current[strings.Trim(name, `"`)] = status
	}
	if err := scanner.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	for _, section := range []string{"apis", "data"} {
		if len(sections[section]) == 0 {
			t.Errorf("%s has no %s section", path, section)
		}
	}
	return sections
}

// summary returns the counting part of the program's standard output,
// from "OCI Conformance Result:" on.
func summary(out []byte) string {
	text := string(out)
	if i := strings.Index(text, "OCI Conformance Result:"); i >= 0 {
		text = text[i:]
	}
	return truncateMiddle(text, 8<<10)
}

func tail(b []byte, limit int) []byte {
	if len(b) <= limit {
		return b
	}
	return append([]byte("[...]"), b[len(b)-limit:]...)
}

// truncateMiddle shortens s to about limit bytes, keeping its start and
// end.
func truncateMiddle(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	half := limit / 2
	return s[:half] + fmt.Sprintf("\n[... %d bytes ...]\n", len(s)-2*half) + s[len(s)-half:]
}
