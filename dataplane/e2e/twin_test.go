package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/portico-gw/portico/shared/childproc"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// The twin is the production topology of `make cluster` (scripts/cluster.sh),
// started by the test on free ports: Consul with its DNS interface,
// redis-server, two control planes on one Consul KV prefix, data planes that
// find a control plane and register themselves in Consul, demo services
// discovered through Consul, and a real HAProxy in front running
// deployments/twin/haproxy.cfg.tmpl, the file `make cluster` renders. HAProxy
// finds the data planes the way it does there: SRV records from Consul's DNS,
// with its own /readyz check on the ops port. That check needs one ops port
// for every data plane, so each data plane gets its own loopback address
// (127.X.Y.N, X and Y random per run), as each replica gets its own IP in
// compose.
const twinHAProxyTemplate = "../../deployments/twin/haproxy.cfg.tmpl"

// TestTwin runs its phases in order on one twin: each builds on the state
// the previous one left (routes, the number of data planes, a control plane
// gone), and starting the topology once keeps the whole under a minute.
func TestTwin(t *testing.T) {
	tw := startTwin(t)
	for _, phase := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"RoutesReachEveryDataPlane", tw.routesReachEveryDataPlane},
		{"ScaleOutUnderLoad", tw.scaleOutUnderLoad},
		{"DrainUnderLoad", tw.drainUnderLoad},
		{"KillUnderLoad", tw.killUnderLoad},
		{"RateLimitAcrossDataPlanes", tw.rateLimitAcrossDataPlanes},
		{"ControlPlaneLoss", tw.controlPlaneLoss},
	} {
		if !t.Run(phase.name, phase.run) {
			return // the next phases assume this one's outcome
		}
	}
}

type twin struct {
	t       *testing.T // the whole TestTwin: every process lives as long as it
	dir     string
	consul  *testutil.Consul
	redis   *testutil.Redis
	cps     []*controlPlane // running
	dps     []*dataPlane    // running
	dpNet   [2]int          // data plane N listens on 127.dpNet[0].dpNet[1].N
	dpCount int             // data planes started so far
	opsPort int             // every data plane's ops port: HAProxy's check port
	lb      string          // the gateway, "http://127.0.0.1:PORT"
	lbSock  string          // HAProxy's runtime API
	http    *http.Client    // to the gateway, with keep-alive, as real clients
}

