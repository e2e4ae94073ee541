package cache

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// clock is a settable time for freshness tests.
// newClock is the tests' clock, at a fixed start.
func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

// upstream is a handler that counts its calls and answers with respond;
// the body names the call number unless respond writes its own.
type upstream struct {
	calls   atomic.Int64
	respond func(w http.ResponseWriter, r *http.Request, n int64)
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := u.calls.Add(1)
	if u.respond != nil {
		u.respond(w, r, n)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "call %d", n)
}

// withHeaders answers with the given response headers and "call N".
func withHeaders(status int, kv ...string) func(w http.ResponseWriter, r *http.Request, n int64) {
	return func(w http.ResponseWriter, _ *http.Request, n int64) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Add(kv[i], kv[i+1])
		}
		w.WriteHeader(status)
		if status != http.StatusNoContent && status != http.StatusNotModified {
			fmt.Fprintf(w, "call %d", n)
		}
	}
}

// env is one data plane's cache in a test.
type env struct {
	t     testing.TB
	clock *testutil.Clock
	mem   *Memory
	cache *Cache
	up    *upstream
}

func newEnv(t testing.TB, o Options) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), up: &upstream{}}
	if o.Memory == nil {
		e.mem = NewMemory(1 << 20).WithClock(e.clock.Now)
		o.Memory = e.mem
	}
	if o.Now == nil {
		o.Now = e.clock.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	e.cache = New(o)
	return e
}

// req builds a request; hdr are header name/value pairs.
func req(method, target string, hdr ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

// result is what a client saw.
type result struct {
	status int
	header http.Header
	body   string
}

func (r result) cacheStatus() string { return r.header.Get(StatusHeader) }

func (e *env) do(p *Policy, consumer string, r *http.Request) result {
	e.t.Helper()
	w := httptest.NewRecorder()
	e.cache.Serve(w, r, p, consumer, e.up)
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	return result{status: res.StatusCode, header: res.Header, body: string(b)}
}

func (e *env) get(p *Policy, target string, hdr ...string) result {
	e.t.Helper()
	return e.do(p, "", req(http.MethodGet, target, hdr...))
}

func policy(spec config.RouteCache) *Policy {
	if spec.TTL == 0 {
		spec.TTL = config.Duration(time.Minute)
	}
	return Compile("r1", 1, &spec)
}

// expect checks the cache status, body and upstream calls so far.
func (e *env) expect(res result, status, body string, calls int64) {
	e.t.Helper()
	if got := res.cacheStatus(); got != status {
		e.t.Errorf("%s = %q, want %q", StatusHeader, got, status)
	}
	if body != "" && res.body != body {
		e.t.Errorf("body = %q, want %q", res.body, body)
	}
	if got := e.up.calls.Load(); got != calls {
		e.t.Errorf("upstream calls = %d, want %d", got, calls)
	}
}

func newRedisClient(t testing.TB, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
