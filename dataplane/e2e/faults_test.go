package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// The fault matrix: each test injects one fault into real processes and
// checks what an operator relies on during and after it. Faults covered
// elsewhere (control plane SIGKILL with traffic flowing, data plane SIGTERM
// and reboot from state, Consul outage, an upstream instance killed, Redis
// killed) are not repeated here. Assertions are on counts, never on how
// fast this machine happens to be.

// --- metrics ----------------------------------------------------------------

// metricPoint is one series of a scraped metric family.
type metricPoint struct {
	labels map[string]string
	value  float64
}

// scrapeMetrics reads a Prometheus text endpoint, by family name.
func scrapeMetrics(url string) (map[string][]metricPoint, error) {
	resp, err := httpc.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	out := make(map[string][]metricPoint, len(fams))
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			p := metricPoint{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				p.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Gauge != nil:
				p.value = m.GetGauge().GetValue()
			case m.Counter != nil:
				p.value = m.GetCounter().GetValue()
			case m.Untyped != nil:
				p.value = m.GetUntyped().GetValue()
			}
			out[name] = append(out[name], p)
		}
	}
	return out, nil
}

// metricSum adds the series whose labels include every pair of match.
func metricSum(points []metricPoint, match map[string]string) float64 {
	sum := 0.0
	for _, p := range points {
		ok := true
		for k, v := range match {
			ok = ok && p.labels[k] == v
		}
		if ok {
			sum += p.value
		}
	}
	return sum
}

// procSample is a data plane's footprint at one moment, from its /metrics.
type procSample struct {
	at         time.Duration // since the start of the measurement
	goroutines float64
	rss        float64
}

func sampleProc(dp *dataPlane, since time.Time) (procSample, error) {
	m, err := scrapeMetrics(dp.ops + "/metrics")
	if err != nil {
		return procSample{}, err
	}
	g, r := m["go_goroutines"], m["process_resident_memory_bytes"]
	if len(g) != 1 || len(r) != 1 {
		return procSample{}, fmt.Errorf("%s /metrics: go_goroutines or process_resident_memory_bytes missing", dp.id)
	}
	return procSample{at: time.Since(since), goroutines: g[0].value, rss: r[0].value}, nil
}

