// Package childproc starts helper processes (test servers, the OIDC demo's
// Hydra) so that they cannot outlive the process that started them.
package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Start starts cmd in a process group of its own (so that signalling the
// group reaches whatever it forks) and has the kernel SIGKILL it when its
// parent dies, however the parent dies: a test binary killed at its
// -timeout, or a demo stopped with SIGKILL, must not leave a server behind
// holding its ports and the descriptors it inherited (an orphaned Hydra
// once held a shared lock file for fifteen minutes). Pdeathsig follows the
// thread that forked, so the fork runs on a thread locked for it.
func Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.Start()
}
