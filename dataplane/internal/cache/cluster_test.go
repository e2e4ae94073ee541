package cache

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// logBuffer collects log lines, for tests that count what is logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func redisPolicy() *Policy {
	return Compile("r1", 1, &config.RouteCache{TTL: config.Duration(time.Minute), Store: config.CacheRedis})
}

// plane is a data plane's cache on a shared Redis: its own memory, clock
// shared with the other planes, and its own Redis client.
func plane(t *testing.T, srv *testutil.Redis, clk *testutil.Clock, up *upstream, o Options) *env {
	t.Helper()
	o.Redis = NewRedis(newRedisClient(t, srv.Addr), time.Second)
	o.Now = clk.Now
	e := newEnv(t, o)
	e.clock, e.up = clk, up
	return e
}

func TestTwoDataPlanesShareRedis(t *testing.T) {
	srv := testutil.StartRedis(t)
	clk, up := newClock(), &upstream{}
	a, b := plane(t, srv, clk, up, Options{}), plane(t, srv, clk, up, Options{})
	p := redisPolicy()
	a.expect(a.get(p, "/x"), "MISS", "call 1", 1)
	clk.Add(5 * time.Second)
	res := b.get(p, "/x")
	b.expect(res, "HIT", "call 1", 1)
	if got := res.header.Get("Age"); got != "5" {
		t.Errorf("Age = %q, want 5", got)
	}
	if a.mem.Len() != 0 || b.mem.Len() != 0 {
		t.Error("a redis route wrote to the memory store")
	}
	// Vary records and variants are shared too.
	up.respond = func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Vary", "Accept-Language")
		_, _ = w.Write([]byte(r.Header.Get("Accept-Language")))
	}
	a.expect(a.get(p, "/v", "Accept-Language", "fr"), "MISS", "fr", 2)
	b.expect(b.get(p, "/v", "Accept-Language", "de"), "MISS", "de", 3)
	a.expect(a.get(p, "/v", "Accept-Language", "de"), "HIT", "de", 3)
	b.expect(b.get(p, "/v", "Accept-Language", "fr"), "HIT", "fr", 3)
	// A purge on one is a purge on all.
	p2 := Compile("r1", 2, &config.RouteCache{TTL: config.Duration(time.Minute), Store: config.CacheRedis})
	b.expect(b.get(p2, "/v", "Accept-Language", "fr"), "MISS", "fr", 4)
	a.expect(a.get(p2, "/v", "Accept-Language", "fr"), "HIT", "fr", 4)
}

// While one data plane fetches a key, another that finds the fill lock
// taken waits for the first one's entry instead of fetching too.
func TestCrossNodeStampede(t *testing.T) {
	srv := testutil.StartRedis(t)
	clk := newClock()
	entered, release := make(chan struct{}), make(chan struct{})
	up := &upstream{respond: func(w http.ResponseWriter, _ *http.Request, n int64) {
		if n == 1 {
			close(entered)
			<-release
		}
		_, _ = w.Write([]byte("shared"))
	}}
	// The wait is generous so that a slow machine does not make b give up;
	// what is tested is that it does not fetch, not how fast.
	o := Options{LockWait: 30 * time.Second, PollInterval: 5 * time.Millisecond}
	a, b := plane(t, srv, clk, up, o), plane(t, srv, clk, up, o)
	busy := make(chan struct{})
	b.cache.onLockBusy = func() { close(busy) }
	p := redisPolicy()

	done := make(chan result)
	go func() { done <- a.get(p, "/") }()
	<-entered
	go func() { done <- b.get(p, "/") }()
	<-busy
	close(release)
	statuses := map[string]int{}
	for range 2 {
		res := <-done
		statuses[res.cacheStatus()]++
		if res.body != "shared" {
			t.Errorf("body %q", res.body)
		}
	}
	if got := up.calls.Load(); got != 1 {
		t.Errorf("upstream calls = %d, want 1", got)
	}
	if statuses["HIT"] != 1 || statuses["MISS"] != 1 {
		t.Errorf("statuses %v, want one MISS and one HIT", statuses)
	}
	// The lock was released after storing.
	if n := newRedisClient(t, srv.Addr).Keys(t.Context(), RedisPrefix+"lock:*").Val(); len(n) != 0 {
		t.Errorf("locks left behind: %v", n)
	}
}

