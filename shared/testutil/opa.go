package testutil

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// DefaultOPAVersion is the Open Policy Agent version scripts/ensure-opa.sh
// builds.
const DefaultOPAVersion = "v1.22.4"

// opaReadyTimeout bounds the wait for a started OPA to listen.
const opaReadyTimeout = 30 * time.Second

// OPABinary returns the path of the opa binary used by tests: $OPA_BIN if
// set, else the binary scripts/ensure-opa.sh caches in
// ${PORTICO_CACHE:-$HOME/.cache/portico}/opa-${OPA_VERSION:-v1.22.4}.
func OPABinary() (string, error) {
	return cachedBinary("opa", "OPA_BIN", "OPA_VERSION", "opa", DefaultOPAVersion,
		"run scripts/ensure-opa.sh (or make test) to build it, or point OPA_BIN at an opa binary")
}

// OPAExtAuthzBinary returns $OPA_EXTAUTHZ_BIN, the path of opa-extauthz
// (OPA's Rego engine behind Envoy's ext_authz gRPC API) that
// scripts/ensure-opa-extauthz.sh builds; make test sets it.
func OPAExtAuthzBinary() (string, error) {
	p := os.Getenv("OPA_EXTAUTHZ_BIN")
	if p == "" || !isExecutable(p) {
		return "", fmt.Errorf("opa-extauthz: OPA_EXTAUTHZ_BIN=%q is not an executable file; run make test, or OPA_EXTAUTHZ_BIN=$(scripts/ensure-opa-extauthz.sh)", p)
	}
	return p, nil
}

// OPA is a real Open Policy Agent process on a loopback port, for tests:
// OPA's server (StartOPAServer) or opa-extauthz (StartOPAExtAuthz).
type OPA struct {
	// Addr is "127.0.0.1:PORT".
	Addr string
	proc process
	tb   testing.TB
}

// StartOPAServer runs `opa run --server` with the Rego policy given, and
// its server authorization on (--authorization=basic): every request to
// it is decided by the policy's data.system.authz.allow, and a refused one
// is answered 401. That makes OPA's own server a forward-auth decision
// service. A missing binary fails the test.
func StartOPAServer(t testing.TB, policy string) *OPA {
	t.Helper()
	bin, err := OPABinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.rego")
	if err := os.WriteFile(file, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	o := &OPA{Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), tb: t}
	o.proc = process{name: "opa", bin: bin, logPath: filepath.Join(dir, "opa.log")}
	args := []string{"run", "--server", "--addr", o.Addr, "--authorization=basic", "--log-level", "error",
		"--skip-version-check", file}
	// Any HTTP answer (a 401 from the policy) means it serves.
	ready := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+o.Addr+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	o.start(args, ready)
	return o
}

// StartOPAExtAuthz runs opa-extauthz (scripts/opa-extauthz) with the Rego
// policy given, queried at query (data.envoy.authz.allow when empty).
func StartOPAExtAuthz(t testing.TB, policy, query string) *OPA {
	t.Helper()
	bin, err := OPAExtAuthzBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.rego")
	if err := os.WriteFile(file, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	o := &OPA{Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), tb: t}
	o.proc = process{name: "opa-extauthz", bin: bin, logPath: filepath.Join(dir, "opa-extauthz.log")}
	args := []string{"--addr", o.Addr, "--policy", file}
	if query != "" {
		args = append(args, "--query", query)
	}
	ready := func(ctx context.Context) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", o.Addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	o.start(args, ready)
	return o
}

func (o *OPA) start(args []string, ready func(context.Context) error) {
	o.tb.Helper()
	if err := o.proc.start(args, ready, opaReadyTimeout); err != nil {
		o.tb.Fatal(err)
	}
	o.tb.Cleanup(func() {
		if err := o.proc.kill(); err != nil {
			o.tb.Error(err)
		}
		if o.tb.Failed() {
			o.tb.Logf("tail of %s log %s:\n%s", o.proc.name, o.proc.logPath, tail(o.proc.logPath, 40))
		}
	})
}

// Freeze stops the process (SIGSTOP): connections are accepted by the
// kernel and never answered, as from a hung server. It returns once every
// thread of the process is stopped: a thread that is running when the
// signal comes (on a busy machine, for a while) still answers what it
// already reads. Thaw resumes it.
func (o *OPA) Freeze() {
	o.tb.Helper()
	if err := o.proc.signal(syscall.SIGSTOP); err != nil {
		o.tb.Fatal(err)
	}
	o.proc.mu.Lock()
	pid := o.proc.cmd.Process.Pid
	o.proc.mu.Unlock()
	Eventually(o.tb, 10*time.Second, func() bool { return allStopped(pid) }, fmt.Sprintf("every thread of %s (pid %d) stopped", o.proc.name, pid))
}

// allStopped reports whether every thread of pid is in the stopped state
// (T in /proc/<pid>/task/<tid>/stat).
func allStopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}

// Thaw resumes a frozen process (SIGCONT).
func (o *OPA) Thaw() {
	o.tb.Helper()
	if err := o.proc.signal(syscall.SIGCONT); err != nil {
		o.tb.Fatal(err)
	}
}
