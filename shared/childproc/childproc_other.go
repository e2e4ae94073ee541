//go:build !linux

// Package childproc starts helper processes (test servers, the OIDC demo's
// Hydra) so that they cannot outlive the process that started them.
package childproc

import (
	"os/exec"
	"syscall"
)

// Start starts cmd in a process group of its own. Without Linux's
// Pdeathsig the child is stopped only by its parent's own clean-up.
func Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	return cmd.Start()
}
