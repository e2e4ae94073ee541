package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// hit records when a request was admitted.
type hits struct {
	wait  func()
	mu    sync.Mutex
	times []time.Time
	codes map[int]int
	worst time.Duration
}

func (h *hits) record(code int, at time.Time, took time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.codes[code]++
	if code == 200 {
		h.times = append(h.times, at)
	}
	h.worst = max(h.worst, took)
}

// hammer sends GETs to every url round robin from workers goroutines until
// stop is closed.
func hammer(urls []string, workers int, stop <-chan struct{}) *hits {
	h := &hits{codes: map[int]int{}}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				resp, err := client.Get(urls[i%len(urls)])
				code := 0
				if err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
				h.record(code, time.Now(), time.Since(start))
			}
		}()
	}
	h.wait = wg.Wait
	return h
}

// limitCase is one rate-limited route that checkClusterLimit drives.
type limitCase struct {
	Name string
	// Path is served by a route carrying Policy on every data plane.
	Path   string
	Policy config.RateLimit
	// Header is sent with every request (an API key for key: consumer).
	Header http.Header
	// OutOfReach: the limit is far above what the run can send, so every
	// request must pass (a fail_closed route must not refuse because the
	// data planes are busy); the accuracy check does not apply.
	OutOfReach bool
}

// limitResult is what checkClusterLimit saw of one case.
type limitResult struct {
	Name string
	// Admitted is the number of 200s; Max what the policy's algorithm
	// allows over the run (see policyMax).
	Admitted, Max int
	Codes         map[int]int
}

// clusterLimitResult is one run of checkClusterLimit.
type clusterLimitResult struct {
	Cases    []limitResult
	Duration time.Duration
	Requests int
	// Decisions by source, summed over the data planes' metrics for the
	// run: local ones were made without Redis.
	Redis, Local float64
}

