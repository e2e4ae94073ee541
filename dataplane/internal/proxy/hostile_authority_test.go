package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/portico-gw/portico/dataplane/internal/cache"
	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// Issue 13: the request's authority is validated once (package authority),
// and routing, the cache key and the forwarded headers all derive from that
// one value.

// TestHostileHostAuthority: a Host the gateway cannot read exactly is
// refused before routing; one it can is forwarded in its normal form only.
func TestHostileHostAuthority(t *testing.T) {
	env := hostileGateway(t, 0)
	tests := []struct {
		name, req string
		status    int
		xfh       string // X-Forwarded-Host the upstream saw, on a 200
	}{
		// The poisoning of issue 13, item 1: the router took the part
		// before the last ':' and ignored a "port" that was not one.
		{"non-numeric port", "GET /internal/x HTTP/1.1\r\nHost: internal.example:1,evil.example\r\n\r\n", 400, ""},
		{"list of hosts", "GET /public/x HTTP/1.1\r\nHost: internal.example,evil.example\r\n\r\n", 400, ""},
		{"semicolon", "GET /public/x HTTP/1.1\r\nHost: internal.example;host=evil.example\r\n\r\n", 400, ""},
		{"port zero", "GET /internal/x HTTP/1.1\r\nHost: internal.example:0\r\n\r\n", 400, ""},
		{"port too large", "GET /internal/x HTTP/1.1\r\nHost: internal.example:65536\r\n\r\n", 400, ""},
		{"empty port", "GET /internal/x HTTP/1.1\r\nHost: internal.example:\r\n\r\n", 400, ""},
		{"two ports", "GET /internal/x HTTP/1.1\r\nHost: internal.example:80:81\r\n\r\n", 400, ""},
		{"empty label", "GET /public/x HTTP/1.1\r\nHost: internal..example\r\n\r\n", 400, ""},
		{"junk after IPv6", "GET /public/x HTTP/1.1\r\nHost: [::1]evil\r\n\r\n", 400, ""},
		{"absolute-form with userinfo", "GET http://internal.example@evil.example/public/x HTTP/1.1\r\nHost: internal.example\r\n\r\n", 400, ""},
		{"absolute-form, other scheme", "GET ftp://internal.example/public/x HTTP/1.1\r\nHost: internal.example\r\n\r\n", 400, ""},
		// Valid: normalised, and forwarded normalised.
		{"case, trailing dot, default port", "GET /internal/x HTTP/1.1\r\nHost: INTERNAL.Example.:80\r\n\r\n", 200, "internal.example"},
		{"other port kept", "GET /internal/x HTTP/1.1\r\nHost: internal.example:08443\r\n\r\n", 200, "internal.example:8443"},
		{"IPv6", "GET /public/x HTTP/1.1\r\nHost: [0:0::1]:8080\r\n\r\n", 200, "[::1]:8080"},
		{"absolute-form wins over Host", "GET http://Internal.example/internal/x HTTP/1.1\r\nHost: evil.example\r\n\r\n", 200, "internal.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := env.upstreamHits()
			res := rawRequest(t, env.addr, tt.req, false)
			if res.status != tt.status {
				t.Fatalf("status = %d %q (%v), want %d", res.status, res.body, res.err, tt.status)
			}
			if tt.status != 200 {
				if env.upstreamHits() != before {
					t.Fatal("a request with an invalid host reached an upstream")
				}
				if !strings.Contains(res.body, "bad-host") {
					t.Errorf("body %q is not the bad-host problem", res.body)
				}
				return
			}
			up := env.pub
			if strings.Contains(tt.req, "/internal/") {
				up = env.internal
			}
			r, _, _ := up.lastRequest()
			if got := r.Header.Values("X-Forwarded-Host"); len(got) != 1 || got[0] != tt.xfh {
				t.Fatalf("upstream saw X-Forwarded-Host %q, want %q", got, tt.xfh)
			}
		})
	}
}