func startTwin(t *testing.T) *twin {
	t.Helper()
	tw := startTwinServers(t, "twin")
	for range 2 {
		tw.addDataPlane(t)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	tw.http = &http.Client{Timeout: 10 * time.Second, Transport: tr}
	return tw
}

// routesReachEveryDataPlane: routes written through either control plane
// reach every data plane, and HAProxy spreads traffic over all of them.
func (tw *twin) routesReachEveryDataPlane(t *testing.T) {
	ctx := context.Background()
	a, b := tw.cps[0], tw.cps[1]
	for i, name := range []string{"users", "orders"} {
		cp := tw.cps[i] // one object of each kind through each control plane
		if _, _, err := cp.admin.Services().Put(ctx, name, config.Service{Consul: &config.ConsulSource{Service: name}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := a.admin.Routes().Put(ctx, "users", route("/users/*", "users")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.admin.Routes().Put(ctx, "orders", route("/orders/*", "orders")); err != nil {
		t.Fatal(err)
	}
	for _, dp := range tw.dps {
		testutil.EventuallyNil(t, 15*time.Second, func() error {
			return errors.Join(twinServes(httpc, dp.url+"/users/1", "users"), twinServes(httpc, dp.url+"/orders/1", "orders"))
		}, dp.id+" serving both routes")

	}
	testutil.EventuallyNil(t, 15*time.Second, func() error { return tw.converged(ctx, tw.cps, tw.dps) }, "every data plane converged")
	testutil.EventuallyNil(t, 20*time.Second, func() error { return tw.inRotation(tw.dps...) }, "every data plane in HAProxy's rotation")

	const n = 100
	before := tw.scrapeAll(t)
	for i := range n {
		if err := twinServes(tw.http, fmt.Sprintf("%s/users/%d", tw.lb, i), "users"); err != nil {
			t.Fatalf("request %d through HAProxy: %v", i, err)
		}
	}
	if err := twinServes(tw.http, tw.lb+"/orders/1", "orders"); err != nil {
		t.Fatalf("through HAProxy: %v", err)
	}
	after := tw.scrapeAll(t)
	total, per := 0.0, map[string]float64{}
	for i, dp := range tw.dps {
		d := after[i].served("users") - before[i].served("users")
		per[dp.id], total = d, total+d
		if d == 0 {
			t.Errorf("%s served none of %d requests through HAProxy", dp.id, n)
		}
	}
	if total != n {
		t.Errorf("data planes counted %v requests on route users, want %d", total, n)
	}
	t.Logf("%d requests through HAProxy, served per data plane: %v", n, per)
}

// scaleOutUnderLoad: two more data planes join under steady load; HAProxy
// finds them in Consul, the control planes see them converge, and no client
// request fails.
func (tw *twin) scaleOutUnderLoad(t *testing.T) {
	ctx := context.Background()
	load := tw.startLoad(t, "/users/1")
	retried := tw.retries(t)
	start := time.Now()
	added := []*dataPlane{tw.addDataPlane(t), tw.addDataPlane(t)}
	for _, dp := range added {
		testutil.EventuallyNil(t, 30*time.Second, func() error {
			if s := tw.scrape(t, dp); s.served("users") == 0 {
				return errors.New("no request served yet")
			}
			return nil
		}, dp.id+" receiving traffic through HAProxy")

		t.Logf("%s served its first request through HAProxy %s after it was started", dp.id, time.Since(start).Round(time.Millisecond))
	}
	testutil.EventuallyNil(t, 15*time.Second, func() error { return tw.converged(ctx, tw.cps, tw.dps) }, "all four data planes converged")
	load.goOn(t, 500)
	res := load.stop()
	if res.Failed != 0 {
		t.Fatalf("%d of %d requests failed while data planes were added; first: %v", res.Failed, res.Total, res.FirstError)
	}
	t.Logf("scale out 2 → 4: %d requests through HAProxy, 0 failed, %d retried by HAProxy", res.Total, tw.retries(t)-retried)
}

// drainUnderLoad: a data plane given SIGTERM turns not-ready, HAProxy takes
// it out of rotation within its drain delay, it finishes what it has and
// exits, and no client request fails.
func (tw *twin) drainUnderLoad(t *testing.T) {
	victim := tw.dps[1]
	load := tw.startLoad(t, "/users/1")
	retried := tw.retries(t)
	start := time.Now()
	if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// When HAProxy stopped sending it traffic, for the log: the retries
	// would hide a slow check, and asserting on its timing would make a
	// busy machine fail the test for no bug.
	var outAfter time.Duration
	for outAfter == 0 {
		select {
		case <-victim.exited:
			outAfter = -1
		case <-time.After(20 * time.Millisecond):
			servers, err := tw.servers()
			if err == nil && !strings.HasPrefix(servers[strings.TrimPrefix(victim.url, "http://")], "UP") {
				outAfter = time.Since(start)
			}
		}
	}
	select {
	case <-victim.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit within 20s of SIGTERM", victim.id)
	}
	exited := time.Since(start)
	tw.dps = slices.DeleteFunc(tw.dps, func(dp *dataPlane) bool { return dp == victim })
	testutil.EventuallyNil(t, 15*time.Second, func() error { return tw.notListed(victim) }, victim.id+" leaving HAProxy's servers")
	load.goOn(t, 500)
	res := load.stop()
	if res.Failed != 0 {
		t.Fatalf("%d of %d requests failed while %s drained; first: %v", res.Failed, res.Total, victim.id, res.FirstError)
	}
	out := "only when it exited"
	if outAfter > 0 {
		out = outAfter.Round(time.Millisecond).String() + " after SIGTERM"
	}
	t.Logf("SIGTERM to %s: out of HAProxy's rotation %s, exited after %s (drain delay 2s); %d requests through HAProxy, 0 failed, %d retried by HAProxy",
		victim.id, out, exited.Round(time.Millisecond), res.Total, tw.retries(t)-retried)
}

// killUnderLoad: a data plane killed outright, with no drain and no
// deregistration, under load: HAProxy replays on another data plane what
// the dead one had taken (retry-on, redispatch), its check takes it out of
// rotation, Consul drops it once its own check fails, and no client request
// fails.
func (tw *twin) killUnderLoad(t *testing.T) {
	victim := tw.dps[len(tw.dps)-1]
	load := tw.startLoad(t, "/users/1")
	retried := tw.retries(t)
	start := time.Now()
	victim.kill()
	tw.dps = slices.DeleteFunc(tw.dps, func(dp *dataPlane) bool { return dp == victim })
	// Consul checks every 5s, HAProxy asks Consul every second.
	testutil.EventuallyNil(t, 20*time.Second, func() error { return tw.notListed(victim) }, victim.id+" leaving HAProxy's servers")
	gone := time.Since(start)
	load.goOn(t, 500)
	res := load.stop()
	if res.Failed != 0 {
		t.Fatalf("%d of %d requests failed after %s was killed; first: %v", res.Failed, res.Total, victim.id, res.FirstError)
	}
	t.Logf("SIGKILL to %s: gone from HAProxy's servers after %s; %d requests through HAProxy, 0 failed, %d retried by HAProxy",
		victim.id, gone.Round(time.Millisecond), res.Total, tw.retries(t)-retried)
}

// rateLimitAcrossDataPlanes: one limit, counted in Redis, holds for all data
// planes together behind HAProxy. Admissions are bounded by the time the
// load ran: every admitted request was decided between its start and its
// end, so however the machine schedules things, a limit that holds admits
// at most 1.01×limit per window over that span (the README's promise).
func (tw *twin) rateLimitAcrossDataPlanes(t *testing.T) {
	ctx := context.Background()
	const limit, window = 100, 2 * time.Second
	if _, _, err := tw.cps[0].admin.Routes().Put(ctx, "limited", config.Route{Paths: []string{"/limited"}, Service: "users",
		RateLimit: &config.RateLimit{Limit: limit, Window: config.Duration(window)}}); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyNil(t, 15*time.Second, func() error { return tw.converged(ctx, tw.cps, tw.dps) }, "every data plane converged")
	before := tw.scrapeAll(t)

	var admitted, refused atomic.Int64
	begin := time.Now()
	load := twinStartLoad(t, func() error {
		resp, err := tw.http.Get(tw.lb + "/limited")
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			admitted.Add(1)
		case http.StatusTooManyRequests:
			refused.Add(1)
		default:
			return fmt.Errorf("GET /limited: %s", resp.Status)
		}
		return nil
	})
	// A measurement over three windows, not a wait for some state.
	<-time.After(3 * window)
	res := load.stop()
	elapsed := time.Since(begin)
	after := tw.scrapeAll(t)

	if res.Failed != 0 {
		t.Fatalf("%d of %d requests failed; first: %v", res.Failed, res.Total, res.FirstError)
	}
	// Without a burst the limit is a sliding window: at most limit in any
	// window, limit at once at each window's start (policyMax); a shared
	// count that failed would show as several times more.
	windows := elapsed.Seconds() / window.Seconds()
	most := 1.01*float64(policyMax(config.RateLimit{Limit: limit, Window: config.Duration(window)}, elapsed)) + 1
	least := 0.7 * limit * windows
	got := float64(admitted.Load())
	t.Logf("limit %d per %s over %d data planes for %s: %v admitted (%.1f per window; at most %.1f), %d refused",
		limit, window, len(tw.dps), elapsed.Round(time.Millisecond), got, got/windows, most, refused.Load())
	var counted float64
	for i, dp := range tw.dps {
		if local := after[i].local - before[i].local; local != 0 {
			t.Fatalf("%s took %v rate-limit decisions locally: Redis did not answer within the budget, so this run says nothing about the shared count", dp.id, local)
		}
		ok, no := after[i].count("limited", "2xx")-before[i].count("limited", "2xx"), after[i].count("limited", "4xx")-before[i].count("limited", "4xx")
		if ok == 0 || no == 0 {
			t.Errorf("%s admitted %v and refused %v: every data plane should do both", dp.id, ok, no)
		}
		counted += ok
	}
	if got > most {
		t.Errorf("%v admitted in %s: more than the window allows (%.0f)", got, elapsed, most)
	}
	if got < least {
		t.Errorf("%v admitted in %s: fewer than 0.7×%d per %s, the limiter refuses what it should admit", got, elapsed, limit, window)
	}
	if counted != got {
		t.Errorf("data planes counted %v admitted requests, the client %v", counted, got)
	}
}

// controlPlaneLoss: one of the two control planes dies hard; the admin API
// works through the other, and the data planes that polled the dead one
// find the survivor in Consul and keep receiving changes.
func (tw *twin) controlPlaneLoss(t *testing.T) {
	ctx := context.Background()
	// The one most data planes poll: they have to move.
	dead, survivor, polling := tw.cps[0], tw.cps[1], 0
	for i, cp := range tw.cps {
		d, err := cp.admin.Dataplanes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, node := range d.Nodes {
			if node.Polling {
				n++
			}
		}
		if n > polling {
			dead, survivor, polling = cp, tw.cps[1-i], n
		}
	}
	dead.kill()
	tw.cps = []*controlPlane{survivor}
	start := time.Now()
	if _, err := survivor.admin.Routes().Get(ctx, "users"); err != nil {
		t.Fatalf("reading through %s: %v", survivor.name, err)
	}
	if _, _, err := survivor.admin.Routes().Put(ctx, "late", route("/late/*", "orders")); err != nil {
		t.Fatalf("writing through %s: %v", survivor.name, err)
	}
	for _, dp := range tw.dps {
		testutil.EventuallyNil(t, 30*time.Second, func() error {
			return twinServes(httpc, dp.url+"/late/1", "orders")
		}, dp.id+" serving the route written after "+dead.name+" died")

	}
	t.Logf("%s killed with %d of %d data planes polling it: every data plane served a route written through %s %s later",
		dead.name, polling, len(tw.dps), survivor.name, time.Since(start).Round(time.Millisecond))
	if err := twinServes(tw.http, tw.lb+"/late/1", "orders"); err != nil {
		t.Fatalf("through HAProxy: %v", err)
	}
	testutil.EventuallyNil(t, 30*time.Second, func() error { return tw.converged(ctx, tw.cps, tw.dps) }, "every data plane polling "+survivor.name)
	t.Logf("all %d data planes connected to %s and converged %s after %s was killed",
		len(tw.dps), survivor.name, time.Since(start).Round(time.Millisecond), dead.name)
}

// --- the topology ---------------------------------------------------------

func (tw *twin) startControlPlane(t *testing.T, name, store string) *controlPlane {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	p := start(t, name, "controlplane", "--listen", addr, "--store", store, "--consul", tw.consul.Addr,
		"--admin-token", adminToken, "--dataplane-token", dpToken, "--log-level", "warn")
	cp := &controlPlane{proc: p, url: "http://" + addr}
	waitHTTP(t, cp.url+"/readyz", 200)
	var err error
	if cp.admin, err = client.New(cp.url, adminToken, client.WithActor("e2e-twin")); err != nil {
		t.Fatal(err)
	}
	return cp
}

// startService runs a demo upstream that registers itself in Consul, as
// the demo services of make cluster do.
func (tw *twin) startService(t *testing.T, name string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	start(t, name, "demo-upstream", "--listen", addr, "--name", name, "--consul", tw.consul.Addr, "--service", name)
	waitHTTP(t, "http://"+addr+"/healthz", 200)
}

// startTwinServers starts everything of the twin but its data planes:
// Consul (with DNS), redis-server, two control planes sharing the Consul KV
// prefix portico/<prefix>, the demo services and HAProxy.
func startTwinServers(t *testing.T, prefix string) *twin {
	t.Helper()
	hap := twinHAProxyBinary(t)
	tw := &twin{t: t, dir: t.TempDir(), opsPort: testutil.FreePort(t)}
	// Random, away from 127.0.0.x and 127.0.1.1 (Debian's hostname): runs of
	// this test side by side, or make cluster (127.0.8.N), never share one.
	tw.dpNet = [2]int{100 + rand.IntN(150), rand.IntN(256)}
	tw.consul = testutil.StartConsulWithDNS(t)
	tw.redis = testutil.StartRedis(t)
	store := "consul://" + tw.consul.Addr + "/portico/" + prefix
	for _, name := range []string{"cp-a", "cp-b"} {
		tw.cps = append(tw.cps, tw.startControlPlane(t, name, store))
	}
	for _, name := range []string{"users", "orders"} {
		tw.startService(t, name)
	}
	tw.startHAProxy(t, hap)
	return tw
}

// addDataPlane starts the next data plane with the flags of make cluster
// (scripts/cluster.sh). Its rate limiter runs on the default Redis budget: the
// rate-limit phase checks the limit a user gets. t may be a phase: the
// process still lives until the whole test ends.
func (tw *twin) addDataPlane(t *testing.T) *dataPlane {
	t.Helper()
	return tw.startDataPlane(t, "--drain-delay", "2s", "--poll-wait", "10s", "--access-log-sample", "0", "--log-level", "warn")
}

// startDataPlane starts the next data plane on its own loopback address,
// found through Consul, counting in the twin's Redis, behind HAProxy, with
// extra flags on top of what every deployment must give.
func (tw *twin) startDataPlane(t *testing.T, extra ...string) *dataPlane {
	t.Helper()
	var host string
	var port int
	for tries := 0; ; tries++ {
		tw.dpCount++
		host = fmt.Sprintf("127.%d.%d.%d", tw.dpNet[0], tw.dpNet[1], tw.dpCount)
		port = testutil.FreePort(t)
		// The ops port cannot move (HAProxy checks it on every data
		// plane), so an address where it is taken is skipped instead.
		if twinPortFree(host, port) && twinPortFree(host, tw.opsPort) {
			break
		}
		if tries == 5 {
			t.Fatalf("no loopback address with ports %d and %d free under 127.%d.%d.0/24", port, tw.opsPort, tw.dpNet[0], tw.dpNet[1])
		}
	}
	id := fmt.Sprintf("dp-%d", tw.dpCount)
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ops := net.JoinHostPort(host, strconv.Itoa(tw.opsPort))
	args := append([]string{
		"--controlplane", "consul://portico-controlplane", "--consul", tw.consul.Addr, "--token", dpToken,
		"--redis", tw.redis.URL(), "--trusted-proxies", "127.0.0.1/32",
		"--listen", addr, "--ops-listen", ops, "--state-dir", filepath.Join(tw.dir, id), "--node-id", id,
	}, extra...)
	p := start(twinScope{TB: t, whole: tw.t}, id, "dataplane", args...)
	dp := &dataPlane{proc: p, id: id, url: "http://" + addr, ops: "http://" + ops, stateDir: filepath.Join(tw.dir, id)}
	waitHTTP(t, dp.ops+"/healthz", 200)
	tw.dps = append(tw.dps, dp)
	return dp
}

func (tw *twin) startHAProxy(t *testing.T, bin string) {
	t.Helper()
	tmpl, err := os.ReadFile(twinHAProxyTemplate)
	if err != nil {
		t.Fatal(err)
	}
	front := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	tw.lbSock = filepath.Join(tw.dir, "haproxy.sock")
	cfg := strings.NewReplacer(
		"@FRONT@", front,
		"@STATS@", fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
		"@SOCKET@", tw.lbSock,
		"@CONSUL_DNS@", tw.consul.DNSAddr(),
		"@OPS_PORT@", strconv.Itoa(tw.opsPort),
	).Replace(string(tmpl))
	if left := regexp.MustCompile(`@[A-Z_]+@`).FindString(cfg); left != "" {
		t.Fatalf("%s: placeholder %s not filled in by this test", twinHAProxyTemplate, left)
	}
	path := filepath.Join(tw.dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-q", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c %s: %v\n%s", path, err, out)
	}
	twinStartExternal(t, "haproxy", bin, "-f", path, "-db")
	tw.lb = "http://" + front
	testutil.EventuallyNil(t, 10*time.Second, func() error {
		if code, body := get(tw.lb + "/"); code == 0 {
			return errors.New(body)
		}
		return nil
	}, "HAProxy accepting on "+front)

	t.Cleanup(func() {
		if t.Failed() {
			servers, err := tw.servers()
			t.Logf("HAProxy's data plane servers at the end: %v %v", servers, err)
		}
	})
}

// twinHAProxyBinary finds Debian's haproxy. Missing, it fails the test: a
// twin without its load balancer would test something else.
func twinHAProxyBinary(t *testing.T) string {
	t.Helper()
	const hint = "run `make test`, which installs Debian's haproxy (scripts/ensure-haproxy.sh), or point HAPROXY_BIN at a haproxy binary"
	if p := os.Getenv("HAPROXY_BIN"); p != "" {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			t.Fatalf("HAPROXY_BIN=%s is not an executable file; %s", p, hint)
		}
		return p
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	// Debian installs it in /usr/sbin, which is not on every user's PATH.
	if fi, err := os.Stat("/usr/sbin/haproxy"); err == nil && fi.Mode().IsRegular() {
		return "/usr/sbin/haproxy"
	}
	t.Fatal("haproxy not found on PATH nor in /usr/sbin; " + hint)
	return ""
}

// twinStartExternal runs a binary not built by TestMain the way start runs
// Portico's: own process group, output in a log shown on failure, killed at
// the end.
func twinStartExternal(t *testing.T, name, path string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, args: args, log: filepath.Join(t.TempDir(), name+".log")}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p.cmd = exec.Command(path, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := childproc.Start(p.cmd); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(p.cmd, p.exited)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- %s log (%s):\n%s", name, p.log, tail(p.log, 40))
		}
	})
	return p
}

