package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BinaryEnv names an environment variable that, when set, is the path of a
// prebuilt flotilla binary to test instead of building one.
const BinaryEnv = "FLOTILLA_BIN"

// buildTimeout bounds "go build ./cmd/flotilla".
const buildTimeout = 10 * time.Minute

const mainPackage = "github.com/flotilla-registry/flotilla/cmd/flotilla"

// built is the binary shared by every test of the process.
var built struct {
	once sync.Once
	dir  string // temporary folder to remove, empty for BinaryEnv
	path string
	err  error
}

// Main runs the tests of m and then removes the binary that Binary built.
// Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if built.dir != "" {
		if err := os.RemoveAll(built.dir); err != nil {
			fmt.Fprintf(os.Stderr, "harness: remove %s: %v\n", built.dir, err)
		}
	}
	return code
}

// Binary returns the path of the flotilla binary under test. The first call
// builds it into a temporary folder, unless BinaryEnv names one. A failed
// build fails every test that calls Binary, with the compiler's output.
func Binary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		if path := os.Getenv(BinaryEnv); path != "" {
			built.path, built.err = filepath.Abs(path)
			return
		}
		built.dir, built.path, built.err = buildBinary()
	})
	if built.err != nil {
		t.Fatalf("flotilla binary: %v", built.err)
	}
	return built.path
}

// buildBinary runs go build into a new temporary folder.
func buildBinary() (dir, path string, err error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", "", fmt.Errorf("go not found in PATH, so the binary cannot be built "+
			"(or set %s to a built binary): %w", BinaryEnv, err)
	}
	dir, err = os.MkdirTemp("", "flotilla-test-bin-")
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, "flotilla")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", path, mainPackage)
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", "", fmt.Errorf("go build %s failed: %w\n%s", mainPackage, err, out)
	}
	return dir, path, nil
}