// TestHostHeaderDisagreesWithAuthority: net/http keeps an HTTP/2 request's
// Host header next to its :authority; when they name different hosts the
// request is refused (RFC 9113 §8.3.1), and when they agree the header goes
// no further.
func TestHostHeaderDisagreesWithAuthority(t *testing.T) {
	h := NewHandler(Options{Log: discardLog()})
	applyCfg(t, h, 1, &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://" + testutil.RefusedAddr(t)}}}},
		Routes:   []*config.Route{{Name: "internal", Paths: []string{"/internal/*"}, Hosts: []string{"internal.example"}, Service: "s"}},
	})
	for _, tt := range []struct {
		authority, host string
		status          int
	}{
		{"internal.example", "evil.example", 400},
		{"internal.example", "internal.example:1,evil.example", 400},
		{"evil.example", "internal.example", 400},
		// Agreeing: routed (to an upstream that refuses connections).
		{"internal.example", "INTERNAL.example:80", 502},
	} {
		r := httptest.NewRequest("GET", "/internal/x", nil)
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
		r.Host = tt.authority
		r.Header["Host"] = []string{tt.host}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tt.status {
			t.Errorf(":authority %q, Host %q: status %d %q, want %d", tt.authority, tt.host, w.Code, w.Body, tt.status)
		}
	}
}

// TestHostilePathParameters: dot segments that some upstreams see and the
// router would not ("..;" for servlet containers, "..\" for Windows servers
// and WHATWG parsers), spelt raw or percent-encoded, are refused with 400
// and reach no upstream; before, they were forwarded verbatim, so
// "/public/..;/admin/x" passed the open route's checks and named /admin/x
// to a Tomcat behind it.
func TestHostilePathParameters(t *testing.T) {
	env := hostileGateway(t, 0)
	for _, raw := range []string{
		"/public/..;/admin/x",
		"/public/..;jsessionid=1/admin/x",
		"/public/..%3B/admin/x",
		"/public/%2e%2e;/admin/x",
		"/public/%2E%2E%3b/admin/x",
		"/public/.;/x",
		"/public/..\\admin/x",
		"/public/..%5Cadmin/x",
		"/public/..%5cadmin/x",
		"/public/%2e%2e%5cadmin/x",
		"/public\\..\\admin/x",
		"/public/x%5C",
	} {
		t.Run(raw, func(t *testing.T) {
			before := env.upstreamHits()
			res := rawRequest(t, env.addr, "GET "+raw+" HTTP/1.1\r\nHost: a\r\n\r\n", false)
			if res.status != http.StatusBadRequest {
				r, _, _ := env.pub.lastRequest()
				t.Fatalf("status = %d, want 400 (the public upstream last saw %q)", res.status, r.RequestURI)
			}
			if env.upstreamHits() != before {
				t.Fatal("reached an upstream")
			}
		})
	}
	// Semicolons elsewhere in a segment are ordinary bytes.
	res := rawRequest(t, env.addr, "GET /public/a;b/..;c HTTP/1.1\r\nHost: a\r\n\r\n", false)
	if res.status != http.StatusBadRequest {
		t.Fatalf("a trailing ..;c segment = %d, want 400", res.status)
	}
	if res := rawRequest(t, env.addr, "GET /public/a;b/c..;d HTTP/1.1\r\nHost: a\r\n\r\n", false); res.status != 200 {
		t.Fatalf("/public/a;b/c..;d = %d, want 200", res.status)
	}
}

