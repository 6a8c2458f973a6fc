package tests

import (
	"os"
	"testing"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m))
}
