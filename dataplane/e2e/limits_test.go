package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
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

// TestRateLimitCluster: three data planes, one Redis, concurrent load over
// all three: a limit of L per window admits at least L and at most 1.01·L
// in a window. Admissions are timed where they land, at the upstream (a
// listener in this process), so client-side scheduling noise does not blur
// the window's edges.
func TestRateLimitCluster(t *testing.T) {
	ctx := context.Background()
	redis := testutil.StartRedis(t)
	var mu sync.Mutex
	var arrivals []time.Time
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/limited" {
			mu.Lock()
			arrivals = append(arrivals, time.Now())
			mu.Unlock()
		}
	}))
	t.Cleanup(up.Close)
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	var urls []string
	var dps []*dataPlane
	for i := range 3 {
		id := fmt.Sprintf("dp-%d", i)
		// A generous budget: this test measures the accuracy of counting in
		// Redis, not the fallback (TestRedisLossUnderLoad does that).
		dp := startDataPlane(t, id, cp.url, filepath.Join(dir, id), "--redis", redis.URL(), "--redis-budget", "500ms")
		dps = append(dps, dp)
		urls = append(urls, dp.url+"/limited")
	}
	const limit, window = 1000, 5 * time.Second
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up.URL)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "probe", config.Route{Paths: []string{"/probe"}, Service: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "limited", config.Route{Paths: []string{"/limited"}, Service: "s",
		RateLimit: &config.RateLimit{Limit: limit, Window: config.Duration(window)}}); err != nil {
		t.Fatal(err)
	}
	for _, dp := range dps {
		testutil.Eventually(t, 10*time.Second, func() bool {
			d, err := cp.admin.Dataplanes(ctx)
			code, _ := get(dp.url + "/probe")
			return err == nil && code == 200 && d.Converged
		}, dp.id+" serving the routes")
	}
	// Six workers keep every data plane busy (thousands of requests a
	// second against 200 admitted) without starving the machine.
	stop := make(chan struct{})
	h := hammer(urls, 6, stop)
	time.Sleep(2*window + window/2)
	close(stop)
	h.wait()
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) == 0 {
		t.Fatalf("nothing admitted: %v", h.codes)
	}
	first := arrivals[0]
	for _, at := range arrivals {
		if at.Before(first) {
			first = at
		}
	}
	for _, dp := range dps {
		_, metrics := get(dp.ops + "/metrics")
		for _, line := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(line, "portico_ratelimit_decisions_total{") && strings.Contains(line, `source="local"`) && !strings.HasSuffix(line, " 0") {
				t.Fatalf("%s decided locally (%s): Redis did not answer within the budget, so this run says nothing about cluster accuracy", dp.id, line)
			}
		}
	}
	count := func(from time.Time, d time.Duration) int {
		n := 0
		for _, at := range arrivals {
			if !at.Before(from) && at.Before(from.Add(d)) {
				n++
			}
		}
		return n
	}
	// Timing at the upstream adds a few milliseconds of noise at a window's
	// edges (a slot is 5ms); measured over two windows that noise counts
	// half per window, while an over-admitting limiter would show in full.
	one, two := count(first, window), count(first, 2*window)
	perWindow := float64(two) / 2
	t.Logf("limit %d per %s over 3 data planes: %d admitted in the first window, %d in the first two (%.1f per window); client saw %v",
		limit, window, one, two, perWindow, h.codes)
	if perWindow < limit || perWindow > limit*1.01 {
		t.Fatalf("%.1f admitted per window, want between %d and %.0f", perWindow, limit, limit*1.01)
	}
	if h.codes[429] == 0 || h.codes[0] > 0 || h.codes[200] != len(arrivals) {
		t.Fatalf("codes %v with %d upstream arrivals: want refusals, no transport errors, and every 200 at the upstream", h.codes, len(arrivals))
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
	for _, r := range []config.Route{
		{Name: "open", Paths: []string{"/open"}, Service: "s", RateLimit: &config.RateLimit{Limit: 100000, Window: config.Duration(time.Second), Burst: 1000}},
		{Name: "closed", Paths: []string{"/closed"}, Service: "s", RateLimit: &config.RateLimit{Limit: 100000, Window: config.Duration(time.Second), Burst: 1000, OnRedisError: config.FailClosed}},
	} {
		if _, _, err := cp.admin.Routes().Put(ctx, r.Name, r); err != nil {
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