// TestCachePoisoningThroughHost is issue 13's item 1 end to end: two data
// planes share a Redis cache; an attacker sends raw bytes with a Host whose
// "port" names another site to one of them, and a visitor then asks the
// other. The upstream builds links from X-Forwarded-Host the way Flask's
// ProxyFix does (the last of a comma-separated list). Before the fix the
// attacker's request was answered, stored under shop.example's key and
// served to the visitor with links to evil.example.
func TestCachePoisoningThroughHost(t *testing.T) {
	rs := testutil.StartRedis(t)
	var upstreamCalls atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamCalls.Add(1)
		hosts := strings.Split(r.Header.Get("X-Forwarded-Host"), ",")
		host := strings.TrimSpace(hosts[len(hosts)-1])
		w.Header().Set("Cache-Control", "max-age=300")
		fmt.Fprintf(w, `<a href="http://%s/login">log in</a>`, host)
	}))
	t.Cleanup(app.Close)
	cfg := func() *config.Config {
		return &config.Config{
			Services: []config.Service{{Name: "shop", Targets: []config.Target{{URL: app.URL}}}},
			Routes: []*config.Route{{Name: "shop", Paths: []string{"/*"}, Hosts: []string{"shop.example"}, Service: "shop",
				Cache: &config.RouteCache{TTL: config.Duration(time.Minute), Store: config.CacheRedis}}},
		}
	}
	plane := func() string {
		rc := redis.NewClient(&redis.Options{Addr: rs.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { _ = rc.Close() })
		c := cache.New(cache.Options{Memory: cache.NewMemory(1 << 20), Redis: cache.NewRedis(rc, time.Second), Log: discardLog()})
		h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(prometheus.NewRegistry())})
		deps := testDeps()
		deps.Cache = c
		applyWith(t, h, deps, 1, cfg())
		return trafficServer(t, h, 0)
	}
	a, b := plane(), plane()
	for _, attack := range []string{
		"shop.example:1,evil.example",
		"shop.example:80,evil.example",
		"shop.example:1;evil.example",
	} {
		res := rawRequest(t, a, "GET /home HTTP/1.1\r\nHost: "+attack+"\r\n\r\n", false)
		if res.status != http.StatusBadRequest {
			t.Errorf("attacker's Host %q: status %d %q, want 400", attack, res.status, res.body)
		}
	}
	// A valid port is another authority: it gets its own entry.
	if res := rawRequest(t, a, "GET /home HTTP/1.1\r\nHost: shop.example:8443\r\n\r\n", false); res.status != 200 {
		t.Fatalf("shop.example:8443 = %d", res.status)
	}
	res := rawRequest(t, b, "GET /home HTTP/1.1\r\nHost: shop.example\r\n\r\n", false)
	if res.status != 200 || res.body != `<a href="http://shop.example/login">log in</a>` {
		t.Fatalf("the visitor got %d %q", res.status, res.body)
	}
	// And the visitor's entry is shared as it should be.
	res = rawRequest(t, a, "GET /home HTTP/1.1\r\nHost: SHOP.example.:80\r\n\r\n", false)
	if res.status != 200 || res.body != `<a href="http://shop.example/login">log in</a>` {
		t.Fatalf("a second visitor got %d %q", res.status, res.body)
	}
	if n := upstreamCalls.Load(); n != 2 {
		t.Fatalf("upstream calls = %d, want 2 (shop.example:8443 and shop.example)", n)
	}
}

// TestHostilePathParameterRouting: a servlet container reads "/admin;x/y"
// as "/admin/y". When removing the ';' parameters would move a request to
// another route (here from an open catch-all to an API-key route of the
// same service), the request is refused; parameters that keep it on its
// route (jsessionid) pass as sent. Before, "/admin;x/secret" went through
// the open route to a service that served /admin/secret.
func TestHostilePathParameterRouting(t *testing.T) {
	app, appSeen := recordingUpstream(t, "app")
	key, id, hash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(prometheus.NewRegistry())})
	applyCfg(t, h, 1, &config.Config{
		Services:  []config.Service{{Name: "app", Targets: []config.Target{{URL: app.URL}}}},
		Consumers: []config.Consumer{{Name: "alice", APIKeys: []config.APIKey{{ID: id, Hash: hash, Prefix: apikey.Prefix(key)}}}},
		Routes: []*config.Route{
			{Name: "site", Paths: []string{"/*"}, Service: "app"},
			{Name: "admin", Paths: []string{"/admin/*"}, Service: "app", Auth: &config.RouteAuth{APIKey: true}},
		},
	})
	addr := trafficServer(t, h, 0)
	tests := []struct {
		path   string
		status int
	}{
		{"/admin;x/secret", 400},
		{"/admin;/secret", 400},
		{"/admin%3Bx/secret", 400},
		{"/;x/admin/secret", 400},
		{"/admin;jsessionid=1", 400},
		// Same route either way: forwarded as sent.
		{"/shop;jsessionid=1/cart", 200},
		{"/shop/cart;v=2", 200},
		{"/admin/secret;jsessionid=1", 401},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			before := appSeen.hits.Load()
			res := rawRequest(t, addr, "GET "+tt.path+" HTTP/1.1\r\nHost: a\r\n\r\n", false)
			if res.status != tt.status {
				t.Fatalf("status = %d %q, want %d", res.status, res.body, tt.status)
			}
			if reached := appSeen.hits.Load() != before; reached != (tt.status == 200) {
				t.Fatalf("upstream reached = %v", reached)
			}
		})
	}
}

