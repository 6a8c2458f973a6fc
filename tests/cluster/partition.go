package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/internal/testenv"
)

// iptablesTimeout bounds one iptables command. The -w flag makes
// iptables wait for the xtables lock, which another program may hold.
const iptablesTimeout = 20 * time.Second

// chainPrefix starts the name of every chain that this package creates.
// The process id follows, so RemoveStaleChains can distinguish the
// leftovers of a killed run from the chain of a run in progress.
const chainPrefix = "FLTEST"

// chainPattern matches the chains of this package.
var chainPattern = regexp.MustCompile(`^-N (` + chainPrefix + `([0-9]+))$`)

// rule is one DROP rule of the filter chain, from src to dst.
type rule struct{ src, dst string }

// firewall adds and removes DROP rules between loopback addresses in one
// iptables chain of the filter table, jumped to from the top of INPUT.
// Every packet between two addresses on the loopback interface passes
// INPUT, so a rule "-s A -d B -j DROP" cuts the traffic from A to B,
// also on established connections. The chain exists from the first
// Partition until Close.
type firewall struct {
	mu      sync.Mutex
	chain   string
	created bool
	rules   map[rule]int // how many partitions need each rule
	err     error        // why iptables cannot be used, once known
}

// hostFirewall is the one chain of the test process. TestMain removes it
// through CloseFirewall.
var hostFirewall = &firewall{
	chain: chainPrefix + strconv.Itoa(os.Getpid()),
	rules: map[rule]int{},
}

// RequireFirewall skips the test, or fails it with
// FLOTILLA_REQUIRE_TOOLS=1, when iptables cannot create the test chain
// (not installed, no CAP_NET_ADMIN).
func RequireFirewall(t testing.TB) {
	t.Helper()
	err := hostFirewall.ensure()
	if err == nil {
		return
	}
	msg := "!!! iptables is not usable, so this partition test cannot run: " + err.Error()
	if os.Getenv(testenv.RequireToolsEnv) == "1" {
		t.Fatal(msg + " (" + testenv.RequireToolsEnv + "=1 makes a missing tool a failure)")
	}
	t.Skip(msg + " Run as root with iptables installed, or set " +
		testenv.RequireToolsEnv + "=1 to fail instead of skipping.")
}

// CloseFirewall removes the chain of this process with all its rules.
// TestMain calls it after the tests, so the rules go away even when a
// test's cleanup did not run.
func CloseFirewall() error {
	return hostFirewall.close()
}

// RemoveStaleChains removes the chains that earlier runs of this package
// left behind when they were killed: chains named FLTEST<pid> whose
// process no longer exists. It returns the names removed.
func RemoveStaleChains() ([]string, error) {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil, nil
	}
	out, err := iptables("-S")
	if err != nil {
		return nil, err
	}
	var removed []string
	for line := range strings.Lines(out) {
		m := chainPattern.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[2])
		if err != nil || processExists(pid) {
			continue
		}
		if err := deleteChain(m[1]); err != nil {
			return removed, err
		}
		removed = append(removed, m[1])
	}
	return removed, nil
}

// processExists reports whether a process with the id runs, by its
// /proc entry.
func processExists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

// ensure creates the chain and its jump from INPUT once.
func (f *firewall) ensure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ensureLocked()
}

func (f *firewall) ensureLocked() error {
	if f.created || f.err != nil {
		return f.err
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		f.err = fmt.Errorf("iptables not found in PATH: %w", err)
		return f.err
	}
	if _, err := iptables("-N", f.chain); err != nil {
		f.err = err
		return err
	}
	if _, err := iptables("-I", "INPUT", "1", "-j", f.chain); err != nil {
		_, _ = iptables("-X", f.chain)
		f.err = err
		return err
	}
	f.created = true
	return nil
}

// drop adds DROP rules in both directions between a and every address
// of others. Each rule is counted, so overlapping partitions can be
// healed one at a time.
func (f *firewall) drop(a string, others []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ensureLocked(); err != nil {
		return err
	}
	for _, b := range others {
		for _, r := range []rule{{a, b}, {b, a}} {
			if err := checkLoopback(r.src, r.dst); err != nil {
				return err
			}
			if f.rules[r] == 0 {
				if _, err := iptables("-A", f.chain, "-s", r.src, "-d", r.dst, "-j", "DROP"); err != nil {
					return err
				}
			}
			f.rules[r]++
		}
	}
	return nil
}

// allow removes what drop(a, others) added.
func (f *firewall) allow(a string, others []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var firstErr error
	for _, b := range others {
		for _, r := range []rule{{a, b}, {b, a}} {
			if f.rules[r] == 0 {
				continue
			}
			f.rules[r]--
			if f.rules[r] > 0 {
				continue
			}
			delete(f.rules, r)
			if _, err := iptables("-D", f.chain, "-s", r.src, "-d", r.dst, "-j", "DROP"); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// rulesText returns the chain's rules as iptables -S prints them, for
// failure messages.
func (f *firewall) rulesText() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.created {
		return "(no chain)"
	}
	out, err := iptables("-S", f.chain)
	if err != nil {
		return err.Error()
	}
	return out
}

// close removes the jump, the rules and the chain.
func (f *firewall) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.created {
		return nil
	}
	f.created = false
	f.rules = map[rule]int{}
	return deleteChain(f.chain)
}

// deleteChain removes every jump from INPUT to chain, then the chain.
func deleteChain(chain string) error {
	// At most a few jumps can exist, and the bound keeps a failing
	// delete from looping.
	for range 16 {
		if _, err := iptables("-D", "INPUT", "-j", chain); err != nil {
			break
		}
	}
	if _, err := iptables("-F", chain); err != nil {
		return err
	}
	_, err := iptables("-X", chain)
	return err
}

// checkLoopback refuses rules for addresses outside 127.0.0.0/8, so a
// bug in a test cannot cut off real traffic.
func checkLoopback(addrs ...string) error {
	for _, a := range addrs {
		ip := net.ParseIP(a)
		if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			return fmt.Errorf("firewall rule for %q refused: only IPv4 loopback addresses may be partitioned", a)
		}
	}
	return nil
}

func iptables(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), iptablesTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "iptables", append([]string{"-w", "10"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
