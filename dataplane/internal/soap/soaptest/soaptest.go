// Package soaptest starts a real SOAP service for tests: spyne_service.py,
// built with Debian's python3-spyne (installed by scripts/ensure-soap.sh,
// part of make test's dependencies).
package soaptest

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Python is the interpreter with Debian's packages (a pyenv shim first in
// PATH would not see them).
const Python = "/usr/bin/python3"

// StartSpyne starts the spyne service on a free loopback port and returns
// its base URL ("http://127.0.0.1:port"): SOAP 1.1 at /soap11, SOAP 1.2 at
// /soap12 (WSDLs at ?wsdl), the last request received at /last, and a
// non-SOAP page at /plain. It is stopped when the test ends.
func StartSpyne(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "spyne_service.py")
	cmd := exec.Command(Python, script, "0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the spyne service (run scripts/ensure-soap.sh): %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		if s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		port, found := strings.CutPrefix(l, "listening ")
		if !ok || !found {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("the spyne service did not start (python3-spyne missing? run scripts/ensure-soap.sh): %q %s", l, stderr.String())
		}
		return "http://127.0.0.1:" + strings.TrimSpace(port)
	case <-time.After(30 * time.Second):
		t.Fatalf("the spyne service did not start within 30s: %s", stderr.String())
	}
	return ""
}