// TestSharedCacheThroughGateway: issue 13's cache findings end to end, on
// the wire: two data planes share a real Redis, the service is a real
// listener, and the attacker's request goes to one data plane, the
// victim's to the other. The victim must get the answer the service gives
// to its own request.
func TestSharedCacheThroughGateway(t *testing.T) {
	rs := testutil.StartRedis(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		switch r.URL.Path {
		case "/long":
			if len(r.URL.RawQuery) > 64 {
				w.WriteHeader(http.StatusRequestURITooLong)
				fmt.Fprint(w, "too long")
				return
			}
			fmt.Fprint(w, "id="+r.URL.Query().Get("id"))
		case "/cookie":
			if c, err := r.Cookie("session"); err == nil {
				fmt.Fprint(w, "hello "+c.Value)
				return
			}
			fmt.Fprint(w, "hello stranger")
		case "/raw":
			fmt.Fprint(w, "query="+r.URL.RawQuery)
		case "/cloak":
			// Splits on ';' too, and takes the last id (Rails, old Python).
			id := ""
			for _, kv := range strings.FieldsFunc(r.URL.RawQuery, func(c rune) bool { return c == '&' || c == ';' }) {
				if v, ok := strings.CutPrefix(kv, "id="); ok {
					id = v
				}
			}
			fmt.Fprint(w, "id="+id)
		}
	}))
	t.Cleanup(app.Close)
	cached := func(name, path string, keyQuery ...string) config.Route {
		return config.Route{Name: name, Paths: []string{path}, Service: "app",
			Cache: &config.RouteCache{TTL: config.Duration(time.Minute), Store: config.CacheRedis, KeyQuery: keyQuery}}
	}
	plane := func() string {
		rc := redis.NewClient(&redis.Options{Addr: rs.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { _ = rc.Close() })
		c := cache.New(cache.Options{Memory: cache.NewMemory(1 << 20), Redis: cache.NewRedis(rc, time.Second), Log: discardLog()})
		h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(prometheus.NewRegistry())})
		deps := testDeps()
		deps.Cache = c
		applyWith(t, h, deps, 1, &config.Config{
			Services: []config.Service{{Name: "app", Targets: []config.Target{{URL: app.URL}}}},
			Routes: []*config.Route{new(cached("long", "/long", "id")), new(cached("cookie", "/cookie")),
				new(cached("raw", "/raw")), new(cached("cloak", "/cloak", "id"))},
		})
		return trafficServer(t, h, 0)
	}
	a, b := plane(), plane()
	tests := []struct {
		name, attack, victim, want string
	}{
		{"414 for junk out of the key", "GET /long?id=1&junk=" + strings.Repeat("x", 80) + " HTTP/1.1\r\nHost: shop.example\r\n\r\n",
			"GET /long?id=1 HTTP/1.1\r\nHost: shop.example\r\n\r\n", "id=1"},
		{"cookie", "GET /cookie HTTP/1.1\r\nHost: shop.example\r\nCookie: session=attacker\r\n\r\n",
			"GET /cookie HTTP/1.1\r\nHost: shop.example\r\n\r\n", "hello stranger"},
		{"invalid escape", "GET /raw?q=%zz HTTP/1.1\r\nHost: shop.example\r\n\r\n",
			"GET /raw?q=%25zz HTTP/1.1\r\nHost: shop.example\r\n\r\n", "query=q=%25zz"},
		{"semicolon cloaking", "GET /cloak?id=1&utm=x;id=evil HTTP/1.1\r\nHost: shop.example\r\n\r\n",
			"GET /cloak?id=1 HTTP/1.1\r\nHost: shop.example\r\n\r\n", "id=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := rawRequest(t, a, tt.attack, false); res.err != nil {
				t.Fatal(res.err)
			}
			res := rawRequest(t, b, tt.victim, false)
			if res.status != 200 || res.body != tt.want {
				t.Fatalf("the victim got %d %q, want 200 %q", res.status, res.body, tt.want)
			}
		})
	}
}