// twinScope lets a phase (a subtest) start processes that outlive it: their
// cleanup, temp dirs and failure logs belong to the whole test, while a
// failure to start them fails the phase that tried.
type twinScope struct {
	testing.TB // the phase
	whole      testing.TB
}

func (s twinScope) Cleanup(f func())                { s.whole.Cleanup(f) }
func (s twinScope) TempDir() string                 { return s.whole.TempDir() }
func (s twinScope) Failed() bool                    { return s.whole.Failed() }
func (s twinScope) Logf(format string, args ...any) { s.whole.Logf(format, args...) }

func twinPortFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// --- what the test looks at -------------------------------------------------

// converged: every data plane in dps is connected to one of cps and runs
// the newest revision. Each control plane lists only the data planes
// polling it, so the views are merged.
func (tw *twin) converged(ctx context.Context, cps []*controlPlane, dps []*dataPlane) error {
	var revision int64
	applied := map[string]int64{}
	for _, cp := range cps {
		d, err := cp.admin.Dataplanes(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", cp.name, err)
		}
		revision = max(revision, d.Revision)
		for _, n := range d.Nodes {
			if n.Status == "connected" {
				applied[n.ID] = n.AppliedRevision
			}
		}
	}
	for _, dp := range dps {
		rev, ok := applied[dp.id]
		if !ok {
			return fmt.Errorf("%s is connected to no control plane", dp.id)
		}
		if rev != revision {
			return fmt.Errorf("%s runs revision %d of %d", dp.id, rev, revision)
		}
	}
	return nil
}

