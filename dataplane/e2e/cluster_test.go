// Package e2e runs Portico as an operator would: the real controlplane,
// dataplane and demo-upstream binaries as processes on loopback ports,
// driven through the admin API and real HTTP traffic.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/childproc"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

const (
	adminToken = "e2e-admin-token"
	dpToken    = "e2e-dataplane-token"
)

// binDir holds the binaries built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithBinaries(m, "portico-e2e-bin-", func(dir string) { binDir = dir },
		"github.com/portico-gw/portico/controlplane/cmd/controlplane",
		"github.com/portico-gw/portico/controlplane/cmd/porticoctl",
		"github.com/portico-gw/portico/dataplane/cmd/dataplane",
		"github.com/portico-gw/portico/dataplane/cmd/demo-upstream",
		"github.com/portico-gw/portico/dataplane/cmd/demo-grpc",
		"github.com/portico-gw/portico/dataplane/cmd/demo-soap",
		"github.com/portico-gw/portico/dataplane/cmd/demo-oidc",
	))
}

// proc is one running binary.
type proc struct {
	t      testing.TB
	name   string
	args   []string
	env    []string // added to the test's environment
	log    string
	cmd    *exec.Cmd
	exited chan struct{}
}

func start(t testing.TB, name, bin string, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, name, bin, args...)
}

// startEnv is start with extra environment variables ("K=V").
func startEnv(t testing.TB, env []string, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, args: args, env: env, log: filepath.Join(t.TempDir(), name+".log")}
	p.bin(bin)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- %s log (%s):\n%s", p.name, p.log, tail(p.log, 40))
		}
	})
	return p
}

func (p *proc) bin(bin string) {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	path := bin
	if !filepath.IsAbs(bin) { // one of the binaries built for the package
		path = filepath.Join(binDir, bin)
	}
	p.cmd = exec.Command(path, p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := childproc.Start(p.cmd); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(p.cmd, p.exited)
}

// restart runs the same binary with the same arguments again.
func (p *proc) restart(bin string) { p.bin(bin) }

func (p *proc) signal(sig syscall.Signal, wait time.Duration) bool {
	select {
	case <-p.exited:
		return true
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return true
	case <-time.After(wait):
		return false
	}
}

func (p *proc) kill() { p.signal(syscall.SIGKILL, 10*time.Second) }

func (p *proc) term(t testing.TB) {
	t.Helper()
	if !p.signal(syscall.SIGTERM, 20*time.Second) {
		t.Fatalf("%s did not exit within 20s of SIGTERM", p.name)
	}
}

func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var httpc = &http.Client{Timeout: 5 * time.Second}

func get(url string) (int, string) {
	resp, err := httpc.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitHTTP(t testing.TB, url string, want int) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() bool {
		code, _ := get(url)
		return code == want
	}, "GET "+url+" answering "+fmt.Sprint(want))
}

// controlPlane, dataPlane and upstream start one binary each on free ports.
type controlPlane struct {
	*proc
	url   string
	admin *client.Client
}

func startControlPlane(t testing.TB, name, store string, extra ...string) *controlPlane {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	p := start(t, name, "controlplane", append([]string{"--listen", addr, "--store", store,
		"--admin-token", adminToken, "--dataplane-token", dpToken, "--log-level", "warn"}, extra...)...)
	cp := &controlPlane{proc: p, url: "http://" + addr}
	waitHTTP(t, cp.url+"/readyz", 200)
	var err error
	cp.admin, err = client.New(cp.url, adminToken, client.WithActor("e2e"))
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

type dataPlane struct {
	*proc
	id, url, ops, stateDir string
}

func startDataPlane(t testing.TB, id, cpURL, stateDir string, extra ...string) *dataPlane {
	t.Helper()
	return startDataPlaneEnv(t, nil, id, cpURL, stateDir, extra...)
}

func startDataPlaneEnv(t testing.TB, env []string, id, cpURL, stateDir string, extra ...string) *dataPlane {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	ops := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	args := append([]string{"--controlplane", cpURL, "--token", dpToken,
		"--listen", addr, "--ops-listen", ops, "--state-dir", stateDir, "--node-id", id,
		"--poll-wait", "10s", "--log-level", "warn"}, extra...)
	p := startEnv(t, env, id, "dataplane", args...)
	dp := &dataPlane{proc: p, id: id, url: "http://" + addr, ops: "http://" + ops, stateDir: stateDir}
	waitHTTP(t, dp.ops+"/healthz", 200)
	return dp
}

func (d *dataPlane) status(t testing.TB) map[string]any {
	t.Helper()
	_, body := get(d.ops + "/status")
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("%s /status: %v: %s", d.id, err, body)
	}
	return st
}

