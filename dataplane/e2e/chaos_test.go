package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/problem"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestChaos is `make chaos`: the production topology of make cluster (Consul
// with DNS, redis-server, two control planes on one Consul KV prefix, three
// data planes with DEFAULT flags, demo services found in Consul, HAProxy in
// front following Consul) put through the faults an operator meets, each
// under load through HAProxy: a cluster-wide rate limit at saturation, Redis
// stalled (SIGSTOP) and killed, the Consul agent restarted empty, a control
// plane and a data plane killed. It prints a table of what the clients saw.
//
// It is a measurement, not a timed test: with PORTICO_CHAOS=full each fault
// lasts longer under more load and the table is the product; the short
// version that make test runs (a few seconds per scenario) checks only
// counts: no 5xx where the design promises none, admissions within the
// limit's bound, every process registered in Consul again, admin writes
// working again after the operator adopts the reset store. Recovery times
// are printed, never asserted.
func TestChaos(t *testing.T) {
	cx := startChaos(t, os.Getenv("PORTICO_CHAOS") == "full")
	var rows []chaosRow
	for _, sc := range []struct {
		name string
		run  func(*testing.T) chaosRow
	}{
		{"saturation", cx.saturation},
		{"redis stalled", cx.redisStalled},
		{"redis killed", cx.redisKilled},
		{"control plane killed", cx.controlPlaneKilled},
		{"data plane killed", cx.dataPlaneKilled},
		// Last: for a few seconds after an agent restarts empty, Consul's
		// DNS can drop and re-add every data plane more than once while
		// the new leader and anti-entropy settle (HAProxy then has no
		// server; measured here, not hidden), which would be charged to
		// whichever scenario came next.
		{"consul reset", cx.consulReset},
	} {
		var row chaosRow
		ok := t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) { row = sc.run(t) })
		row.scenario = sc.name
		rows = append(rows, row)
		if !ok {
			break // the next scenarios build on this one's outcome
		}
	}
	t.Log("\n" + chaosTable(rows, cx.full))
}

type chaos struct {
	*twin
	full bool
	// span is how long each fault lasts and each measurement runs.
	span time.Duration
	// workers send paced background traffic; the saturation scenario
	// sends unpaced from as many.
	workers int
}

