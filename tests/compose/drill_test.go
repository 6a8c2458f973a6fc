package compose

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/tests/drill/scenario"
)

// TestDrills runs every failover drill against the compose cluster while
// it pushes and pulls, and fails when an acknowledged push is missing or
// different on any node afterwards.
func TestDrills(t *testing.T) {
	c := openCluster(t)
	reports := os.Getenv("FLOTILLA_DRILL_REPORTS")
	for _, s := range scenario.Scenarios {
		t.Run(s.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			r, err := scenario.Run(ctx, c, s, scenario.Options{Progress: testWriter{t}})
			if err != nil {
				t.Fatalf("drill %s did not run: %v", s.Name, err)
			}
			var text strings.Builder
			_ = r.WriteText(&text)
			t.Logf("report:\n%s", text.String())
			if reports != "" {
				writeReport(t, filepath.Join(reports, s.Name+".json"), r)
			}
			if r.Lost != 0 {
				t.Errorf("%d acknowledged pushes lost", r.Lost)
			}
			if len(r.ReadViolations) != 0 {
				t.Errorf("pulls during the drill found acknowledged images missing or changed: %v", r.ReadViolations)
			}
			if !r.Passed {
				t.Errorf("drill failed: %s", r.Failure)
			}
		})
	}
}

func writeReport(t *testing.T, path string, r *scenario.Report) {
	t.Helper()
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testWriter sends the drill's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