func startUpstream(t testing.TB, name string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	start(t, name, "demo-upstream", "--listen", addr, "--name", name)
	waitHTTP(t, "http://"+addr+"/", 200)
	return "http://" + addr
}

// serves reports whether url answers 200 from the named upstream.
func serves(url, upstream string) bool {
	code, body := get(url)
	return code == 200 && strings.Contains(body, `"service":"`+upstream+`"`)
}

// TestClusterEndToEnd is the foundation scenario: a route created through the
// admin API reaches two data planes; the control plane dies and traffic goes
// on; a data plane restarted while the control plane is down serves from its
// state dir; the control plane returns and changes flow again.
func TestClusterEndToEnd(t *testing.T) {
	ctx := context.Background()
	up := startUpstream(t, "users-svc")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp1 := startDataPlane(t, "dp-1", cp.url, filepath.Join(dir, "dp-1"))
	dp2 := startDataPlane(t, "dp-2", cp.url, filepath.Join(dir, "dp-2"))

	// Not ready before any configuration exists.
	if code, _ := get(dp1.ops + "/readyz"); code != 503 {
		t.Fatalf("dp-1 readyz before config = %d, want 503", code)
	}
	if _, _, err := cp.admin.Services().Put(ctx, "users", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "users", route("/api/users/*", "users")); err != nil {
		t.Fatal(err)
	}
	for _, dp := range []*dataPlane{dp1, dp2} {
		testutil.Eventually(t, 10*time.Second, func() bool { return serves(dp.url+"/api/users/42", "users-svc") }, dp.id+" serving the new route")
		waitHTTP(t, dp.ops+"/readyz", 200)
	}
	// strip_prefix: the upstream sees the path below the prefix.
	if _, body := get(dp1.url + "/api/users/42?x=1"); !strings.Contains(body, `"path":"/42"`) || !strings.Contains(body, `"query":"x=1"`) {
		t.Fatalf("upstream saw %s", body)
	}
	if code, body := get(dp1.url + "/nothing/here"); code != 404 || !strings.Contains(body, "no-route") {
		t.Fatalf("unrouted path = %d %s, want 404 problem", code, body)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		d, err := cp.admin.Dataplanes(ctx)
		return err == nil && d.Converged && len(d.Nodes) == 2 && d.Nodes[0].AppliedRevision == 2 && d.Nodes[1].AppliedRevision == 2
	}, "both data planes reported converged at revision 2")

	// The control plane dies hard. Traffic goes on.
	cp.kill()
	for i := 0; i < 50; i++ {
		for _, dp := range []*dataPlane{dp1, dp2} {
			if !serves(dp.url+"/api/users/1", "users-svc") {
				t.Fatalf("%s stopped serving after the control plane died (request %d)", dp.id, i)
			}
		}
	}

	// A data plane restarted while the control plane is down boots from its
	// state dir.
	dp2.term(t)
	dp2.restart("dataplane")
	waitHTTP(t, dp2.ops+"/readyz", 200)
	if !serves(dp2.url+"/api/users/7", "users-svc") {
		t.Fatal("restarted dp-2 does not serve from its state dir")
	}
	if st := dp2.status(t); st["source"] != "state" || st["applied_revision"] != float64(2) || st["controlplane_connected"] != false {
		t.Fatalf("restarted dp-2 status = %v", st)
	}

	// The control plane comes back on the same store; changes flow again to
	// both, including the one that booted from disk.
	cp.restart("controlplane")
	waitHTTP(t, cp.url+"/readyz", 200)
	if _, _, err := cp.admin.Routes().Put(ctx, "health", route("/health", "users")); err != nil {
		t.Fatal(err)
	}
	for _, dp := range []*dataPlane{dp1, dp2} {
		testutil.Eventually(t, 15*time.Second, func() bool { return serves(dp.url+"/health", "users-svc") }, dp.id+" resynced after the control plane returned")
	}
	if st := dp2.status(t); st["source"] != "controlplane" || st["applied_revision"] != float64(3) {
		t.Fatalf("dp-2 after resync: %v", st)
	}
}

