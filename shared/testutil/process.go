package testutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portico-gw/portico/shared/childproc"
)

// errExited marks a start whose process died before becoming ready.
var errExited = errors.New("exited before becoming ready")

// process is a server binary run for tests in its own process group, with
// its output appended to a log file, and restartable.
type process struct {
	name    string // in errors: "consul agent", "redis-server"
	bin     string
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has been waited for
	waitErr error         // written before exited is closed
}

// start runs the binary with args and polls ready (with a growing interval)
// until it succeeds, the process exits, or timeout passes. A process that
// never became ready is killed.
func (p *process) start(args []string, ready func(ctx context.Context) error, timeout time.Duration) error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	fmt.Fprintf(logf, "==> %s %s\n", p.bin, strings.Join(args, " "))
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that kill reaches anything it spawns, and
	// killed by the kernel if the test binary dies first.
	err = childproc.Start(cmd)
	logf.Close() // the child holds its own descriptor
	if err != nil {
		return fmt.Errorf("%s: start %s: %w", p.name, p.bin, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited, p.waitErr = cmd, exited, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(exited)
	}()
	if err := p.waitReady(exited, ready, timeout); err != nil {
		_ = p.kill()
		return fmt.Errorf("%s: %w\n--- tail of %s ---\n%s", p.name, err, p.logPath, tail(p.logPath, 40))
	}
	return nil
}

func (p *process) waitReady(exited <-chan struct{}, ready func(ctx context.Context) error, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	interval := 5 * time.Millisecond
	var last error
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		select {
		case <-exited:
			p.mu.Lock()
			werr := p.waitErr
			p.mu.Unlock()
			return fmt.Errorf("%w: %v", errExited, werr)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %v", timeout, last)
		case <-time.After(interval):
		}
		interval = min(interval*2, 250*time.Millisecond)
	}
}

// kill sends SIGKILL to the process group and waits for the exit. SIGKILL
// rather than a graceful stop: helpers use it to simulate a crash, and both
// servers keep (or deliberately do not keep) their data across it.
func (p *process) kill() error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd, p.exited = nil, nil
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil // already reaped: its pid may belong to someone else now
	default:
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: kill process group %d: %w", p.name, cmd.Process.Pid, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: pid %d did not exit after SIGKILL", p.name, cmd.Process.Pid)
	}
}

// signal sends sig to the running process (SIGSTOP and SIGCONT freeze and
// thaw it; SIGKILL still works on a frozen one).
// renice sets the process's scheduling priority (nice value; negative
// needs CAP_SYS_NICE).
func (p *process) renice(nice int) error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s: not running", p.name)
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, nice); err != nil {
		return fmt.Errorf("%s: setpriority %d: %w", p.name, nice, err)
	}
	return nil
}

func (p *process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s: not running", p.name)
	}
	select {
	case <-exited:
		return fmt.Errorf("%s: exited", p.name)
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: signal %v: %w", p.name, sig, err)
	}
	return nil
}
