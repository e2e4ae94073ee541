package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// RunWithBinaries is a TestMain body for packages that test the real
// binaries: it builds pkgs (import paths) once into a temporary directory,
// hands that directory to set, runs the tests and removes it. A build that
// fails ends the run with the compiler's output, before any test starts.
func RunWithBinaries(m *testing.M, prefix string, set func(dir string), pkgs ...string) int {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, pkg := range pkgs {
		cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", pkg, err)
			return 1
		}
	}
	set(dir)
	return m.Run()
}
