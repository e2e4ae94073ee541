//go:build linux

package childproc

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestChildDiesWithParent re-runs this test binary as a middle process that
// starts a long sleep through Start, kills the middle process with SIGKILL, and checks that the
// sleep is gone: the property the package exists for.
func TestChildDiesWithParent(t *testing.T) {
	if os.Getenv("CHILDPROC_MIDDLE") == "1" {
		sleep := exec.Command("sleep", "60")
		if err := Start(sleep); err != nil {
			os.Exit(2)
		}
		os.Stdout.WriteString(strconv.Itoa(sleep.Process.Pid) + "\n")
		select {} // until killed
	}
	middle := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithParent$")
	middle.Env = append(os.Environ(), "CHILDPROC_MIDDLE=1")
	out, err := middle.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := Start(middle); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32)
	n, err := out.Read(buf)
	if err != nil {
		t.Fatalf("reading the grandchild's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", buf[:n], err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the grandchild is not running before the kill: %v", err)
	}
	if err := middle.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = middle.Wait()
	// The kernel delivers the parent-death signal as the middle process
	// exits; the grandchild is a zombie of init's or gone by the time
	// Wait returns, never left sleeping. Poll its state, not a timer.
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return // reaped
		}
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			return // killed, not yet reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still running 10s after its parent was killed: %s", pid, stat)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
