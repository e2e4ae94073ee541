package extauthz

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/clientip"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// BenchmarkServe: what a check adds to a request, with a forward-auth
// service on loopback (the round trip included) and with the decision
// cache answering; "none" is the same request without the stage.
func BenchmarkServe(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("X-User-Id", "u-1") }))
	defer srv.Close()
	cl := NewClient(Options{})
	defer cl.Close()
	for _, c := range []struct {
		name  string
		cache *config.ExtAuthzCache
		none  bool
	}{{"none", nil, true}, {"http", nil, false}, {"cached", &config.ExtAuthzCache{TTL: config.Duration(time.Minute)}, false}} {
		b.Run(c.name, func(b *testing.B) {
			r := config.Route{Name: "r", ExtAuthz: &config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: srv.URL}, UpstreamHeaders: []string{"X-User-Id"}, Cache: c.cache}}
			s := Compile(&r, cl)
			if c.none {
				s = nil // the baseline: the request and the test's upstream alone
			}
			ips, _ := clientip.Parse("")
			chain := stage.NewChain(s, &upstream{})
			hr := httptest.NewRequest("GET", "http://api.example.com/orders/7?x=1", nil)
			hr.RemoteAddr = "192.0.2.1:4711"
			hr.Header.Set("Authorization", "Bearer "+strings.Repeat("t", 200))
			hr.Header.Set("Accept", "application/json")
			hr.Header.Set("User-Agent", "bench")
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				req := &stage.Request{W: w, R: hr, Env: &stage.Env{ClientIP: ips}}
				req.Authenticated(&stage.Identity{Consumer: "alice", Method: "api_key"}, identity{})
				req.Run(chain)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
