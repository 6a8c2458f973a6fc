// Package testenv starts the real components that Flotilla's tests run
// against: external tools found in PATH, an S3 server (versitygw), and TLS
// certificates.
//
// A test that needs a missing tool is skipped with a message that names the
// install command. With FLOTILLA_REQUIRE_TOOLS=1 set, as in CI, a missing
// tool fails the test instead.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireToolsEnv is the environment variable that turns a missing tool
// from a skipped test into a failed one when set to 1.
const RequireToolsEnv = "FLOTILLA_REQUIRE_TOOLS"

// installHints maps each tool that the tests use to its install command.
var installHints = map[string]string{
	"versitygw":   "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0",
	"crane":       "go install github.com/google/go-containerregistry/cmd/crane@latest",
	"oras":        "go install oras.land/oras/cmd/oras@latest",
	"regctl":      "go install github.com/regclient/regclient/cmd/regctl@latest",
	"conformance": "go install github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111",
}

// Tool returns the path of the executable name found in PATH. When it is
// missing, the test is skipped, or fails if RequireToolsEnv is 1.
func Tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	hint := installHints[name]
	if hint == "" {
		hint = "install it"
	}
	msg := "!!! " + name + " not found in PATH, so this test cannot run: " + hint +
		" and add its folder to PATH."
	if os.Getenv(RequireToolsEnv) == "1" {
		t.Fatal(msg + " (" + RequireToolsEnv + "=1 makes a missing tool a failure)")
	}
	t.Skip(msg + " Set " + RequireToolsEnv + "=1 to fail instead of skipping.")
	return ""
}