// A node that finds the lock taken but never sees an entry (the other
// node's response was not storable) fetches itself after LockWait.
func TestCrossNodeLockWaitBounded(t *testing.T) {
	srv := testutil.StartRedis(t)
	clk, up := newClock(), &upstream{}
	o := Options{LockWait: 20 * time.Millisecond, PollInterval: 5 * time.Millisecond}
	b := plane(t, srv, clk, up, o)
	p := redisPolicy()
	// Another node holds the lock and never stores.
	other := NewRedis(newRedisClient(t, srv.Addr), time.Second)
	if _, ok, err := other.Lock(t.Context(), p.primaryKey(req(http.MethodGet, "/"), ""), time.Minute); !ok || err != nil {
		t.Fatalf("lock: %v %v", ok, err)
	}
	b.expect(b.get(p, "/"), "MISS", "call 1", 1)
	b.expect(b.get(p, "/"), "HIT", "call 1", 1)
}

func TestRedisDown(t *testing.T) {
	srv := testutil.StartRedis(t)
	reg := prometheus.NewRegistry()
	var logs logBuffer
	e := plane(t, srv, newClock(), &upstream{}, Options{Registerer: reg, Log: logs.logger()})
	p := redisPolicy()
	srv.Stop()
	for i := range 3 {
		res := e.get(p, "/")
		if res.status != http.StatusOK {
			t.Fatalf("status %d with Redis down", res.status)
		}
		e.expect(res, "MISS", "", int64(i+1))
	}
	if got := promtest.ToFloat64(e.cache.metrics.storeErrors.WithLabelValues("redis")); got != 3 {
		t.Errorf("redis store errors = %v, want 3 (one per request)", got)
	}
	if got := promtest.ToFloat64(e.cache.metrics.lookups.WithLabelValues("r1", "miss")); got != 3 {
		t.Errorf("misses = %v, want 3", got)
	}
	if n := logs.count("store failing"); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
	if e.mem.Len() != 0 {
		t.Error("the memory store stood in for Redis")
	}

	srv.Start()
	e.expect(e.get(p, "/"), "MISS", "call 4", 4)
	e.expect(e.get(p, "/"), "HIT", "call 4", 4)
	if n := logs.count("store is back"); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
}

