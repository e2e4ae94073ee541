//go:build linux

package childproc_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/childproc"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestChildDiesWithParent re-runs this test binary as a middle process that
// starts a long sleep through Start, kills the middle process with SIGKILL, and checks that the
// sleep is gone: the property the package exists for.
func TestChildDiesWithParent(t *testing.T) {
	if os.Getenv("CHILDPROC_MIDDLE") == "1" {
		sleep := exec.Command("sleep", "60")
		if err := childproc.Start(sleep); err != nil {
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
	if err := childproc.Start(middle); err != nil {
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
	// exits; the grandchild is a zombie of init's or gone soon after Wait
	// returns, never left sleeping.
	var stat []byte
	testutil.Eventually(t, 10*time.Second, func() bool {
		var err error
		if stat, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err != nil {
			return true // reaped
		}
		f := strings.Fields(string(stat))
		return len(f) > 2 && f[2] == "Z" // killed, not yet reaped
	}, "grandchild "+strconv.Itoa(pid)+" gone after its parent was killed")
}