func startChaos(t *testing.T, full bool) *chaos {
	t.Helper()
	tw := startTwinServers(t, "chaos")
	cx := &chaos{twin: tw, full: full, span: 3 * time.Second, workers: 4}
	if full {
		cx.span, cx.workers = 20*time.Second, 8
	}
	for range 3 {
		cx.twin.startDataPlane(t) // the flags an operator gets by default
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	tw.http = &http.Client{Timeout: 10 * time.Second, Transport: tr}

	ctx := context.Background()
	admin := tw.cps[0].admin
	for _, name := range []string{"users", "orders"} {
		if _, _, err := admin.Services().Put(ctx, name, config.Service{Consul: &config.ConsulSource{Service: name}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := admin.Routes().Put(ctx, "users", route("/users/*", "users")); err != nil {
		t.Fatal(err)
	}
	// A limit far above the load: every answer should be 200 whether Redis
	// or the local fallback decides, so any refusal is a wrong decision.
	if _, _, err := admin.Routes().Put(ctx, "counted", config.Route{Paths: []string{"/counted/*"}, Service: "orders",
		StripPrefix: true, RateLimit: &config.RateLimit{Limit: 1_000_000, Window: config.Duration(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyNil(t, 30*time.Second, func() error { return tw.converged(ctx, tw.cps, tw.dps) }, "every data plane converged")
	testutil.EventuallyNil(t, 30*time.Second, func() error { return tw.inRotation(tw.dps...) }, "every data plane behind HAProxy")
	return cx
}

// --- scenarios ------------------------------------------------------------------

// chaosRow is one line of the table.
type chaosRow struct {
	scenario string
	counts   chaosCounts
	// admitted and allowed: the rate-limited requests that passed, and the
	// most the limit allows over the run (saturation only; -1 elsewhere).
	admitted, allowed int64
	recovery          time.Duration // 0: not applicable
	note              string
}

// saturation drives a cluster-wide limit (burst omitted, keyed by route: a
// sliding window) on every data plane at once, as fast as the clients go,
// with checkClusterLimit (limits_test.go): admissions at most 1.01 × what
// the algorithm allows over the run + 1, no 5xx.
func (cx *chaos) saturation(t *testing.T) chaosRow {
	ctx := context.Background()
	policy := config.RateLimit{Limit: 50, Window: config.Duration(time.Second)}
	if cx.full {
		policy = config.RateLimit{Limit: 100, Window: config.Duration(10 * time.Second)}
	}
	if _, _, err := cx.cps[0].admin.Routes().Put(ctx, "limited", config.Route{Paths: []string{"/limited"}, Service: "users",
		RateLimit: &policy}); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyNil(t, 15*time.Second, func() error { return cx.converged(ctx, cx.cps, cx.dps) }, "every data plane converged")
	res := checkClusterLimit(t, cx.dps, []limitCase{{Name: "limit per route", Path: "/limited", Policy: policy}}, cx.workers+2, cx.span)
	lc := res.Cases[0]
	c := chaosCounts{total: int64(res.Requests), ok: int64(lc.Codes[200]), limited: int64(lc.Codes[429]), transport: int64(lc.Codes[0])}
	for code, n := range lc.Codes {
		switch {
		case code >= 500:
			c.fivexx += int64(n)
		case code >= 400 && code != 429:
			c.other4xx += int64(n)
		}
	}
	return chaosRow{counts: c, admitted: int64(lc.Admitted), allowed: int64(lc.Max),
		note: fmt.Sprintf("limit %d per %s on %d data planes at once (direct, not through HAProxy), %.0f req/s; decisions %.0f in Redis, %.0f local",
			policy.Limit, policy.Window.Std(), len(cx.dps), float64(res.Requests)/res.Duration.Seconds(), res.Redis, res.Local)}
}

// redisStalled freezes redis-server (SIGSTOP: connections open, nothing
// answered) under load on a limited route; the data planes must keep
// answering from the local fallback (fail_open) without a 5xx.
func (cx *chaos) redisStalled(t *testing.T) chaosRow {
	return cx.redisFault(t, "SIGSTOP for the span, then SIGCONT", cx.redis.Freeze, cx.redis.Thaw)
}

// redisKilled kills redis-server under load and starts it again, empty.
func (cx *chaos) redisKilled(t *testing.T) chaosRow {
	return cx.redisFault(t, "SIGKILL, restarted empty after the span", cx.redis.Stop, cx.redis.Start)
}

func (cx *chaos) redisFault(t *testing.T, note string, fault, heal func()) chaosRow {
	l := cx.load(t, "/counted/1", cx.workers, true)
	l.flowing(t)
	fault()
	healed := false
	defer func() {
		if !healed {
			heal()
		}
	}()
	<-time.After(cx.span)
	heal()
	healed = true
	healedAt := time.Now()
	before := cx.redisDecisions(t)
	// Recovered: every data plane decides in Redis again.
	testutil.EventuallyNil(t, 30*time.Second, func() error {
		now := cx.redisDecisions(t)
		for i, dp := range cx.dps {
			if now[i] <= before[i] {
				return fmt.Errorf("%s has not decided in Redis since it came back", dp.id)
			}
		}
		return nil
	}, "every data plane deciding in Redis again")
	recovery := time.Since(healedAt)
	c := l.stop()
	if c.fivexx+c.transport != 0 || c.ok != c.total {
		t.Errorf("%d of %d requests not 200 (%d 429, %d 5xx, %d transport errors); first: %s",
			c.total-c.ok, c.total, c.limited, c.fivexx, c.transport, c.first)
	}
	return chaosRow{counts: c, admitted: -1, allowed: -1, recovery: recovery, note: note}
}

// redisDecisions returns each data plane's count of decisions made in Redis.
func (cx *chaos) redisDecisions(t testing.TB) []float64 {
	t.Helper()
	out := make([]float64, len(cx.dps))
	for i, dp := range cx.dps {
		m, err := scrapeMetrics(dp.ops + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		out[i] = metricSum(m["portico_ratelimit_decisions_total"], map[string]string{"source": "redis"})
	}
	return out
}

// consulReset restarts the Consul agent empty under load: the registrations
// of every process and the control planes' KV store are gone. Every process
// must register again by itself; the control planes refuse writes with a
// store-reset problem until the operator adopts the store (here re-seeding
// it with the last configuration served); then writes work through either
// control plane and the data planes move to the new epoch. Recovery is the
// time from the agent answering again to HAProxy routing to every data
// plane and Consul listing every process as passing.
func (cx *chaos) consulReset(t *testing.T) chaosRow {
	ctx := context.Background()
	l := cx.load(t, "/users/1", cx.workers, true)
	l.flowing(t)
	oldEpoch := cx.epoch(t, cx.cps[0])
	cx.consul.RestartEmpty()
	up := time.Now()
	consul, err := api.NewClient(&api.Config{Address: cx.consul.Addr})
	if err != nil {
		t.Fatal(err)
	}
	passing := func(service string, want int) error {
		entries, _, err := consul.Health().Service(service, "", true, nil)
		if err != nil {
			return err
		}
		if len(entries) != want {
			return fmt.Errorf("%s: %d of %d passing in Consul", service, len(entries), want)
		}
		return nil
	}
	testutil.EventuallyNil(t, 30*time.Second, func() error {
		return errors.Join(passing("portico-dataplane", len(cx.dps)), passing("portico-controlplane", len(cx.cps)),
			passing("users", 1), passing("orders", 1), cx.inRotation(cx.dps...))
	}, "every process registered and passing again, every data plane behind HAProxy")
	registered := time.Since(up)
	// Recovered: clients have seen no 5xx for a while (HAProxy may drop
	// and re-add its servers more than once as Consul's DNS fills again);
	// the recovery time is that of the last one, counted from the agent
	// answering again.
	recovery := registered
	calm := 5 * time.Second
	if last := l.quiet(t, calm, 200); last.After(up) {
		recovery = max(recovery, last.Sub(up))
	}

	// The store is empty: writes are refused with a problem that says so,
	// reads still answer.
	testutil.EventuallyNil(t, 15*time.Second, func() error {
		_, _, err := cx.cps[0].admin.Routes().Put(ctx, "after-reset", route("/after-reset/*", "orders"))
		var p *problem.Problem
		if !errors.As(err, &p) || p.Status != http.StatusConflict || !strings.HasSuffix(p.Type, "store-reset") {
			return fmt.Errorf("write after the reset: %v, want a 409 store-reset problem", err)
		}
		return nil
	}, "writes refused with store-reset")
	if _, err := cx.cps[1].admin.Routes().Get(ctx, "users"); err != nil {
		t.Errorf("reading through %s after the reset: %v", cx.cps[1].name, err)
	}
	code, body := cx.adopt(t, cx.cps[0], "last-seen")
	if code != http.StatusOK {
		t.Fatalf("POST /v1/store/adopt?config=last-seen = %d: %s", code, body)
	}
	for _, cp := range cx.cps {
		testutil.EventuallyNil(t, 15*time.Second, func() error {
			_, _, err := cp.admin.Routes().Put(ctx, "after-reset-"+cp.name, route("/after-reset-"+cp.name+"/*", "orders"))
			return err
		}, "writes through "+cp.name+" after adopt")
	}
	testutil.EventuallyNil(t, 30*time.Second, func() error { return cx.converged(ctx, cx.cps, cx.dps) }, "every data plane on the adopted store")
	for _, dp := range cx.dps {
		if ep, _ := dp.status(t)["epoch"].(string); ep == "" || ep == oldEpoch {
			t.Errorf("%s runs epoch %q, want the new one (old %q)", dp.id, ep, oldEpoch)
		}
	}
	c := l.stop()
	return chaosRow{counts: c, admitted: -1, allowed: -1, recovery: recovery,
		note: fmt.Sprintf("all registered again %s after the agent answered; writes 409 store-reset until adopt?config=last-seen; first error: %s",
			registered.Round(10*time.Millisecond), c.first)}
}

// epoch returns the epoch a control plane serves.
func (cx *chaos) epoch(t *testing.T, cp *controlPlane) string {
	t.Helper()
	d, err := cp.admin.Dataplanes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d.Epoch
}

func (cx *chaos) adopt(t *testing.T, cp *controlPlane, config string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, cp.url+"/v1/store/adopt?config="+config, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	return resp.StatusCode, string(b)
}

// controlPlaneKilled kills one control plane (SIGKILL) under load: traffic
// does not notice, writes go through the survivor, and every data plane
// gets them. Recovery is the time until every data plane runs a write made
// after the kill.
func (cx *chaos) controlPlaneKilled(t *testing.T) chaosRow {
	ctx := context.Background()
	testutil.EventuallyNil(t, 30*time.Second, func() error { return cx.inRotation(cx.dps...) }, "every data plane behind HAProxy")
	l := cx.load(t, "/users/1", cx.workers, true)
	l.flowing(t)
	dead, survivor := cx.cps[0], cx.cps[1]
	dead.kill()
	killed := time.Now()
	cx.cps = []*controlPlane{survivor}
	if _, _, err := survivor.admin.Routes().Put(ctx, "after-cp-kill", route("/after-cp-kill/*", "orders")); err != nil {
		t.Fatalf("writing through %s: %v", survivor.name, err)
	}
	testutil.EventuallyNil(t, 30*time.Second, func() error { return cx.converged(ctx, cx.cps, cx.dps) }, "every data plane on "+survivor.name)
	recovery := time.Since(killed)
	l.goOn(t, 200)
	c := l.stop()
	if c.ok != c.total {
		t.Errorf("%d of %d requests not 200 after %s was killed; first: %s", c.total-c.ok, c.total, dead.name, c.first)
	}
	// Back for the Consul reset, which checks that one replica follows
	// another's adopt.
	dead.restart("controlplane")
	waitHTTP(t, dead.url+"/readyz", 200)
	cx.cps = []*controlPlane{dead, survivor}
	return chaosRow{counts: c, admitted: -1, allowed: -1, recovery: recovery, note: dead.name + " SIGKILL; write through " + survivor.name}
}

// dataPlaneKilled kills one data plane (SIGKILL) under load: HAProxy
// replays what it had taken, and no client request fails. Recovery is the
// time until HAProxy no longer lists it.
func (cx *chaos) dataPlaneKilled(t *testing.T) chaosRow {
	l := cx.load(t, "/users/1", cx.workers, true)
	l.flowing(t)
	victim := cx.dps[len(cx.dps)-1]
	victim.kill()
	killed := time.Now()
	cx.dps = cx.dps[:len(cx.dps)-1]
	testutil.EventuallyNil(t, 30*time.Second, func() error { return cx.notListed(victim) }, victim.id+" leaving HAProxy")
	recovery := time.Since(killed)
	l.goOn(t, 200)
	c := l.stop()
	if c.ok != c.total {
		t.Errorf("%d of %d requests not 200 after %s was killed; first: %s", c.total-c.ok, c.total, victim.id, c.first)
	}
	return chaosRow{counts: c, admitted: -1, allowed: -1, recovery: recovery, note: victim.id + " SIGKILL"}
}

// --- load -------------------------------------------------------------------------

// chaosCounts is what the clients saw.
type chaosCounts struct {
	total, ok, limited, other4xx, fivexx, transport int64
	first                                           string // the first answer that was not 2xx or 429
}

type chaosLoad struct {
	stopCh                                          chan struct{}
	wg                                              sync.WaitGroup
	total, ok, limited, other4xx, fivexx, transport atomic.Int64
	firstMu                                         sync.Mutex
	first                                           string
	lastBad                                         atomic.Int64 // unix nanoseconds of the last 5xx or transport error
	stopOnce                                        sync.Once
	result                                          chaosCounts
}

// load sends GET path through HAProxy from workers goroutines until stop
// (or the scenario's end); paced workers space their requests by 2ms,
// leaving the two shared cores room for the servers under test.
func (cx *chaos) load(t *testing.T, path string, workers int, paced bool) *chaosLoad {
	l := &chaosLoad{stopCh: make(chan struct{})}
	url := cx.lb + path
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stopCh:
					return
				default:
				}
				if paced {
					select {
					case <-l.stopCh:
						return
					case <-time.After(2 * time.Millisecond):
					}
				}
				l.record(cx.http.Get(url))
			}
		}()
	}
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *chaosLoad) record(resp *http.Response, err error) {
	l.total.Add(1)
	what := ""
	switch {
	case err != nil:
		l.transport.Add(1)
		what = err.Error()
	default:
		// The body of an error says who answered (HAProxy or a data
		// plane, and which problem).
		var body []byte
		if resp.StatusCode >= 400 && resp.StatusCode != http.StatusTooManyRequests {
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 300))
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch code := resp.StatusCode; {
		case code < 300:
			l.ok.Add(1)
		case code == http.StatusTooManyRequests:
			l.limited.Add(1)
		case code >= 500:
			l.fivexx.Add(1)
			what = resp.Status + " " + strings.Join(strings.Fields(string(body)), " ")
		default:
			l.other4xx.Add(1)
			what = resp.Status + " " + strings.Join(strings.Fields(string(body)), " ")
		}
	}
	if what != "" && (err != nil || resp.StatusCode >= 500) {
		l.lastBad.Store(time.Now().UnixNano())
	}
	if what != "" {
		l.firstMu.Lock()
		if l.first == "" {
			l.first = what
		}
		l.firstMu.Unlock()
	}
}

// flowing waits until requests flow, so that a fault meets traffic.
func (l *chaosLoad) flowing(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool { return l.total.Load() >= 100 }, "load flowing through HAProxy")
}

// quiet waits until no 5xx or transport error has been seen for d (and at
// least n requests were made meanwhile), and returns when the last one was
// (zero if none).
func (l *chaosLoad) quiet(t *testing.T, d time.Duration, n int64) time.Time {
	t.Helper()
	testutil.EventuallyNil(t, 60*time.Second, func() error {
		last := l.lastBad.Load()
		since := time.Since(time.Unix(0, last))
		if last != 0 && since < d {
			return fmt.Errorf("last 5xx or transport error %s ago", since.Round(time.Millisecond))
		}
		return nil
	}, fmt.Sprintf("no 5xx for %s", d))
	l.goOn(t, n)
	if last := l.lastBad.Load(); last != 0 {
		return time.Unix(0, last)
	}
	return time.Time{}
}

// goOn waits until n more requests were made: traffic flowed after the
// recovery, not only before the fault.
func (l *chaosLoad) goOn(t *testing.T, n int64) {
	t.Helper()
	from := l.total.Load()
	testutil.Eventually(t, 20*time.Second, func() bool { return l.total.Load()-from >= n }, fmt.Sprintf("%d more requests", n))
}

func (l *chaosLoad) stop() chaosCounts {
	l.stopOnce.Do(func() {
		close(l.stopCh)
		l.wg.Wait()
		l.firstMu.Lock()
		defer l.firstMu.Unlock()
		l.result = chaosCounts{total: l.total.Load(), ok: l.ok.Load(), limited: l.limited.Load(),
			other4xx: l.other4xx.Load(), fivexx: l.fivexx.Load(), transport: l.transport.Load(), first: l.first}
	})
	return l.result
}

// chaosTable renders the rows for the log.
func chaosTable(rows []chaosRow, full bool) string {
	var b strings.Builder
	mode := "short (make test)"
	if full {
		mode = "full (make chaos)"
	}
	fmt.Fprintf(&b, "chaos, %s:\n", mode)
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\trequests\tnon-2xx\t429\t5xx\ttransport err\tadmitted/max\trecovery\t")
	for _, r := range rows {
		adm := "-"
		if r.allowed >= 0 && r.admitted >= 0 && (r.allowed > 0 || r.admitted > 0) {
			adm = fmt.Sprintf("%d/%d", r.admitted, r.allowed)
		}
		rec := "-"
		if r.recovery > 0 {
			rec = r.recovery.Round(10 * time.Millisecond).String()
		}
		c := r.counts
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", r.scenario, c.total, c.total-c.ok, c.limited, c.fivexx, c.transport, adm, rec)
	}
	w.Flush()
	for _, r := range rows {
		if r.note != "" {
			fmt.Fprintf(&b, "  %s: %s\n", r.scenario, r.note)
		}
	}
	return b.String()
}
