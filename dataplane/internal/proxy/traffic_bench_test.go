package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// BenchmarkAggregate compares one aggregated request over three backends,
// each answering after the same delay, with a client making the three calls
// through the gateway one after another: the fan-out costs one round trip
// and one backend delay instead of three. The delay stands for a backend's
// own work; compare ns/op of the two sub-benchmarks.
func BenchmarkAggregate(b *testing.B) {
	const delay = 2 * time.Millisecond
	backend := func(body string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			time.Sleep(delay)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, body)
		}))
		b.Cleanup(s.Close)
		return s
	}
	users, orders, prefs := backend(`{"id":"7","name":"Ada"}`), backend(`[{"id":1},{"id":2}]`), backend(`{"theme":"dark"}`)
	cfg := aggConfig(users.URL, orders.URL, prefs.URL, false)
	cfg.Routes = append(cfg.Routes,
		&config.Route{Name: "u", Paths: []string{"/u/{id}"}, Service: "users"},
		&config.Route{Name: "o", Paths: []string{"/o"}, Service: "orders"},
		&config.Route{Name: "p", Paths: []string{"/p/{id}"}, Service: "prefs"},
	)
	_, gw := newGateway(b, cfg)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	get := func(url string) {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %d", url, resp.StatusCode)
		}
	}
	b.Run("aggregated", func(b *testing.B) {
		for b.Loop() {
			get(gw + "/profile/7")
		}
	})
	b.Run("three-sequential-calls", func(b *testing.B) {
		for b.Loop() {
			get(gw + "/u/7")
			get(gw + "/o?user=7")
			get(gw + "/p/7")
		}
	})
}
