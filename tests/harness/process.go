package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// rssSampleInterval is how often a running node's VmHWM is read, so the
// peak is known even if the process dies before PeakRSS is called.
const rssSampleInterval = 200 * time.Millisecond

// process is one run of a node's binary.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when Wait has returned
	waitErr error         // valid after done is closed
	peak    atomic.Int64  // highest VmHWM sampled, in bytes
}

// startProcess starts bin with args and env in dir, appending its output
// to logFile after a line that marks the start number.
func startProcess(bin string, args, env []string, dir, logFile string, start int) (*process, error) {
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "=== harness: start %d at %s: flotilla %s ===\n",
		start, time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout = log
	cmd.Stderr = log
	// The kernel kills the node if the test binary dies first, for
	// example when go test's -timeout ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	go p.sampleRSS()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to timeout, then kills the process.
func (p *process) stop(timeout time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.exited() {
		return fmt.Errorf("send SIGTERM: %w", err)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		if err := p.kill(); err != nil {
			return err
		}
		return fmt.Errorf("node did not exit within %v after SIGTERM, so it was killed", timeout)
	}
	if p.waitErr != nil {
		return fmt.Errorf("node exited after SIGTERM with %v, want exit status 0", p.waitErr)
	}
	return nil
}

// kill sends SIGKILL and waits up to killTimeout for the exit.
func (p *process) kill() error {
	if err := p.cmd.Process.Kill(); err != nil && !p.exited() {
		return fmt.Errorf("send SIGKILL: %w", err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("process %d still running %v after SIGKILL", p.cmd.Process.Pid, killTimeout)
	}
}

func (p *process) sampleRSS() {
	ticker := time.NewTicker(rssSampleInterval)
	defer ticker.Stop()
	for {
		p.readVmHWM()
		select {
		case <-p.done:
			return
		case <-ticker.C:
		}
	}
}

// readVmHWM records the process's VmHWM if it is still readable.
func (p *process) readVmHWM() {
	hwm, err := readStatusKiB(p.cmd.Process.Pid, "VmHWM")
	if err != nil {
		return
	}
	for {
		old := p.peak.Load()
		if hwm <= old || p.peak.CompareAndSwap(old, hwm) {
			return
		}
	}
}

func (p *process) peakRSS() int64 {
	if !p.exited() {
		p.readVmHWM()
		return p.peak.Load()
	}
	peak := p.peak.Load()
	if state := p.cmd.ProcessState; state != nil {
		if usage, ok := state.SysUsage().(*syscall.Rusage); ok {
			// Linux reports ru_maxrss in KiB.
			peak = max(peak, usage.Maxrss*1024)
		}
	}
	return peak
}

// readStatusKiB returns a "kB" field of /proc/PID/status in bytes.
func readStatusKiB(pid int, field string) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	scanner := bufio.NewScanner(bytes.NewReader(data))
	for scanner.Scan() {
		name, value, ok := strings.Cut(scanner.Text(), ":")
		if !ok || name != field {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s %q: %w", field, value, err)
		}
		return kib * 1024, nil
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
