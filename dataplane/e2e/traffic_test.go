package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

func getHdr(t *testing.T, url string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestCacheAcrossDataPlanes: two data planes share one Redis cache. A
// response fetched through one (for one Host) is a hit on the other; Vary keeps variants
// apart; concurrent misses on both make one upstream call; a purge through
// the admin API empties the cache everywhere.
func TestCacheAcrossDataPlanes(t *testing.T) {
	ctx := context.Background()
	redis := testutil.StartRedis(t)
	// Clients reach the data planes through a load balancer, so every
	// request names its host, not a data plane's port: the cache key keeps
	// a Host's port (shop.example:8443 may be another site).
	getHdr := func(t *testing.T, url string, hdr ...string) (int, http.Header, string) {
		t.Helper()
		return getHdr(t, url, append([]string{"Host", "shop.example"}, hdr...)...)
	}
	var calls atomic.Int64
	release := make(chan struct{})
	var releaseOnce sync.Once
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.URL.Query().Get("slow") != "" {
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "call %d path %s lang %s", n, r.URL.Path, r.Header.Get("Accept-Language"))
	}))
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }); up.Close() })
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	a := startDataPlane(t, "dp-a", cp.url, filepath.Join(dir, "a"), "--redis", redis.URL())
	b := startDataPlane(t, "dp-b", cp.url, filepath.Join(dir, "b"), "--redis", redis.URL())
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up.URL)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "items", config.Route{Paths: []string{"/items/{id}"}, Service: "s",
		Cache: &config.RouteCache{TTL: config.Duration(time.Minute), Store: config.CacheRedis}}); err != nil {
		t.Fatal(err)
	}
	for _, dp := range []*dataPlane{a, b} {
		testutil.Eventually(t, 10*time.Second, func() bool {
			code, _ := get(dp.url + "/items/probe")
			return code == 200
		}, dp.id+" serving the route")
	}

	status, h, body := getHdr(t, a.url+"/items/1", "Accept-Language", "en")
	if status != 200 || h.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("first: %d %s %q", status, h.Get("X-Cache-Status"), body)
	}
	status, h, body2 := getHdr(t, b.url+"/items/1", "Accept-Language", "en")
	if status != 200 || h.Get("X-Cache-Status") != "HIT" || body2 != body || h.Get("Age") == "" {
		t.Fatalf("other data plane: %d %s age=%q %q (want a HIT of %q)", status, h.Get("X-Cache-Status"), h.Get("Age"), body2, body)
	}
	_, h, body3 := getHdr(t, b.url+"/items/1", "Accept-Language", "fr")
	if h.Get("X-Cache-Status") != "MISS" || !strings.Contains(body3, "lang fr") {
		t.Fatalf("another language is another variant: %s %q", h.Get("X-Cache-Status"), body3)
	}

	// Stampede: 20 concurrent misses for one key spread over both data
	// planes while the upstream holds the first answer: one upstream call.
	before := calls.Load()
	var wg sync.WaitGroup
	statuses := make([]string, 20)
	for i := range statuses {
		dp := a
		if i%2 == 1 {
			dp = b
		}
		wg.Go(func() {
			_, h, _ := getHdr(t, dp.url+"/items/hot?slow=1")
			statuses[i] = h.Get("X-Cache-Status")
		})
	}
	// Release the held answer only once all 20 requests are inside the two
	// data planes, waiting behind the one fetch.
	testutil.Eventually(t, 10*time.Second, func() bool {
		inFlight := 0.0
		for _, dp := range []*dataPlane{a, b} {
			m, err := scrapeMetrics(dp.ops + "/metrics")
			if err != nil {
				return false
			}
			inFlight += metricSum(m["portico_requests_in_flight"], nil)
		}
		return inFlight == float64(len(statuses)) && calls.Load() > before
	}, "all 20 requests in flight, the first fetch at the upstream")
	releaseOnce.Do(func() { close(release) })
	wg.Wait()
	if got := calls.Load() - before; got != 1 {
		t.Errorf("20 concurrent misses on two data planes made %d upstream calls, want 1 (statuses %v)", got, statuses)
	}

	// Purge: the next request on either data plane goes upstream again.
	if _, _, err := cp.admin.PurgeRouteCache(ctx, "items"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, h, _ := getHdr(t, a.url+"/items/1", "Accept-Language", "en")
		return h.Get("X-Cache-Status") == "MISS"
	}, "a miss on dp-a after the purge")
	_, h, _ = getHdr(t, b.url+"/items/1", "Accept-Language", "en")
	if h.Get("X-Cache-Status") != "HIT" {
		t.Errorf("dp-b after dp-a refilled the purged entry: %s, want HIT", h.Get("X-Cache-Status"))
	}
}

// TestAggregationThroughDataPlane: one request fans out to three real
// upstream processes' worth of listeners; one is slow, then one is down.
func TestAggregationThroughDataPlane(t *testing.T) {
	ctx := context.Background()
	jsonServer := func(body string, delay time.Duration) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if delay > 0 {
				select {
				case <-time.After(delay):
				case <-r.Context().Done():
					return
				}
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, strings.ReplaceAll(body, "$URI", r.URL.RequestURI()))
		}))
		t.Cleanup(s.Close)
		return s
	}
	users := jsonServer(`{"uri":"$URI"}`, 0)
	orders := jsonServer(`["$URI"]`, 0)
	slow := jsonServer(`{"late":true}`, 5*time.Second)
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlane(t, "dp", cp.url, filepath.Join(dir, "dp"))
	for name, u := range map[string]string{"users": users.URL, "orders": orders.URL, "slow": slow.URL} {
		if _, _, err := cp.admin.Services().Put(ctx, name, svc(u)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "profile", config.Route{Paths: []string{"/profile/{id}"},
		Aggregate: []config.AggregateBackend{
			{Service: "users", Path: "/users/{id}", Key: "user"},
			{Service: "orders", Path: "/orders?user={id}&page={page}", Key: "orders"},
			{Service: "slow", Path: "/x", Key: "slow", Timeout: config.Duration(300 * time.Millisecond)},
		}}); err != nil {
		t.Fatal(err)
	}
	waitHTTP(t, dp.url+"/profile/7", 200)
	start := time.Now()
	status, h, body := getHdr(t, dp.url+"/profile/7?page=2")
	took := time.Since(start)
	var got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil {
		t.Fatalf("%d %v %s", status, err, body)
	}
	if string(got["user"]) != `{"uri":"/users/7"}` || string(got["orders"]) != `["/orders?user=7&page=2"]` {
		t.Errorf("merged: %s", body)
	}
	if h.Get("X-Portico-Completed") != "false" || !strings.Contains(string(got["errors"]), `"service":"slow"`) {
		t.Errorf("the slow backend must be reported: completed=%q %s", h.Get("X-Portico-Completed"), body)
	}
	if took > 4*time.Second {
		t.Errorf("the answer waited for the slow backend (%s): its timeout is 300ms", took)
	}
}