// sampler scrapes a data plane every interval until stop, so that a
// footprint that only balloons mid-fault is seen too.
func sampler(dp *dataPlane, since time.Time, interval time.Duration, stop <-chan struct{}) (wait func() ([]procSample, error)) {
	var (
		samples []procSample
		errs    []error
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			s, err := sampleProc(dp, since)
			if err != nil {
				errs = append(errs, err)
			} else {
				samples = append(samples, s)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() ([]procSample, error) {
		<-done
		return samples, errors.Join(errs...)
	}
}

func maxOf(samples []procSample, f func(procSample) float64) float64 {
	m := 0.0
	for _, s := range samples {
		m = max(m, f(s))
	}
	return m
}

func goroutinesOf(s procSample) float64 { return s.goroutines }
func rssOf(s procSample) float64        { return s.rss }

const mib = 1 << 20

// --- load -------------------------------------------------------------------

// timedLoad counts answers by status (0 for transport errors) and how many
// took longer than slow, from workers goroutines sending req until stop.
type timedLoad struct {
	mu     sync.Mutex
	codes  map[int]int
	slow   int
	worst  time.Duration
	ends   []time.Time // when each answer arrived
	first  error
	total  atomic.Int64
	wait   sync.WaitGroup
	stopCh chan struct{}
	tr     *http.Transport
}

func startTimedLoad(workers int, slow time.Duration, req func(c *http.Client, i int) (*http.Response, error)) *timedLoad {
	l := &timedLoad{codes: map[int]int{}, stopCh: make(chan struct{}),
		tr: &http.Transport{MaxIdleConnsPerHost: workers}}
	c := &http.Client{Timeout: 10 * time.Second, Transport: l.tr}
	for w := range workers {
		l.wait.Add(1)
		go func() {
			defer l.wait.Done()
			for i := w; ; i += workers {
				select {
				case <-l.stopCh:
					return
				default:
				}
				start := time.Now()
				resp, err := req(c, i)
				code := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				end := time.Now()
				took := end.Sub(start)
				l.mu.Lock()
				l.codes[code]++
				l.ends = append(l.ends, end)
				l.worst = max(l.worst, took)
				if took > slow {
					l.slow++
				}
				if err != nil && l.first == nil {
					l.first = err
				}
				l.mu.Unlock()
				l.total.Add(1)
			}
		}()
	}
	return l
}

// stop ends the load and closes its idle connections, so that the data
// plane's per-connection goroutines can go away.
func (l *timedLoad) stop() {
	close(l.stopCh)
	l.wait.Wait()
	l.tr.CloseIdleConnections()
}

func getReq(url string) func(*http.Client, int) (*http.Response, error) {
	return func(c *http.Client, _ int) (*http.Response, error) { return c.Get(url) }
}

// --- admin helpers ------------------------------------------------------------

// auditAll reads the whole audit log, page by page.
func auditAll(ctx context.Context, admin *client.Client) ([]apiv1.AuditEntry, error) {
	var all []apiv1.AuditEntry
	after := int64(0)
	for {
		p, err := admin.Audit(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		if len(p.Entries) == 0 {
			return all, nil
		}
		all = append(all, p.Entries...)
		after = p.Next
	}
}

// checkAuditContiguous checks that the audit log holds exactly one entry for
// each revision 1..rev, in order: no write committed without its entry, no
// entry for a write that was lost.
func checkAuditContiguous(t *testing.T, entries []apiv1.AuditEntry, rev int64) {
	t.Helper()
	if int64(len(entries)) != rev {
		t.Errorf("audit log has %d entries for revision %d", len(entries), rev)
	}
	for i, e := range entries {
		if e.Revision != int64(i+1) {
			t.Fatalf("audit entry %d has revision %d, want %d (log not contiguous)", i, e.Revision, i+1)
		}
	}
}

// --- 1. data plane SIGKILL, reboot with the control plane down ------------------

// TestFaultDataPlaneKill9Reboot: a data plane killed with SIGKILL while it
// is applying a stream of configuration changes (so a state-file write may
// be cut short) boots from its state dir with the control plane down, and
// serves a revision that really was published.
func TestFaultDataPlaneKill9Reboot(t *testing.T) {
	ctx := context.Background()
	up := startUpstream(t, "kill9-svc")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlane(t, "dp", cp.url, filepath.Join(dir, "dp"), "--access-log", "off")
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "app", route("/app/*", "s")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return serves(dp.url+"/app/1", "kill9-svc") }, "route live")

	// Churn: every write is a new snapshot the data plane applies and saves.
	churnCtx, stopChurn := context.WithCancel(ctx)
	var lastRev atomic.Int64
	churnDone := make(chan error, 1)
	go func() {
		for i := 0; churnCtx.Err() == nil; i++ {
			r := route("/churn/*", "s")
			r.Timeout = config.Duration(time.Second + time.Duration(i)*time.Millisecond)
			_, resp, err := cp.admin.Routes().Put(churnCtx, "churn", r)
			if err != nil {
				if churnCtx.Err() != nil {
					err = nil
				}
				churnDone <- err
				return
			}
			lastRev.Store(resp.Revision)
		}
		churnDone <- nil
	}()
	defer stopChurn()
	var appliedBefore int64
	testutil.Eventually(t, 20*time.Second, func() bool {
		st := dp.status(t)
		rev, _ := st["applied_revision"].(float64)
		appliedBefore = int64(rev)
		return appliedBefore >= 30
	}, "the data plane applying the churn")
	dp.kill()
	stopChurn()
	if err := <-churnDone; err != nil {
		t.Fatalf("churn write: %v", err)
	}
	published := lastRev.Load()
	cp.kill()

	dp.restart("dataplane")
	waitHTTP(t, dp.ops+"/readyz", 200)
	st := dp.status(t)
	rev, _ := st["applied_revision"].(float64)
	t.Logf("SIGKILL at applied revision ≥ %d (latest published %d); rebooted from state at revision %v, source %v",
		appliedBefore, published, rev, st["source"])
	if st["source"] != "state" || st["controlplane_connected"] != false {
		t.Fatalf("rebooted data plane status = %v, want source state and no control plane", st)
	}
	// Revision 3 is the first with the churn route; anything past the last
	// published revision would be a snapshot nobody wrote.
	if rev < 3 || int64(rev) > published {
		t.Fatalf("rebooted at revision %v, want between 3 and %d", rev, published)
	}
	for i := range 50 {
		for _, path := range []string{"/app/", "/churn/"} {
			if !serves(fmt.Sprintf("%s%s%d", dp.url, path, i), "kill9-svc") {
				t.Fatalf("rebooted data plane does not serve %s (request %d)", path, i)
			}
		}
	}
}

// --- 2. control plane SIGKILL during admin writes --------------------------------

// TestFaultControlPlaneKill9DuringWrites: the control plane (bbolt store) is
// killed with SIGKILL while writers stream route creations. Restarted on the
// same file, the store opens, its revision agrees with the audit log and the
// export, and every write that was acknowledged is there; writes cut off
// mid-flight may or may not be.
func TestFaultControlPlaneKill9DuringWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc("http://127.0.0.1:1")); err != nil {
		t.Fatal(err)
	}
	// A few writers keep more than one write in flight at the moment of the
	// kill, which is where a store could acknowledge before committing.
	const writers, perWriter = 4, 5000
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
	admin, err := client.New(cp.url, adminToken, client.WithActor("e2e"), client.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		acked   = map[string]int64{} // route name → revision its PUT answered
		ackN    atomic.Int64
		failed  atomic.Int64
		wg      sync.WaitGroup
		firstMu sync.Once
		stopErr error
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perWriter {
				name := fmt.Sprintf("r%d-%d", w, j)
				_, resp, err := admin.Routes().Put(ctx, name, config.Route{Paths: []string{fmt.Sprintf("/w%d/%d", w, j)}, Service: "s"})
				if err != nil {
					failed.Add(1)
					firstMu.Do(func() { stopErr = err })
					return
				}
				mu.Lock()
				acked[name] = resp.Revision
				mu.Unlock()
				ackN.Add(1)
			}
		}()
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return ackN.Load() >= 150 }, "writes acknowledged")
	cp.kill()
	wg.Wait()
	if failed.Load() != writers {
		t.Fatalf("%d of %d writers saw the kill; the others ran out of writes first", failed.Load(), writers)
	}
	t.Logf("control plane killed after %d acknowledged writes; writers stopped on: %v", len(acked), stopErr)

	cp.restart("controlplane")
	waitHTTP(t, cp.url+"/readyz", 200)
	exp, err := cp.admin.ExportConfig(ctx)
	if err != nil {
		t.Fatalf("export after restart: %v", err)
	}
	present := map[string]bool{}
	for _, r := range exp.Config.Routes {
		present[r.Name] = true
	}
	var missing []string
	maxAcked := int64(0)
	for name, rev := range acked {
		maxAcked = max(maxAcked, rev)
		if !present[name] {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("%d acknowledged writes lost: %v", len(missing), missing[:min(len(missing), 10)])
	}
	if maxAcked > exp.Revision {
		t.Errorf("a write was acknowledged at revision %d, the store restarted at %d", maxAcked, exp.Revision)
	}

	entries, err := auditAll(ctx, cp.admin)
	if err != nil {
		t.Fatal(err)
	}
	checkAuditContiguous(t, entries, exp.Revision)
	// The audit log and the state agree on what exists.
	audited := map[string]bool{}
	for _, e := range entries {
		if e.Kind == config.KindRoute {
			audited[e.Name] = true
		}
	}
	if len(audited) != len(present) {
		t.Errorf("audit log created %d routes, the export holds %d", len(audited), len(present))
	}
	for name := range present {
		if !audited[name] {
			t.Errorf("route %s exists without an audit entry", name)
		}
	}
	// And writes go on from the recovered revision.
	_, resp, err := cp.admin.Routes().Put(ctx, "after-restart", config.Route{Paths: []string{"/after"}, Service: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Revision != exp.Revision+1 {
		t.Errorf("first write after the restart at revision %d, want %d", resp.Revision, exp.Revision+1)
	}
	t.Logf("restarted at revision %d with %d routes: %d acknowledged all present, %d unacknowledged but committed",
		exp.Revision, len(present), len(acked), len(present)-len(acked))
}

// --- 3. upstream that never answers in time ----------------------------------------

// TestFaultUpstreamNeverAnswers: 50 concurrent clients for 5s against a route
// whose upstream never answers within the route's 300ms timeout: every
// request gets 504, the data plane lets go of every upstream request, and its
// goroutines and memory stay bounded and return once the load is gone.
func TestFaultUpstreamNeverAnswers(t *testing.T) {
	ctx := context.Background()
	var upInFlight, upTotal atomic.Int64
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upTotal.Add(1)
		upInFlight.Add(1)
		defer upInFlight.Add(-1)
		select {
		case <-r.Context().Done():
		case <-release:
		case <-time.After(30 * time.Second):
		}
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) }) // before up.Close, which waits for handlers
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlane(t, "dp", cp.url, filepath.Join(dir, "dp"), "--access-log", "off")
	// Without this, the breaker and outlier detection would (rightly) turn
	// the timeouts into 503s: this test is about the timeout path.
	s := svc(up.URL)
	s.Retries = &config.Retries{Attempts: 1}
	s.OutlierDetection = &config.OutlierDetection{Disabled: true}
	s.CircuitBreaker = &config.CircuitBreaker{Disabled: true}
	if _, _, err := cp.admin.Services().Put(ctx, "slow", s); err != nil {
		t.Fatal(err)
	}
	r := route("/slow/*", "slow")
	r.Timeout = config.Duration(300 * time.Millisecond)
	if _, _, err := cp.admin.Routes().Put(ctx, "slow", r); err != nil {
		t.Fatal(err)
	}
	probe := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	testutil.Eventually(t, 10*time.Second, func() bool {
		resp, err := probe.Get(dp.url + "/slow/x")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusGatewayTimeout
	}, "route live and timing out")
	testutil.Eventually(t, 5*time.Second, func() bool { return upInFlight.Load() == 0 }, "probe released at the upstream")

	start := time.Now()
	base, err := sampleProc(dp, start)
	if err != nil {
		t.Fatal(err)
	}
	const clients = 50
	stopSampling := make(chan struct{})
	samples := sampler(dp, start, 250*time.Millisecond, stopSampling)
	load := startTimedLoad(clients, time.Second, getReq(dp.url+"/slow/x"))
	time.Sleep(5 * time.Second) // the load's duration
	load.stop()
	close(stopSampling)
	during, err := samples()
	if err != nil {
		t.Errorf("scraping under load: %v", err)
	}

	// The data plane must have cut every upstream request it gave up on.
	testutil.Eventually(t, 10*time.Second, func() bool { return upInFlight.Load() == 0 }, "no request left open at the upstream")
	var after procSample
	testutil.Eventually(t, 15*time.Second, func() bool {
		after, err = sampleProc(dp, start)
		return err == nil && after.goroutines <= base.goroutines+10
	}, fmt.Sprintf("goroutines back near the baseline of %.0f", base.goroutines))

	total := load.total.Load()
	t.Logf("%d requests by %d clients: %v, worst %s; upstream saw %d", total, clients, load.codes, load.worst.Round(time.Millisecond), upTotal.Load())
	t.Logf("goroutines: baseline %.0f, max under load %.0f, after %.0f", base.goroutines, maxOf(during, goroutinesOf), after.goroutines)
	t.Logf("RSS MiB: baseline %.1f, max under load %.1f, after %.1f (%d samples)", base.rss/mib, maxOf(during, rssOf)/mib, after.rss/mib, len(during))
	if load.codes[http.StatusGatewayTimeout] != int(total) || total < clients {
		t.Fatalf("want every one of %d requests answered 504: %v (first error %v)", total, load.codes, load.first)
	}
	// In flight at once: at most one client connection and one upstream
	// exchange per client, a handful of goroutines each. A leak of even one
	// goroutine per request would exceed this many times over.
	if g := maxOf(during, goroutinesOf); g > base.goroutines+8*clients {
		t.Errorf("goroutines reached %.0f under load from a baseline of %.0f", g, base.goroutines)
	}
	// Memory flattens once the load is steady: the second half of the load
	// may not climb well past the first half.
	if len(during) < 8 {
		t.Fatalf("only %d samples under load", len(during))
	}
	half := len(during) / 2
	first, second := maxOf(during[:half], rssOf), maxOf(during[half:], rssOf)
	if second > first*1.25+16*mib {
		t.Errorf("RSS still climbing under steady load: %.1f MiB in the first half, %.1f MiB in the second", first/mib, second/mib)
	}
	if after.rss > maxOf(during, rssOf)+16*mib {
		t.Errorf("RSS grew after the load ended: %.1f MiB, max under load %.1f MiB", after.rss/mib, maxOf(during, rssOf)/mib)
	}
}

