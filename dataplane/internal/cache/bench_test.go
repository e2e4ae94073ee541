package cache

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

var benchBody = strings.Repeat("x", 4<<10)

func benchCache() (*Cache, *Policy, http.Handler) {
	c := New(Options{Memory: NewMemory(64 << 20), Log: slog.New(slog.DiscardHandler)})
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, benchBody)
	})
	return c, policy(config.RouteCache{}), next
}

func BenchmarkCacheHit(b *testing.B) {
	c, p, next := benchCache()
	r := httptest.NewRequest(http.MethodGet, "/bench?a=1&b=2", nil)
	c.Serve(httptest.NewRecorder(), r, p, "", next)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		c.Serve(w, r, p, "", next)
		if w.Header().Get(StatusHeader) != "HIT" {
			b.Fatal("not a hit")
		}
	}
}

// BenchmarkCacheMiss is a miss that is then stored: a new path each time.
func BenchmarkCacheMiss(b *testing.B) {
	c, p, next := benchCache()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		r := httptest.NewRequest(http.MethodGet, "/bench/"+strconv.Itoa(i)+"?a=1&b=2", nil)
		w := httptest.NewRecorder()
		c.Serve(w, r, p, "", next)
		if w.Header().Get(StatusHeader) != "MISS" {
			b.Fatal("not a miss")
		}
	}
}
