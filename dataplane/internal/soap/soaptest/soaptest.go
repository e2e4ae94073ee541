// Package soaptest starts real SOAP services for tests: spyne_service.py,
// built with Debian's python3-spyne, and zeep_rpc_service.py, an rpc/literal
// service whose messages Debian's python3-zeep reads and writes (both
// installed by scripts/ensure-soap.sh, part of make test's dependencies).
package soaptest

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
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
	return start(t, "spyne_service.py", "0")
}

// OrdersWSDL is the directory of shared/wsdl's rpc/literal test WSDL
// (orders.wsdl, importing orders-types.xsd, which includes
// orders-common.xsd).
func OrdersWSDL() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "shared", "wsdl", "testdata")
}

// StartZeepRPC starts an rpc/literal service for orders.wsdl's PlaceOrder
// whose messages zeep reads and writes, at /soap/orders (the WSDL's
// address path), with the last request at /last; it returns its base URL.
func StartZeepRPC(t testing.TB) string {
	t.Helper()
	return start(t, "zeep_rpc_service.py", filepath.Join(OrdersWSDL(), "orders.wsdl"), "0")
}

// start runs one of the Python services beside this file and waits for
// its "listening PORT" line.
func start(t testing.TB, name string, args ...string) string {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), name)
	cmd := exec.Command(Python, append([]string{script}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuilder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s (run scripts/ensure-soap.sh): %v", name, err)
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
			t.Fatalf("%s did not start (python3-spyne or python3-zeep missing? run scripts/ensure-soap.sh): %q %s", name, l, stderr.String())
		}
		return "http://127.0.0.1:" + strings.TrimSpace(port)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start within 30s: %s", name, stderr.String())
	}
	return ""
}

// lockedBuilder collects a process's stderr while it runs.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