// --- 4. concurrent conditional writers ---------------------------------------

// TestFaultConcurrentConditionalWrites: 200 writers do GET → modify → PUT
// with If-Match on four shared objects (two services, two routes) through
// the real control plane. Each adds its own tag to a list; losers of a race
// get 412 and try again, a few times. In the end each object's version is
// 1 + its successful writes and its list holds exactly the successful tags:
// no write was silently overwritten and no refused write landed.
func TestFaultConcurrentConditionalWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	const seedTarget, seedHost = "http://127.0.0.1:1/seed", "seed.example.com"
	for i := range 2 {
		if _, _, err := cp.admin.Services().Put(ctx, fmt.Sprintf("svc-%d", i), svc(seedTarget)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		r := route(fmt.Sprintf("/c%d/*", i), "svc-0")
		r.Hosts = []string{seedHost}
		if _, _, err := cp.admin.Routes().Put(ctx, fmt.Sprintf("route-%d", i), r); err != nil {
			t.Fatal(err)
		}
	}
	startRev, err := cp.admin.ExportConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// 50 writers per object keep each route within its 64 hosts.
	const writers, attempts = 200, 10
	objects := []string{"svc-0", "svc-1", "route-0", "route-1"}
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
	admin, err := client.New(cp.url, adminToken, client.WithActor("e2e"), client.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		won       = map[string][]string{} // object → tags of its successful writes
		conflicts atomic.Int64
		gaveUp    atomic.Int64
		errs      = make(chan error, writers)
		wg        sync.WaitGroup
		ready     = make(chan struct{})
	)
	write := func(obj, tag string) (int, error) {
		if strings.HasPrefix(obj, "svc-") {
			cur, err := admin.Services().Get(ctx, obj)
			if err != nil {
				return 0, err
			}
			cur.Targets = append(cur.Targets, config.Target{URL: "http://127.0.0.1:1/" + tag})
			_, _, err = admin.Services().Put(ctx, obj, *cur, client.IfMatch(cur.Version))
			return client.StatusOf(err), err
		}
		cur, err := admin.Routes().Get(ctx, obj)
		if err != nil {
			return 0, err
		}
		cur.Hosts = append(cur.Hosts, tag+".example.com")
		_, _, err = admin.Routes().Put(ctx, obj, *cur, client.IfMatch(cur.Version))
		return client.StatusOf(err), err
	}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			obj, tag := objects[w%len(objects)], fmt.Sprintf("w%d", w)
			<-ready // all at once, for the most contention
			for range attempts {
				status, err := write(obj, tag)
				switch {
				case err == nil:
					mu.Lock()
					won[obj] = append(won[obj], tag)
					mu.Unlock()
					return
				case status == http.StatusPreconditionFailed:
					conflicts.Add(1)
				default:
					errs <- fmt.Errorf("writer %s on %s: %w", tag, obj, err)
					return
				}
			}
			gaveUp.Add(1)
		}()
	}
	close(ready)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	successes := 0
	for _, tags := range won {
		successes += len(tags)
	}
	t.Logf("%d writers × up to %d attempts: %d successful writes, %d × 412, %d gave up; per object: svc-0 %d, svc-1 %d, route-0 %d, route-1 %d",
		writers, attempts, successes, conflicts.Load(), gaveUp.Load(), len(won["svc-0"]), len(won["svc-1"]), len(won["route-0"]), len(won["route-1"]))
	if successes == 0 || conflicts.Load() == 0 {
		t.Fatalf("%d successes, %d conflicts: the writers did not contend", successes, conflicts.Load())
	}
	if successes+int(gaveUp.Load()) != writers && !t.Failed() {
		t.Fatalf("%d successes + %d gave up != %d writers", successes, gaveUp.Load(), writers)
	}

	for _, obj := range objects {
		var version int64
		var got []string
		if strings.HasPrefix(obj, "svc-") {
			s, err := cp.admin.Services().Get(ctx, obj)
			if err != nil {
				t.Fatal(err)
			}
			version = s.Version
			for _, tg := range s.Targets {
				got = append(got, strings.TrimPrefix(tg.URL, "http://127.0.0.1:1/"))
			}
		} else {
			r, err := cp.admin.Routes().Get(ctx, obj)
			if err != nil {
				t.Fatal(err)
			}
			version = r.Version
			for _, h := range r.Hosts {
				got = append(got, strings.TrimSuffix(h, ".example.com"))
			}
		}
		want := append([]string{"seed"}, won[obj]...)
		slices.Sort(want)
		slices.Sort(got)
		if version != int64(1+len(won[obj])) {
			t.Errorf("%s: version %d after %d successful writes, want %d", obj, version, len(won[obj]), 1+len(won[obj]))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s holds %v, want exactly the seed and the successful writers %v", obj, got, want)
		}
	}
	// One revision and one audit entry per successful write, none for a
	// refused one.
	exp, err := cp.admin.ExportConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if exp.Revision != startRev.Revision+int64(successes) {
		t.Errorf("revision went from %d to %d over %d successful writes", startRev.Revision, exp.Revision, successes)
	}
	entries, err := auditAll(ctx, cp.admin)
	if err != nil {
		t.Fatal(err)
	}
	checkAuditContiguous(t, entries, exp.Revision)
}

