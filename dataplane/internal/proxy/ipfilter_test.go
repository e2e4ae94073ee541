package proxy

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portico-gw/portico/dataplane/internal/clientip"
	"github.com/portico-gw/portico/shared/config"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// TestIPRules through the real handler and a real upstream: global rules
// first, then the route's (deny over allow, a non-empty allow list admits
// only its members), on the client address as --trusted-proxies resolves
// it; an untrusted peer's X-Forwarded-For changes nothing; a new global
// section reaches routes carried over unchanged.
func TestIPRules(t *testing.T) {
	up := echoUpstream(t, "users")
	cfg := func(globalDeny ...string) *config.Config {
		return &config.Config{
			Services: []config.Service{{Name: "users", Targets: []config.Target{{URL: up.URL}}}},
			Global:   config.Global{IP: &config.IPRules{Deny: globalDeny}},
			Routes: []*config.Route{
				{Name: "office", Paths: []string{"/office/*"}, Service: "users", Meta: config.Meta{Revision: 1, Version: 1},
					IP: &config.IPRules{Allow: []string{"192.0.2.0/24", "198.51.100.9", "2001:db8::/32"}, Deny: []string{"192.0.2.66"}}},
				{Name: "open", Paths: []string{"/open/*"}, Service: "users", Meta: config.Meta{Revision: 1, Version: 1}},
			},
		}
	}
	serve := func(trusted string) (*Handler, string) {
		o := Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(prometheus.NewRegistry())}
		if trusted != "" {
			ips, err := clientip.Parse(trusted)
			if err != nil {
				t.Fatal(err)
			}
			o.ClientIP = ips
		}
		h := NewHandler(o)
		applyCfg(t, h, 1, cfg("198.51.100.0/24"))
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return h, srv.URL
	}
	type row struct {
		name, path, xff string
		status          int
		why             string // in the refusal's detail
	}
	// refusals counts the 403s check expects, by route and scope, to
	// compare with portico_ip_refusals_total.
	refusals := map[*Handler]map[[2]string]float64{}
	check := func(t *testing.T, h *Handler, gw string, rows []row) {
		t.Helper()
		if refusals[h] == nil {
			refusals[h] = map[[2]string]float64{}
		}
		for _, c := range rows {
			if c.status == 403 {
				route, _, _ := strings.Cut(strings.TrimPrefix(c.path, "/"), "/")
				refusals[h][[2]string{route, c.why}]++
			}
			var hdr []string
			if c.xff != "" {
				hdr = []string{"X-Forwarded-For", c.xff}
			}
			code, h, body := do(t, "GET", gw+c.path, nil, hdr...)
			if code != c.status {
				t.Errorf("%s: %d %s", c.name, code, body)
				continue
			}
			if c.status == 200 && !strings.HasPrefix(body, "users GET "+c.path) {
				t.Errorf("%s: not the service's answer: %s", c.name, body)
			}
			if c.status == 403 && (h.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, "ip-forbidden") || !strings.Contains(body, c.why)) {
				t.Errorf("%s: %v %s", c.name, h, body)
			}
		}
	}

	h1, gw := serve("127.0.0.1/32")
	check(t, h1, gw, []row{
		{"no rules, the peer itself", "/open/1", "", 200, ""},
		{"global deny via a trusted proxy", "/open/1", "198.51.100.7", 403, "global"},
		{"allowed via a trusted proxy", "/office/1", "192.0.2.10", 200, ""},
		{"allowed IPv6", "/office/1", "2001:db8::5", 200, ""},
		{"deny wins over allow", "/office/1", "192.0.2.66", 403, "route"},
		{"outside the allow list", "/office/1", "203.0.113.1", 403, "route"},
		{"the proxy itself is not in the allow list", "/office/1", "", 403, "route"},
		{"global rules first: a route allow cannot undo a global deny", "/office/1", "198.51.100.9", 403, "global"},
		{"the client's address is the last untrusted one", "/office/1", "192.0.2.66, 192.0.2.10", 200, ""},
	})

	// gRPC calls get the same refusal as a gRPC status.
	code, h, _ := do(t, "POST", gw+"/office/1", nil, "X-Forwarded-For", "192.0.2.66", "Content-Type", "application/grpc")
	if code != 200 || h.Get("Grpc-Status") != "7" {
		t.Fatalf("gRPC refusal: %d %v", code, h)
	}

	h0, untrusted := serve("")
	check(t, h0, untrusted, []row{
		{"untrusted X-Forwarded-For ignored (allow)", "/office/1", "192.0.2.10", 403, "route"},
		{"untrusted X-Forwarded-For ignored (deny)", "/open/1", "198.51.100.7", 200, ""},
	})

	// A new global section reaches routes the next compile carries over.
	h2, gw2 := serve("")
	applyCfg(t, h2, 2, cfg("127.0.0.0/8"))
	check(t, h2, gw2, []row{{"new global deny", "/open/1", "", 403, "global"}})
	applyCfg(t, h2, 3, cfg())
	check(t, h2, gw2, []row{{"global rules removed", "/open/1", "", 200, ""}})

	// portico_ip_refusals_total{route,scope} counts each refusal once,
	// under the rules that refused it, and nothing else (the gRPC
	// refusal above is one more on office's route rules).
	refusals[h1][[2]string{"office", "route"}]++
	for h, want := range refusals {
		for k, n := range want {
			if got := promtest.ToFloat64(h.metrics.ipRefusals.WithLabelValues(k[0], k[1])); got != n {
				t.Errorf("portico_ip_refusals_total{route=%q,scope=%q} = %v, want %v", k[0], k[1], got, n)
			}
		}
		if got := promtest.CollectAndCount(h.metrics.ipRefusals); got != len(want) {
			t.Errorf("%d label sets counted, want %d (%v)", got, len(want), want)
		}
	}
}
