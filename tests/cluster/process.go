package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// killTimeout bounds the wait for a process after SIGKILL.
const killTimeout = 10 * time.Second

// process is one run of a node's binary.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when Wait has returned
	waitErr error         // valid after done is closed

	mu     sync.Mutex
	paused bool
}

// startProcess starts bin with args and env, appending its output to
// logFile after a line that marks the start.
func startProcess(bin string, args, env []string, logFile, label string) (*process, error) {
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "=== cluster harness: %s at %s: flotilla %s ===\n",
		label, time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = log
	cmd.Stderr = log
	// The kernel kills the node when the test binary dies first, for
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

// stop sends SIGTERM and waits up to timeout, then kills the process. A
// paused process is resumed first, since it would not handle SIGTERM.
func (p *process) stop(timeout time.Duration) error {
	if err := p.resume(); err != nil {
		return err
	}
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

// kill sends SIGKILL and waits up to killTimeout for the exit. SIGKILL
// also ends a stopped (paused) process.
func (p *process) kill() error {
	if err := p.cmd.Process.Kill(); err != nil && !p.exited() {
		return fmt.Errorf("send SIGKILL: %w", err)
	}
	select {
	case <-p.done:
		p.mu.Lock()
		p.paused = false
		p.mu.Unlock()
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("process %d still running %v after SIGKILL", p.cmd.Process.Pid, killTimeout)
	}
}

// pause sends SIGSTOP: the process keeps its sockets but runs no code,
// like a machine that hangs.
func (p *process) pause() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("send SIGSTOP: %w", err)
	}
	p.paused = true
	return nil
}

// resume sends SIGCONT to a paused process.
func (p *process) resume() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil && !p.exited() {
		return fmt.Errorf("send SIGCONT: %w", err)
	}
	p.paused = false
	return nil
}