// --- 5. Redis slow --------------------------------------------------------------

// TestFaultRedisPausedUnderLoad: Redis stays up but holds every command for
// 3s (CLIENT PAUSE) while traffic flows through a rate-limited fail_open
// route. The data plane falls back within its budget: no 5xx, answers keep
// coming through the pause, and no request waits out the pause.
func TestFaultRedisPausedUnderLoad(t *testing.T) {
	ctx := context.Background()
	redis := testutil.StartRedis(t)
	up := startUpstream(t, "rl-svc")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlane(t, "dp", cp.url, filepath.Join(dir, "dp"), "--redis", redis.URL(), "--access-log", "off")
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	// A limit far above what the load sends: every answer should be 200,
	// from Redis's count before the pause and the local fallback during it.
	if _, _, err := cp.admin.Routes().Put(ctx, "limited", config.Route{Paths: []string{"/limited"}, Service: "s",
		RateLimit: &config.RateLimit{Limit: 1_000_000, Window: config.Duration(time.Second), Burst: 10_000}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { code, _ := get(dp.url + "/limited"); return code == 200 }, "route live")

	const pause = 3 * time.Second
	decisions := func(source string) float64 {
		m, err := scrapeMetrics(dp.ops + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return metricSum(m["portico_ratelimit_decisions_total"], map[string]string{"source": source})
	}
	load := startTimedLoad(8, pause/2, getReq(dp.url+"/limited"))
	defer func() {
		select {
		case <-load.stopCh:
		default:
			load.stop()
		}
	}()
	testutil.Eventually(t, 10*time.Second, func() bool { return load.total.Load() >= 200 }, "load flowing")
	localBefore := decisions("local")
	pausedAt := time.Now()
	redis.Pause(pause)
	time.Sleep(pause + time.Second) // the load's duration: the pause and a little after
	load.stop()
	localDuring := decisions("local") - localBefore

	// Answers per half second of the pause: a stall shows as an empty slot.
	slots := make([]int, int(pause/(500*time.Millisecond)))
	for _, at := range load.ends {
		if d := at.Sub(pausedAt); d >= 0 && d < pause {
			slots[d/(500*time.Millisecond)]++
		}
	}
	t.Logf("%d requests: %v; slower than %s: %d, worst %s; answers per 500ms of the pause: %v; local decisions during the pause: %.0f",
		load.total.Load(), load.codes, pause/2, load.slow, load.worst.Round(time.Millisecond), slots, localDuring)
	if localDuring == 0 {
		t.Fatal("no rate-limit decision fell back to the local limiter: the pause did not reach the data plane, so this run shows nothing")
	}
	for code, n := range load.codes {
		if code != http.StatusOK {
			t.Errorf("%d answers with status %d (0: transport error, first %v)", n, code, load.first)
		}
	}
	for i, n := range slots {
		if n == 0 {
			t.Errorf("no answer at all in %s–%s of the pause", time.Duration(i)*500*time.Millisecond, time.Duration(i+1)*500*time.Millisecond)
		}
	}
	if load.slow != 0 {
		t.Errorf("%d requests took longer than %s: held for the Redis pause", load.slow, pause/2)
	}
}
