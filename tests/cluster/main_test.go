package cluster

import (
	"fmt"
	"os"
	"testing"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run removes firewall chains that killed runs left behind, runs the
// tests, and removes this run's chain also when a test did not clean up.
func run(m *testing.M) (code int) {
	removed, err := RemoveStaleChains()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cluster tests: remove stale iptables chains: %v\n", err)
	}
	for _, chain := range removed {
		fmt.Fprintf(os.Stderr, "cluster tests: removed iptables chain %s of an earlier run\n", chain)
	}
	defer func() {
		if err := CloseFirewall(); err != nil {
			fmt.Fprintf(os.Stderr, "cluster tests: remove iptables chain: %v\n", err)
			code = 1
		}
	}()
	return harness.Main(m)
}
