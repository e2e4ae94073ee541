//go:build soak

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// The soak runs minutes, not seconds, so it is behind the soak build tag:
// `make soak` runs it, `make test` never does.

// soakDuration is PORTICO_SOAK_DURATION, 10 minutes by default.
func soakDuration(t *testing.T) time.Duration {
	raw := os.Getenv("PORTICO_SOAK_DURATION")
	if raw == "" {
		return 10 * time.Minute
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 30*time.Second {
		t.Fatalf("PORTICO_SOAK_DURATION=%q: want a duration of at least 30s", raw)
	}
	return d
}

// soakKind is one sort of request in the mix and the answers it may get.
type soakKind struct {
	name string
	req  func(dp string, j int) (*http.Request, error)
	ok   map[int]bool
}

// TestSoak: mixed traffic through two data planes (GET and POST, API-key
// auth accepted and refused, a cluster-wide rate limit, an upstream failing
// one request in 20) while a route is added, updated and deleted every
// second. Both data planes' goroutines and RSS are sampled throughout; a
// leak shows as the last third of the run sitting above the first.
func TestSoak(t *testing.T) {
	ctx := context.Background()
	duration := soakDuration(t)
	interval := min(10*time.Second, duration/6)

	redis := testutil.StartRedis(t)
	echo := startUpstream(t, "soak-svc")
	var flakyN atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if flakyN.Add(1)%20 == 0 {
			http.Error(w, "flaky", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}))
	t.Cleanup(flaky.Close)
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	var dps []*dataPlane
	for _, id := range []string{"dp-1", "dp-2"} {
		dps = append(dps, startDataPlane(t, id, cp.url, filepath.Join(dir, id), "--redis", redis.URL(), "--access-log", "off"))
	}
	for name, s := range map[string]config.Service{"echo": svc(echo), "flaky": svc(flaky.URL)} {
		if _, _, err := cp.admin.Services().Put(ctx, name, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := cp.admin.Consumers().Put(ctx, "soak-user", config.Consumer{}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*config.Route{
		{Name: "echo", Paths: []string{"/echo/*"}, Service: "echo", Methods: []string{"GET", "POST"}},
		{Name: "keyed", Paths: []string{"/keyed/*"}, Service: "echo", Auth: &config.RouteAuth{APIKey: true}},
		{Name: "limited", Paths: []string{"/limited"}, Service: "echo", RateLimit: &config.RateLimit{Limit: 20, Window: config.Duration(time.Second)}},
		{Name: "flaky", Paths: []string{"/flaky/*"}, Service: "flaky"},
	} {
		if _, _, err := cp.admin.Routes().Put(ctx, r.Name, r); err != nil {
			t.Fatal(err)
		}
	}
	_, key := createKey(t, cp.url, "soak-user")
	for _, dp := range dps {
		testutil.Eventually(t, 15*time.Second, func() bool {
			code, _ := get(dp.url + "/flaky/1")
			return withKey(dp.url+"/keyed/1", key) == 200 && (code == 200 || code == 500)
		}, dp.id+" serving every route")
	}

	codes := func(c ...int) map[int]bool {
		m := map[int]bool{}
		for _, x := range c {
			m[x] = true
		}
		return m
	}
	kinds := []soakKind{
		{"GET /echo", func(dp string, j int) (*http.Request, error) {
			return http.NewRequest("GET", fmt.Sprintf("%s/echo/%d", dp, j), nil)
		}, codes(200)},
		{"POST /echo", func(dp string, j int) (*http.Request, error) {
			return http.NewRequest("POST", fmt.Sprintf("%s/echo/%d", dp, j), strings.NewReader(`{"n":`+fmt.Sprint(j)+`}`))
		}, codes(200)},
		{"GET /keyed with key", func(dp string, j int) (*http.Request, error) {
			req, err := http.NewRequest("GET", fmt.Sprintf("%s/keyed/%d", dp, j), nil)
			if err == nil {
				req.Header.Set("X-API-Key", key)
			}
			return req, err
		}, codes(200)},
		{"GET /keyed without key", func(dp string, j int) (*http.Request, error) {
			return http.NewRequest("GET", fmt.Sprintf("%s/keyed/%d", dp, j), nil)
		}, codes(401)},
		{"GET /limited", func(dp string, _ int) (*http.Request, error) {
			return http.NewRequest("GET", dp+"/limited", nil)
		}, codes(200, 429)},
		{"GET /flaky", func(dp string, j int) (*http.Request, error) {
			return http.NewRequest("GET", fmt.Sprintf("%s/flaky/%d", dp, j), nil)
		}, codes(200, 500)},
	}

	start := time.Now()
	stop := make(chan struct{})
	var samplers []func() ([]procSample, error)
	for _, dp := range dps {
		samplers = append(samplers, sampler(dp, start, interval, stop))
	}

	// Load: six workers, each cycling through the mix and both data planes,
	// paced so that the two shared cores keep room for everything else.
	const workers = 6
	var (
		mu         sync.Mutex
		seen       = make([]map[int]int, len(kinds)) // kind → status → count
		unexpected atomic.Int64
		firstBad   atomic.Pointer[string]
		wg         sync.WaitGroup
	)
	for i := range seen {
		seen[i] = map[int]int{}
	}
	lc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := w; ; j++ {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				k, dp := j%len(kinds), dps[(j/len(kinds)+w)%len(dps)]
				code := 0
				req, err := kinds[k].req(dp.url, j)
				if err == nil {
					var resp *http.Response
					if resp, err = lc.Do(req); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						code = resp.StatusCode
					}
				}
				mu.Lock()
				seen[k][code]++
				mu.Unlock()
				if !kinds[k].ok[code] {
					unexpected.Add(1)
					msg := fmt.Sprintf("%s on %s: %d (%v)", kinds[k].name, dp.id, code, err)
					firstBad.CompareAndSwap(nil, &msg)
				}
			}
		}()
	}

	// Churn: every second a route is created, the previous one updated and
	// the one before deleted, so snapshots keep flowing and routers keep
	// being rebuilt under the traffic.
	var churnOps, churnErrs atomic.Int64
	var firstChurnErr atomic.Pointer[error]
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ops := []func() error{func() error {
				_, _, err := cp.admin.Routes().Put(ctx, fmt.Sprintf("churn-%d", i), route(fmt.Sprintf("/churn/%d/*", i), "echo"))
				return err
			}}
			if i >= 1 {
				ops = append(ops, func() error {
					r := route(fmt.Sprintf("/churn/%d/*", i-1), "echo")
					r.Timeout = config.Duration(time.Duration(i) * time.Second)
					_, _, err := cp.admin.Routes().Put(ctx, fmt.Sprintf("churn-%d", i-1), r)
					return err
				})
			}
			if i >= 2 {
				ops = append(ops, func() error {
					_, err := cp.admin.Routes().Delete(ctx, fmt.Sprintf("churn-%d", i-2))
					return err
				})
			}
			for _, op := range ops {
				churnOps.Add(1)
				if err := op(); err != nil {
					churnErrs.Add(1)
					firstChurnErr.CompareAndSwap(nil, &err)
				}
			}
		}
	}()

	t.Logf("soaking for %s, sampling every %s", duration, interval)
	time.Sleep(duration) // the soak's duration
	close(stop)
	wg.Wait()

	all := make([][]procSample, len(dps))
	for i, wait := range samplers {
		s, err := wait()
		if err != nil {
			t.Errorf("%s: scraping: %v", dps[i].id, err)
		}
		all[i] = s
	}
	rows := len(all[0])
	for _, s := range all[1:] {
		rows = min(rows, len(s))
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "%8s", "elapsed")
	for _, dp := range dps {
		fmt.Fprintf(&tbl, " | %s goroutines  %s RSS MiB", dp.id, dp.id)
	}
	for r := range rows {
		fmt.Fprintf(&tbl, "\n%8s", all[0][r].at.Round(time.Second))
		for i := range dps {
			fmt.Fprintf(&tbl, " | %15.0f  %12.1f", all[i][r].goroutines, all[i][r].rss/mib)
		}
	}
	t.Logf("samples:\n%s", tbl.String())
	mu.Lock()
	for k, kind := range kinds {
		t.Logf("%-24s %v", kind.name, seen[k])
	}
	mu.Unlock()
	t.Logf("config churn: %d admin writes, %d failed; %d requests answered something unexpected", churnOps.Load(), churnErrs.Load(), unexpected.Load())

	if n := unexpected.Load(); n > 0 {
		t.Errorf("%d requests answered outside what their route allows; first: %s", n, *firstBad.Load())
	}
	if n := churnErrs.Load(); n > 0 {
		t.Errorf("%d of %d churn writes failed; first: %v", n, churnOps.Load(), *firstChurnErr.Load())
	}
	for k, kind := range kinds {
		if kind.ok[429] && (seen[k][200] == 0 || seen[k][429] == 0) {
			t.Errorf("%s never admitted or never refused: %v", kind.name, seen[k])
		}
	}
	if rows < 6 {
		t.Fatalf("only %d samples per data plane", rows)
	}
	// Flat: the last third may not climb well above the first, whose max
	// already includes warm-up (connection pools, heap growth to the
	// steady-state GC target).
	third := rows / 3
	for i, dp := range dps {
		s := all[i][:rows]
		for _, m := range []struct {
			name        string
			of          func(procSample) float64
			ratio, plus float64
			unit        float64
		}{
			{"goroutines", goroutinesOf, 1.2, 10, 1},
			{"RSS MiB", rssOf, 1.25, 16 * mib, mib},
		} {
			first, last := maxOf(s[:third], m.of), maxOf(s[rows-third:], m.of)
			t.Logf("%s %s: first third max %.1f, last third max %.1f", dp.id, m.name, first/m.unit, last/m.unit)
			if last > first*m.ratio+m.plus {
				t.Errorf("%s %s grew: first third max %.1f, last third max %.1f", dp.id, m.name, first/m.unit, last/m.unit)
			}
		}
	}
}