func TestRedisGarbage(t *testing.T) {
	srv := testutil.StartRedis(t)
	e := plane(t, srv, newClock(), &upstream{}, Options{})
	p := redisPolicy()
	client := newRedisClient(t, srv.Addr)
	key := RedisPrefix + p.primaryKey(req(http.MethodGet, "/"), "")
	for _, junk := range []string{"garbage", "P\x01\x02\x00\xff", string(sampleEntry().encode()[:20])} {
		if err := client.Set(t.Context(), key, junk, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		before := e.up.calls.Load()
		e.expect(e.get(p, "/"), "MISS", "", before+1)
	}
	e.expect(e.get(p, "/"), "HIT", "", 3)
}

func TestNoRedisFallsBackToMemory(t *testing.T) {
	var logs logBuffer
	e := newEnv(t, Options{Log: logs.logger()})
	p := redisPolicy()
	e.expect(e.get(p, "/"), "MISS", "call 1", 1)
	e.expect(e.get(p, "/"), "HIT", "call 1", 1)
	e.expect(e.get(p, "/b"), "MISS", "call 2", 2)
	if n := logs.count("no Redis"); n != 1 {
		t.Errorf("fallback logged %d times, want once", n)
	}
	if e.mem.Len() != 2 {
		t.Errorf("memory holds %d entries, want 2", e.mem.Len())
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, Options{Registerer: reg})
	p := policy(config.RouteCache{})
	e.get(p, "/")
	e.get(p, "/")
	e.get(p, "/")
	e.do(p, "", req(http.MethodPost, "/"))
	for result, want := range map[string]float64{"hit": 2, "miss": 1, "bypass": 1} {
		if got := promtest.ToFloat64(e.cache.metrics.lookups.WithLabelValues("r1", result)); got != want {
			t.Errorf("lookups{result=%q} = %v, want %v", result, got, want)
		}
	}
	gauges := func() (bytes, entries float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "portico_cache_memory_bytes":
				bytes = mf.GetMetric()[0].GetGauge().GetValue()
			case "portico_cache_memory_entries":
				entries = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return bytes, entries
	}
	if b, n := gauges(); b != float64(e.mem.Bytes()) || n != 1 || b == 0 {
		t.Errorf("memory gauges %v bytes %v entries, want %d 1", b, n, e.mem.Bytes())
	}
	// A reload builds a new Cache on the same registry: no panic, and the
	// gauges follow the new store.
	e2 := newEnv(t, Options{Registerer: reg})
	if b, n := gauges(); b != 0 || n != 0 {
		t.Errorf("after a reload the gauges read %v %v, want the new, empty store", b, n)
	}
	e2.get(p, "/")
	if got := promtest.ToFloat64(e2.cache.metrics.lookups.WithLabelValues("r1", "miss")); got != 2 {
		t.Errorf("misses after reload = %v, want the counter carried on (2)", got)
	}
}

// TestSharedCacheKeepsRequestsApart: through a shared Redis, what one
// client's request makes the upstream answer never reaches another data
// plane's client whose request the upstream would read differently (issue
// 13: error answers, cookies, query keys, the Host's port). Each upstream
// answer names what it was asked.
func TestSharedCacheKeepsRequestsApart(t *testing.T) {
	srv := testutil.StartRedis(t)
	tests := []struct {
		name       string
		spec       config.RouteCache
		first      *http.Request // from the attacker, on plane a
		second     *http.Request // from a victim, on plane b
		wantSecond string        // the body the victim must get
	}{
		{"414 for junk in a parameter out of the key", config.RouteCache{KeyQuery: []string{"id"}},
			req("GET", "/p?id=1&junk="+strings.Repeat("x", 100)), req("GET", "/p?id=1"), "200 id=1"},
		{"cookie", config.RouteCache{},
			req("GET", "/p", "Cookie", "session=attacker"), req("GET", "/p"), "200 cookie="},
		{"invalid escape", config.RouteCache{},
			req("GET", "/p?q=%zz"), req("GET", "/p?q=%25zz"), "200 q=%25zz"},
		{"semicolon cloaking", config.RouteCache{KeyQuery: []string{"id"}},
			req("GET", "/p?id=1&utm=1;id=evil"), req("GET", "/p?id=1"), "200 id=1"},
		{"port in the host", config.RouteCache{},
			hostReq("example.com:1,evil.example"), hostReq("example.com"), "200 host=example.com"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			// The upstream answers as a real one might: 414 for a long
			// query, cacheable for a minute, and otherwise a page built
			// from what it was sent.
			up := &upstream{respond: func(w http.ResponseWriter, r *http.Request, _ int64) {
				w.Header().Set("Cache-Control", "max-age=60")
				status, body := 200, ""
				switch {
				case len(r.URL.RawQuery) > 64:
					status = http.StatusRequestURITooLong
				case tt.name == "cookie":
					c, _ := r.Cookie("session")
					if c != nil {
						body = "cookie=" + c.Value
					} else {
						body = "cookie="
					}
				case tt.name == "port in the host":
					body = "host=" + r.Host
				case tt.name == "semicolon cloaking":
					// A ';'-splitting upstream takes the last id.
					id := ""
					for _, kv := range strings.FieldsFunc(r.URL.RawQuery, func(c rune) bool { return c == '&' || c == ';' }) {
						if v, ok := strings.CutPrefix(kv, "id="); ok {
							id = v
						}
					}
					body = "id=" + id
				default:
					body = r.URL.RawQuery
				}
				w.WriteHeader(status)
				fmt.Fprintf(w, "%d %s", status, body)
			}}
			a, b := plane(t, srv, clk, up, Options{}), plane(t, srv, clk, up, Options{})
			spec := tt.spec
			spec.TTL, spec.Store = config.Duration(time.Minute), config.CacheRedis
			p := Compile("shared-"+strconv.Itoa(i), 1, &spec)
			a.do(p, "", tt.first)
			if res := b.do(p, "", tt.second); res.body != tt.wantSecond || res.cacheStatus() != "MISS" {
				t.Fatalf("the victim got %q (%s), want %q from the upstream", res.body, res.cacheStatus(), tt.wantSecond)
			}
		})
	}
}
