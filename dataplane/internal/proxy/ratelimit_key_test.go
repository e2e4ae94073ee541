package proxy

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// TestRateLimitKeyMemoryBounded (issue 13 item 4): a header-keyed limit
// keeps a fixed-size hash of each value, not the value, so clients sending
// a thousand distinct 60 KB values do not grow the heap by their size (on
// the old code they kept ~60 MB alive).
func TestRateLimitKeyMemoryBounded(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{{Name: "keyed", Paths: []string{"/keyed"}, Service: "s",
			RateLimit: &config.RateLimit{Limit: 1, Window: config.Duration(time.Hour), Key: "header:X-Client"}}},
	}
	h, _ := newGateway(t, cfg)
	serve := func(value string) int {
		r := httptest.NewRequest(http.MethodGet, "/keyed", nil)
		r.Header.Set("X-Client", value)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	pad := strings.Repeat("v", 60<<10)
	value := func(i int) string { return strconv.Itoa(i) + pad }
	// Warm up whatever the handler allocates once.
	serve(value(-1))

	const n = 1000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		if code := serve(value(i)); code != http.StatusOK {
			t.Fatalf("request %d: %d, want 200 for a new key", i, code)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// The keys are still counted (a second request of each is refused):
	// what is bounded is their size, not their state.
	for _, i := range []int{0, n / 2, n - 1} {
		if code := serve(value(i)); code != http.StatusTooManyRequests {
			t.Fatalf("second request of key %d: %d, want 429", i, code)
		}
	}
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d KB for %d distinct 60 KB keys (%d MB of values sent)", growth>>10, n, n*60>>10)
	// Generous: the entries themselves take about 100 bytes each.
	if limit := int64(8 << 20); growth > limit {
		t.Fatalf("heap grew by %d MB for %d keys, want under %d MB: key values are kept", growth>>20, n, limit>>20)
	}
}