// showStat returns the rows of HAProxy's "show stat" for the dataplanes
// backend, each as column name → value, from its runtime API.
func (tw *twin) showStat() ([]map[string]string, error) {
	conn, err := net.DialTimeout("unix", tw.lbSock, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(conn)
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(bytes.NewReader(raw))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("show stat: %v: %q", err, raw)
	}
	header := rows[0]
	header[0] = strings.TrimPrefix(header[0], "# ")
	var out []map[string]string
	for _, row := range rows[1:] {
		if len(row) == 0 || row[0] != "dataplanes" {
			continue
		}
		m := map[string]string{}
		for i, v := range row {
			if i < len(header) {
				m[header[i]] = v
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// servers returns HAProxy's data plane servers that have an address, as
// address → status ("UP", "DOWN", "MAINT", ...).
func (tw *twin) servers() (map[string]string, error) {
	rows, err := tw.showStat()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, row := range rows {
		if row["svname"] != "BACKEND" && row["addr"] != "" {
			out[row["addr"]] = row["status"]
		}
	}
	return out, nil
}

// retries returns how many times HAProxy has retried a request (on the same
// or, redispatched, on another data plane) since it started: what the
// retry-on rules had to save.
func (tw *twin) retries(t testing.TB) int {
	t.Helper()
	rows, err := tw.showStat()
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if row["svname"] == "BACKEND" {
			a, _ := strconv.Atoi(row["wretr"])
			b, _ := strconv.Atoi(row["wredis"])
			return a + b
		}
	}
	t.Fatal("no BACKEND row for dataplanes in HAProxy's show stat")
	return 0
}

func (tw *twin) inRotation(dps ...*dataPlane) error {
	servers, err := tw.servers()
	if err != nil {
		return err
	}
	for _, dp := range dps {
		if st := servers[strings.TrimPrefix(dp.url, "http://")]; !strings.HasPrefix(st, "UP") {
			return fmt.Errorf("%s is %q in HAProxy; servers: %v", dp.id, st, servers)
		}
	}
	return nil
}

func (tw *twin) notListed(dp *dataPlane) error {
	servers, err := tw.servers()
	if err != nil {
		return err
	}
	if st, ok := servers[strings.TrimPrefix(dp.url, "http://")]; ok {
		return fmt.Errorf("%s still a server of HAProxy, %s", dp.id, st)
	}
	return nil
}

// twinScrape is what a data plane's /metrics says about traffic.
type twinScrape struct {
	requests map[[2]string]float64 // {route, status class} → requests
	local    float64               // rate-limit decisions taken without Redis
}

func (s twinScrape) count(route, class string) float64 { return s.requests[[2]string{route, class}] }
func (s twinScrape) served(route string) float64       { return s.count(route, "2xx") }

func (tw *twin) scrape(t testing.TB, dp *dataPlane) twinScrape {
	t.Helper()
	resp, err := httpc.Get(dp.ops + "/metrics")
	if err != nil {
		t.Fatalf("%s /metrics: %v", dp.id, err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s /metrics: %v", dp.id, err)
	}
	s := twinScrape{requests: map[[2]string]float64{}}
	for _, m := range fams["portico_requests_total"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		s.requests[[2]string{l["route"], l["status"]}] += m.GetCounter().GetValue()
	}
	for _, m := range fams["portico_ratelimit_decisions_total"].GetMetric() {
		for _, p := range m.GetLabel() {
			if p.GetName() == "source" && p.GetValue() == "local" {
				s.local += m.GetCounter().GetValue()
			}
		}
	}
	return s
}

// scrapeAll scrapes the running data planes, in tw.dps order.
func (tw *twin) scrapeAll(t testing.TB) []twinScrape {
	t.Helper()
	out := make([]twinScrape, len(tw.dps))
	for i, dp := range tw.dps {
		out[i] = tw.scrape(t, dp)
	}
	return out
}

// twinServes checks that one GET through c is answered 200 by the named
// demo service.
func twinServes(c *http.Client, url, service string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Served-By") != service {
		return fmt.Errorf("GET %s: %s from %q: %s", url, resp.Status, resp.Header.Get("X-Served-By"), bytes.TrimSpace(body))
	}
	return nil
}

// --- load and waiting -------------------------------------------------------

// twinLoad is steady GET traffic through the gateway, every answer expected
// to be 200.
type twinLoad struct {
	stop     func() testutil.LoadResult
	progress func() int64
}

// twinStartLoad runs fn from four paced workers until stop; the phase's
// cleanup stops them if the phase ends early.
func twinStartLoad(t *testing.T, fn func() error) *twinLoad {
	stop, progress := testutil.Load(4, twinPaced(fn))
	var stopped atomic.Bool
	var res testutil.LoadResult
	l := &twinLoad{progress: progress, stop: func() testutil.LoadResult {
		if stopped.CompareAndSwap(false, true) {
			res = stop()
		}
		return res
	}}
	t.Cleanup(func() { l.stop() })
	return l
}

// startLoad sends GET path through the gateway, expecting 200, and returns
// once requests flow.
func (tw *twin) startLoad(t *testing.T, path string) *twinLoad {
	t.Helper()
	l := twinStartLoad(t, testutil.HTTPStatus(tw.http, tw.lb+path, http.StatusOK))
	testutil.EventuallyNil(t, 10*time.Second, func() error {
		if n := l.progress(); n < 100 {
			return fmt.Errorf("%d requests so far", n)
		}
		return nil
	}, "load flowing through HAProxy")

	return l
}

// goOn waits until n more requests have been made: proof that traffic kept
// flowing after the change, not merely before it.
func (l *twinLoad) goOn(t *testing.T, n int64) {
	t.Helper()
	from := l.progress()
	testutil.EventuallyNil(t, 20*time.Second, func() error {
		if done := l.progress() - from; done < n {
			return fmt.Errorf("%d so far", done)
		}
		return nil
	}, fmt.Sprintf("%d more requests", n))

}

// twinPaced spaces each worker's requests by 2ms: a few hundred requests a
// second find every failure there is to find, while leaving the two shared
// cores enough room for Consul's checks and the control planes.
func twinPaced(fn func() error) func() error {
	return func() error {
		time.Sleep(2 * time.Millisecond)
		return fn()
	}
}