// TestGracefulDrain: SIGTERM lets in-flight requests finish.
func TestGracefulDrain(t *testing.T) {
	ctx := context.Background()
	up := startUpstream(t, "slow-svc")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlane(t, "dp-1", cp.url, filepath.Join(dir, "dp-1"))
	if _, _, err := cp.admin.Services().Put(ctx, "slow", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "slow", route("/*", "slow")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return serves(dp.url+"/x", "slow-svc") }, "route live")

	const inflight = 8
	var wg sync.WaitGroup
	results := make(chan int, inflight)
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _ := get(dp.url + "/work?sleep=1s")
			results <- code
		}()
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		_, body := get(dp.ops + "/metrics")
		return strings.Contains(body, fmt.Sprintf("portico_requests_in_flight %d\n", inflight))
	}, "all requests in flight")
	dp.term(t)
	wg.Wait()
	close(results)
	for code := range results {
		if code != 200 {
			t.Fatalf("an in-flight request ended with %d during shutdown", code)
		}
	}
}

// TestConsulStoreReplicas: two control planes on one Consul KV prefix serve
// the same configuration and see each other's writes; a data plane polling
// one of them gets writes made through the other.
func TestConsulStoreReplicas(t *testing.T) {
	ctx := context.Background()
	consul := testutil.StartConsul(t)
	spec := "consul://" + consul.Addr + "/portico/e2e"
	a := startControlPlane(t, "cp-a", spec)
	b := startControlPlane(t, "cp-b", spec)
	up := startUpstream(t, "orders-svc")
	dp := startDataPlane(t, "dp-1", b.url, t.TempDir())

	if _, _, err := a.admin.Services().Put(ctx, "orders", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.admin.Routes().Put(ctx, "orders", route("/orders/{id}", "orders")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		r, err := b.admin.Routes().Get(ctx, "orders")
		return err == nil && r.Version == 1
	}, "replica b sees the route written through a")
	testutil.Eventually(t, 10*time.Second, func() bool { return serves(dp.url+"/orders/9", "orders-svc") }, "data plane polling b serves a's write")

	// A stale version on one replica is refused even though the write that
	// made it stale went through the other.
	stale, err := b.admin.Routes().Get(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	upd := *stale
	upd.Timeout = config.Duration(5 * time.Second)
	if _, _, err := a.admin.Routes().Put(ctx, "orders", upd, client.IfMatch(stale.Version)); err != nil {
		t.Fatal(err)
	}
	upd.Methods = []string{"GET"}
	_, _, err = b.admin.Routes().Put(ctx, "orders", upd, client.IfMatch(stale.Version))
	if client.StatusOf(err) != http.StatusPreconditionFailed {
		t.Fatalf("stale write through replica b: %v, want 412", err)
	}
	pa, _ := a.admin.Audit(ctx, 0, 10)
	pb, _ := b.admin.Audit(ctx, 0, 10)
	if len(pa.Entries) != 3 || len(pb.Entries) != 3 {
		t.Fatalf("audit on a: %d entries, on b: %d; want 3 on both", len(pa.Entries), len(pb.Entries))
	}
}