// checkClusterLimit drives every case's route on every data plane at once,
// from workers client goroutines as fast as they go (saturating a small
// machine), for d; then checks that each case admitted at most 1.01 × its
// algorithm's maximum + 1 (issue 12) and at least half of it (the limit
// was reached), that nothing failed with a 5xx, and returns the counts.
// chaos tests reuse it around their faults.
func checkClusterLimit(t *testing.T, dps []*dataPlane, cases []limitCase, workers int, d time.Duration) clusterLimitResult {
	t.Helper()
	redisBefore, localBefore := decisionsBySource(dps)
	type target struct {
		url    string
		header http.Header
		c      int
	}
	var targets []target
	for _, dp := range dps {
		for i, c := range cases {
			targets = append(targets, target{dp.url + c.Path, c.Header, i})
		}
	}
	codes := make([]map[int]int, len(cases))
	for i := range codes {
		codes[i] = map[int]int{}
	}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		requests int
	)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	start := time.Now()
	stopAt := start.Add(d)
	for w := range workers {
		wg.Go(func() {
			mine := make([]map[int]int, len(cases))
			for i := range mine {
				mine[i] = map[int]int{}
			}
			n := 0
			for i := w; time.Now().Before(stopAt) && n < 1_000_000; i++ {
				tg := targets[i%len(targets)]
				req, _ := http.NewRequest(http.MethodGet, tg.url, nil)
				maps.Copy(req.Header, tg.header)
				code := 0
				if resp, err := client.Do(req); err == nil {
					code = resp.StatusCode
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mine[tg.c][code]++
				n++
			}
			mu.Lock()
			defer mu.Unlock()
			requests += n
			for i := range mine {
				for code, k := range mine[i] {
					codes[i][code] += k
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	client.CloseIdleConnections()
	redisAfter, localAfter := decisionsBySource(dps)
	res := clusterLimitResult{Duration: took, Requests: requests, Redis: redisAfter - redisBefore, Local: localAfter - localBefore}
	for i, c := range cases {
		r := limitResult{Name: c.Name, Admitted: codes[i][200], Max: policyMax(c.Policy, took), Codes: codes[i]}
		res.Cases = append(res.Cases, r)
		if c.OutOfReach {
			// A refusal here can only come from a local decision (an
			// exchange with Redis failed or missed its lag-aware
			// deadline: on two shared cores redis-server itself is
			// sometimes descheduled); on the old limiter the data planes'
			// own load refused most of them.
			refused := sumCodes(r.Codes) - r.Codes[200]
			t.Logf("%-28s admitted %4d, refused %d; %v", c.Name, r.Admitted, refused, r.Codes)
			if r.Admitted == 0 || refused*1000 > sumCodes(r.Codes) {
				t.Errorf("%s: %v, want every request admitted (at most 0.1%% refused)", c.Name, r.Codes)
			}
			continue
		}
		t.Logf("%-28s admitted %4d, algorithm's maximum over %v %4d (%.3f×); %v",
			c.Name, r.Admitted, took.Round(time.Millisecond), r.Max, float64(r.Admitted)/float64(r.Max), r.Codes)
		if float64(r.Admitted) > 1.01*float64(r.Max)+1 {
			t.Errorf("%s: %d admitted, want at most 1.01 × %d + 1", c.Name, r.Admitted, r.Max)
		}
		if r.Admitted < r.Max/2 {
			t.Errorf("%s: %d admitted of a maximum of %d: the limit was not reached, so the run says nothing", c.Name, r.Admitted, r.Max)
		}
		for code, n := range r.Codes {
			if code != 200 && code != 429 {
				t.Errorf("%s: %d answers with status %d", c.Name, n, code)
			}
		}
	}
	t.Logf("%d requests in %v (%.0f/s) over %d data planes; rate-limit decisions: %.0f in Redis, %.0f local (%.2f%%)",
		requests, took.Round(time.Millisecond), float64(requests)/took.Seconds(), len(dps), res.Redis, res.Local,
		100*res.Local/max(1, res.Redis+res.Local))
	return res
}

func sumCodes(codes map[int]int) int {
	n := 0
	for _, k := range codes {
		n += k
	}
	return n
}

// policyMax is the most a policy's algorithm admits in any run of length
// d: the window, Limit per started Window; GCRA, Burst+1 at once and one
// per interval since, with the burst NewPolicy adds (1% of the limit).
func policyMax(p config.RateLimit, d time.Duration) int {
	w := p.Window.Std()
	if p.EffectiveAlgorithm() == config.AlgorithmWindow {
		return p.Limit * int((d+w-1)/w)
	}
	burst := p.Burst + max(0, p.Limit/100-1)
	interval := (w + time.Duration(p.Limit) - 1) / time.Duration(p.Limit)
	return burst + 1 + int(d/interval)
}

// decisionsBySource sums portico_ratelimit_decisions_total over the data
// planes, by source.
func decisionsBySource(dps []*dataPlane) (redis, local float64) {
	for _, dp := range dps {
		_, metrics := get(dp.ops + "/metrics")
		for line := range strings.Lines(metrics) {
			if !strings.HasPrefix(line, "portico_ratelimit_decisions_total{") {
				continue
			}
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				continue
			}
			if strings.Contains(line, `source="local"`) {
				local += v
			} else {
				redis += v
			}
		}
	}
	return redis, local
}

// TestRateLimitCluster (issue 12 items 1 and 4): three data planes with
// DEFAULT flags, one Redis, every limited route driven at once to
// saturation. Each admits at most 1.01 × its algorithm's maximum + 1, for
// the default window, GCRA without a burst and the issue's
// {"limit":100,"window":"10s","burst":99}, keyed by route, ip and
// consumer. On the old limiter the 5ms budget expired under the data
// planes' own load and local buckets handed out burst and allowance again:
// 50-97% over.
func TestRateLimitCluster(t *testing.T) {
	ctx := context.Background()
	redis := testutil.StartRedis(t)
	up := startUpstream(t, "limited-svc")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	var dps []*dataPlane
	for i := range 3 {
		id := fmt.Sprintf("dp-%d", i)
		dps = append(dps, startDataPlane(t, id, cp.url, filepath.Join(dir, id), "--redis", redis.URL()))
	}
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Consumers().Put(ctx, "alice", config.Consumer{}); err != nil {
		t.Fatal(err)
	}
	_, key := createKey(t, cp.url, "alice")
	issue := config.RateLimit{Limit: 100, Window: config.Duration(10 * time.Second), Burst: 99}
	byKey := func(rl config.RateLimit, k string) config.RateLimit { rl.Key = k; return rl }
	cases := []limitCase{
		{Name: "window (default), route", Path: "/window", Policy: config.RateLimit{Limit: 100, Window: config.Duration(10 * time.Second)}},
		{Name: "gcra burst 0, route", Path: "/gcra0", Policy: config.RateLimit{Limit: 100, Window: config.Duration(10 * time.Second), Algorithm: config.AlgorithmGCRA}},
		{Name: "gcra burst 99, route", Path: "/burst-route", Policy: issue},
		{Name: "gcra burst 99, ip", Path: "/burst-ip", Policy: byKey(issue, "ip")},
		{Name: "gcra burst 99, consumer", Path: "/burst-consumer", Policy: byKey(issue, "consumer"), Header: http.Header{"X-Api-Key": {key}}},
		// Issue 12 item 2: fail_closed refused 58% at saturation.
		{Name: "fail_closed, out of reach", Path: "/closed", OutOfReach: true,
			Policy: config.RateLimit{Limit: config.MaxRateLimit, Window: config.Duration(time.Second), OnRedisError: config.FailClosed}},
	}
	for _, c := range cases {
		r := config.Route{Paths: []string{c.Path}, Service: "s", RateLimit: &c.Policy}
		if c.Policy.Key == "consumer" {
			r.Auth = &config.RouteAuth{APIKey: true}
		}
		if _, _, err := cp.admin.Routes().Put(ctx, strings.Trim(c.Path, "/"), r); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "probe", config.Route{Paths: []string{"/probe"}, Service: "s"}); err != nil {
		t.Fatal(err)
	}
	for _, dp := range dps {
		testutil.Eventually(t, 10*time.Second, func() bool {
			d, err := cp.admin.Dataplanes(ctx)
			code, _ := get(dp.url + "/probe")
			return err == nil && code == 200 && d.Converged
		}, dp.id+" serving the routes")
	}
	checkClusterLimit(t, dps, cases, 24, 4*time.Second)
}

// TestRateLimitSemantics (issue 12 items 3 and 4), default flags, two data
// planes on one Redis: without a burst "5 per minute" admits 5 sent at
// once, with RateLimit-Remaining counting down to 0 on the last; and a
// raised limit applies at once on every data plane (it kept answering 429
// with Retry-After: 43200 under the old policy's counter).
func TestRateLimitSemantics(t *testing.T) {
	ctx := context.Background()
	redis := testutil.StartRedis(t)
	up := startUpstream(t, "sem-svc")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dps := []*dataPlane{
		startDataPlane(t, "dp-0", cp.url, filepath.Join(dir, "dp-0"), "--redis", redis.URL()),
		startDataPlane(t, "dp-1", cp.url, filepath.Join(dir, "dp-1"), "--redis", redis.URL()),
	}
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	putLimit := func(name string, rl config.RateLimit) {
		t.Helper()
		if _, _, err := cp.admin.Routes().Put(ctx, name, config.Route{Paths: []string{"/" + name}, Service: "s", RateLimit: &rl}); err != nil {
			t.Fatal(err)
		}
	}
	putLimit("five", config.RateLimit{Limit: 5, Window: config.Duration(time.Minute)})
	putLimit("raised", config.RateLimit{Limit: 2, Window: config.Duration(24 * time.Hour)})
	for _, dp := range dps {
		testutil.Eventually(t, 10*time.Second, func() bool {
			d, err := cp.admin.Dataplanes(ctx)
			return err == nil && d.Converged
		}, dp.id+" converged")
	}
	type answer struct {
		code             int
		remaining, retry string
	}
	send := func(url string) answer {
		resp, err := httpc.Get(url)
		if err != nil {
			return answer{}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return answer{resp.StatusCode, resp.Header.Get("RateLimit-Remaining"), resp.Header.Get("Retry-After")}
	}

	// Five at once, spread over both data planes.
	answers := make(chan answer, 5)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() { answers <- send(dps[i%2].url + "/five") })
	}
	wg.Wait()
	close(answers)
	var remaining []string
	for a := range answers {
		if a.code != 200 {
			t.Fatalf("one of 5 simultaneous requests under 5/1m got %d", a.code)
		}
		remaining = append(remaining, a.remaining)
	}
	slices.Sort(remaining)
	if fmt.Sprint(remaining) != "[0 1 2 3 4]" {
		t.Fatalf("RateLimit-Remaining of the five: %v, want 4..0", remaining)
	}
	if a := send(dps[0].url + "/five"); a.code != 429 || a.remaining != "0" || a.retry == "" {
		t.Fatalf("sixth: %+v, want 429 with Remaining 0 and a Retry-After", a)
	}

	// The issue's change: 2 per 24h used up, then 1000/s with a burst of 100.
	for i := range 2 {
		if a := send(dps[i].url + "/raised"); a.code != 200 {
			t.Fatalf("request %d under 2/24h: %+v", i, a)
		}
	}
	if a := send(dps[0].url + "/raised"); a.code != 429 {
		t.Fatalf("third under 2/24h: %+v, want 429", a)
	}
	putLimit("raised", config.RateLimit{Limit: 1000, Window: config.Duration(time.Second), Burst: 100})
	for _, dp := range dps {
		testutil.Eventually(t, 10*time.Second, func() bool { return send(dp.url+"/raised").code == 200 }, dp.id+" admitting under the raised limit")
		for i := range 20 {
			if a := send(dp.url + "/raised"); a.code != 200 {
				t.Fatalf("%s: request %d under 1000/s burst 100: %+v", dp.id, i, a)
			}
		}
	}
}

// TestRedisLossUnderLoad: redis-server stops under load; no 5xx and no
// latency beyond the budget (fail_open falls back to a local limiter,
// fail_closed refuses with 429); when Redis returns, counting goes back to
// it on its own.
func TestRedisLossUnderLoad(t *testing.T) {
	ctx := context.Background()
	redis := testutil.StartRedis(t)
	up := startUpstream(t, "svc")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlane(t, "dp", cp.url, filepath.Join(dir, "dp"), "--redis", redis.URL(), "--redis-budget", "5ms")
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*config.Route{
		{Name: "open", Paths: []string{"/open"}, Service: "s", RateLimit: &config.RateLimit{Limit: 100000, Window: config.Duration(time.Second), Burst: 1000}},
		{Name: "closed", Paths: []string{"/closed"}, Service: "s", RateLimit: &config.RateLimit{Limit: 100000, Window: config.Duration(time.Second), Burst: 1000, OnRedisError: config.FailClosed}},
	} {
		if _, _, err := cp.admin.Routes().Put(ctx, r.Name, *r); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool { code, _ := get(dp.url + "/closed"); return code == 200 }, "routes live")

	run := func(d time.Duration) *hits {
		stop := make(chan struct{})
		h := hammer([]string{dp.url + "/open", dp.url + "/closed"}, 4, stop)
		time.Sleep(d)
		close(stop)
		h.wait()
		return h
	}
	before := run(time.Second)
	redis.Stop()
	during := run(2 * time.Second)
	redis.Start()
	testutil.Eventually(t, 15*time.Second, func() bool { code, _ := get(dp.url + "/closed"); return code == 200 }, "fail_closed route admitting again once Redis is back")
	t.Logf("before: %v worst %s; Redis down: %v worst %s", before.codes, before.worst, during.codes, during.worst)
	for code, n := range during.codes {
		if code >= 500 || code == 0 {
			t.Fatalf("%d responses with status %d while Redis was down", n, code)
		}
	}
	if during.codes[200] == 0 || during.codes[429] == 0 {
		t.Fatalf("want fail_open admitting and fail_closed refusing while Redis is down: %v", during.codes)
	}
	// Generous: the budget is 5ms; scheduling on a loaded 2-core machine
	// adds noise, but a data plane waiting on a dead Redis would take far
	// longer than this.
	if during.worst > before.worst+500*time.Millisecond {
		t.Fatalf("worst latency while Redis was down %s, before %s", during.worst, before.worst)
	}
}
