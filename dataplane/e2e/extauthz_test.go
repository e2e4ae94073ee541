package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// forwardAuthPolicy makes OPA's own server a forward-auth service: with
// --authorization=basic every request to it is decided by
// data.system.authz.allow (input: method, path, headers), and a refusal is
// OPA's 401 problem. Portico's check is GET <url> carrying the original
// request in X-Forwarded-* and the verified consumer in X-Consumer-Name.
const forwardAuthPolicy = `package system.authz

default allow := false

hdr(name) := object.get(input.headers, name, [""])[0]

method := hdr("X-Forwarded-Method")
uri := hdr("X-Forwarded-Uri")
consumer := hdr("X-Consumer-Name")

# alice may read every order, bob all but the archived ones.
allow if {
	method == "GET"
	startswith(uri, "/orders/")
	consumer == "alice"
}

allow if {
	method == "GET"
	startswith(uri, "/orders/")
	not startswith(uri, "/orders/archive/")
	consumer == "bob"
}

# Payments: the body decides. With include_body the check is a POST to
# /v1/data/payments, whose JSON body OPA's authorizer reads as input.body.
limits := {"alice": 1000, "bob": 100}

allow if {
	input.method == "POST"
	input.path == ["v1", "data", "payments"]
	method == "POST"
	uri == "/payments"
	input.body.amount <= limits[consumer]
}
`

// envoyPolicy is an opa-envoy-plugin policy (package envoy.authz, input =
// the CheckRequest): reports by tier of the API key's consumer, the tier
// added to the request upstream, premium reports for gold only (402), and
// a JSON 403 with a header for everybody else.
const envoyPolicy = `package envoy.authz

tiers := {"alice": "gold", "bob": "silver"}

consumer := object.get(input.attributes, ["contextExtensions", "consumer"], "")

reading if {
	input.attributes.request.http.method == "GET"
	input.parsed_path[0] == "reports"
}

below_premium if {
	input.parsed_path[1] == "premium"
	tiers[consumer] != "gold"
}

default allow := {
	"allowed": false,
	"http_status": 403,
	"body": "{\"error\":\"forbidden by policy\"}",
	"headers": {"content-type": "application/json", "x-policy": "reports-v1"},
}

allow := {"allowed": true, "headers": {"x-user-tier": tiers[consumer], "x-policy": "reports-v1"}} if {
	reading
	tiers[consumer]
	not below_premium
}

# Exports in formats the policy knows, judged on the JSON body.
allow := {"allowed": true, "headers": {"x-user-tier": tiers[consumer]}} if {
	input.attributes.request.http.method == "POST"
	input.parsed_path == ["reports", "export"]
	input.parsed_body.format in {"csv", "json"}
	tiers[consumer]
}

allow := {"allowed": false, "http_status": 402, "body": "premium reports need the gold tier", "headers": {"content-type": "text/plain"}} if {
	reading
	below_premium
}
`

// headerEcho is the service behind the routes: it answers with the
// headers it received that the test looks at.
func headerEcho(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"path": r.URL.Path, "consumer": r.Header.Get("X-Consumer-Name"),
			"tier": strings.Join(r.Header.Values("X-User-Tier"), ","), "policy": r.Header.Get("X-Policy"),
			"api_key": r.Header.Get("X-Api-Key"), "body": string(body),
		})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type answer struct {
	code   int
	header http.Header
	body   string
	echo   map[string]string
}

func call(t *testing.T, method, url, key string, header ...string) answer {
	t.Helper()
	return callBody(t, method, url, key, "", header...)
}

func callBody(t *testing.T, method, url, key, body string, header ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-API-Key", key)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, header: resp.Header, body: string(b)}
	if resp.StatusCode == 200 {
		_ = json.Unmarshal(b, &a.echo)
	}
	return a
}

// extAuthzStack is the real control plane and data plane, a service that
// echoes the headers the tests look at, and the consumers alice, bob and
// carol with an API key each; routes names the routes to create.
func extAuthzStack(t *testing.T, routes map[string]config.Route) (dp *dataPlane, keys map[string]string) {
	t.Helper()
	ctx := context.Background()
	up := headerEcho(t)
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp = startDataPlane(t, "dp", cp.url, filepath.Join(dir, "dp"))
	if _, _, err := cp.admin.Services().Put(ctx, "backend", svc(up)); err != nil {
		t.Fatal(err)
	}
	keys = map[string]string{}
	for _, name := range []string{"alice", "bob", "carol"} {
		if _, _, err := cp.admin.Consumers().Put(ctx, name, config.Consumer{}); err != nil {
			t.Fatal(err)
		}
		_, keys[name] = createKey(t, cp.url, name)
	}
	for name, r := range routes {
		r.Service, r.Auth = "backend", &config.RouteAuth{APIKey: true}
		if _, _, err := cp.admin.Routes().Put(ctx, name, r); err != nil {
			t.Fatalf("route %s: %v", name, err)
		}
	}
	return dp, keys
}

// checkDecisions reads the data plane's ext_authz counters.
func checkDecisions(t *testing.T, dp *dataPlane, want []decisionCount, timeouts string) {
	t.Helper()
	m, err := scrapeMetrics(dp.ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range want {
		if got := metricSum(m["portico_ext_authz_decisions_total"], map[string]string{"route": c.route, "decision": c.decision}); got < c.min {
			t.Errorf("decisions %s %s = %v, want at least %v", c.route, c.decision, got, c.min)
		}
	}
	if got := metricSum(m["portico_ext_authz_errors_total"], map[string]string{"route": timeouts, "reason": "timeout"}); got < 1 {
		t.Errorf("timeouts on %s = %v", timeouts, got)
	}
}

type decisionCount struct {
	route, decision string
	min             float64
}

// checkTimeout bounds each check: long enough that a decision under make
// test's load (-race, every package at once on two cores) is never taken
// for a hung service, which the tests make by freezing OPA.
const checkTimeout = config.Duration(2 * time.Second)

// TestExtAuthzOPAServer: forward-auth (ext_authz.http) through the real
// control plane and data plane binaries, with Open Policy Agent's own
// server deciding on the API key's consumer: allowed requests reach the
// service, denials are OPA's answer, the consumer cannot be forged, and a
// hung OPA fails closed by default and open when asked.
func TestExtAuthzOPAServer(t *testing.T) {
	opa := testutil.StartOPAServer(t, forwardAuthPolicy)
	url := "http://" + opa.Addr + "/health"
	dp, keys := extAuthzStack(t, map[string]config.Route{
		"orders":      {Paths: []string{"/orders/*"}, ExtAuthz: &config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: url}, Timeout: checkTimeout}},
		"orders-open": {Paths: []string{"/open/orders/*"}, ExtAuthz: &config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: url}, Timeout: checkTimeout, FailureMode: config.FailOpen}},
		"payments": {Paths: []string{"/payments"}, ExtAuthz: &config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: "http://" + opa.Addr + "/v1/data/payments"},
			Timeout: checkTimeout, IncludeBody: &config.ExtAuthzBody{MaxBytes: 64}}},
	})
	testutil.Eventually(t, 15*time.Second, func() bool { return call(t, "GET", dp.url+"/orders/1", keys["alice"]).code == 200 },
		"the data plane applying the ext_authz routes")

	if a := call(t, "GET", dp.url+"/orders/archive/7", keys["alice"]); a.code != 200 || a.echo["consumer"] != "alice" || a.echo["api_key"] != "" {
		t.Fatalf("alice, archive: %d %s", a.code, a.body)
	}
	if a := call(t, "GET", dp.url+"/orders/7", keys["bob"]); a.code != 200 || a.echo["consumer"] != "bob" {
		t.Fatalf("bob: %d %s", a.code, a.body)
	}
	// Denials are OPA's answer: status, body and Content-Type.
	for _, c := range []struct{ who, method, path, pose string }{
		{"bob", "GET", "/orders/archive/7", ""},
		{"carol", "GET", "/orders/7", ""},
		{"alice", "DELETE", "/orders/7", ""},
		// bob cannot pose as alice: the consumer header is the gateway's.
		{"bob", "GET", "/orders/archive/7", "alice"},
	} {
		var extra []string
		if c.pose != "" {
			extra = []string{"X-Consumer-Name", c.pose, "X-Forwarded-Uri", "/orders/1"}
		}
		a := call(t, c.method, dp.url+c.path, keys[c.who], extra...)
		if a.code != 401 || a.header.Get("Content-Type") != "application/json" || !strings.Contains(a.body, "request rejected by administrative policy") {
			t.Fatalf("%s %s %s: %d %v %s", c.who, c.method, c.path, a.code, a.header, a.body)
		}
	}
	// No key: the auth stage refuses before anybody asks OPA.
	if a := call(t, "GET", dp.url+"/orders/7", ""); a.code != 401 || !strings.Contains(a.body, "urn:portico:problem:") {
		t.Fatalf("no key: %d %s", a.code, a.body)
	}
	// include_body: OPA decides on the body, which still reaches the
	// service; a body over max_bytes is 413 without a check.
	for _, c := range []struct {
		who, body string
		code      int
	}{
		{"alice", `{"amount":500}`, 200},
		{"bob", `{"amount":500}`, 401},
		{"bob", `{"amount":50}`, 200},
		{"bob", `{"amount":5,"memo":"` + strings.Repeat("x", 64) + `"}`, 413},
	} {
		a := callBody(t, "POST", dp.url+"/payments", keys[c.who], c.body)
		if a.code != c.code || (c.code == 200 && (a.echo["body"] != c.body || a.echo["consumer"] != c.who)) {
			t.Fatalf("%s pays %s: %d %s", c.who, c.body, a.code, a.body)
		}
	}

	// A frozen OPA accepts connections and never answers.
	opa.Freeze()
	defer opa.Thaw()
	if a := call(t, "GET", dp.url+"/orders/1", keys["alice"]); a.code != 503 || a.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(a.body, "ext-authz-unavailable") {
		t.Fatalf("fail_closed: %d %s", a.code, a.body)
	}
	if a := call(t, "GET", dp.url+"/open/orders/1", keys["carol"]); a.code != 200 {
		t.Fatalf("fail_open: %d %s", a.code, a.body)
	}
	opa.Thaw()
	testutil.Eventually(t, 10*time.Second, func() bool { return call(t, "GET", dp.url+"/orders/1", keys["alice"]).code == 200 },
		"decisions again once OPA answers")
	checkDecisions(t, dp, []decisionCount{{"orders", "allowed", 3}, {"orders", "denied", 4}, {"orders", "error_denied", 1}, {"orders-open", "error_allowed", 1}}, "orders")
}

// TestExtAuthzOPAGRPC: Envoy's ext_authz gRPC API (ext_authz.grpc) through
// the real binaries, with OPA's Rego engine deciding an opa-envoy-plugin
// policy on the API key's consumer: the policy's header reaches the
// service and cannot be forged, its denials (status, body, headers) reach
// the client, and a hung service fails closed by default and open when
// asked.
func TestExtAuthzOPAGRPC(t *testing.T) {
	opa := testutil.StartOPAExtAuthz(t, envoyPolicy, "")
	dp, keys := extAuthzStack(t, map[string]config.Route{
		"reports": {Paths: []string{"/reports/*"}, ExtAuthz: &config.ExtAuthz{GRPC: &config.ExtAuthzGRPC{Address: opa.Addr}, Timeout: checkTimeout,
			UpstreamHeaders: []string{"X-User-Tier"}, ClientHeaders: []string{"X-Policy"}}},
		"export": {Paths: []string{"/reports/export"}, ExtAuthz: &config.ExtAuthz{GRPC: &config.ExtAuthzGRPC{Address: opa.Addr}, Timeout: checkTimeout,
			UpstreamHeaders: []string{"X-User-Tier"}, IncludeBody: &config.ExtAuthzBody{MaxBytes: 64}}},
		"reports-open": {Paths: []string{"/open/reports/*"}, ExtAuthz: &config.ExtAuthz{GRPC: &config.ExtAuthzGRPC{Address: opa.Addr}, Timeout: checkTimeout,
			FailureMode: config.FailOpen, UpstreamHeaders: []string{"X-User-Tier"}}},
	})
	testutil.Eventually(t, 15*time.Second, func() bool { return call(t, "GET", dp.url+"/reports/q1", keys["alice"]).code == 200 },
		"the data plane applying the ext_authz routes")

	if a := call(t, "GET", dp.url+"/reports/q1", keys["alice"]); a.code != 200 || a.echo["tier"] != "gold" || a.echo["policy"] != "" {
		t.Fatalf("alice: %d %s", a.code, a.body)
	}
	// The tier is the policy's, never the client's (also when the client
	// names it in Connection).
	if a := call(t, "GET", dp.url+"/reports/q1", keys["bob"], "X-User-Tier", "gold", "Connection", "X-User-Tier"); a.code != 200 || a.echo["tier"] != "silver" {
		t.Fatalf("bob: %d %s", a.code, a.body)
	}
	if a := call(t, "GET", dp.url+"/reports/premium", keys["alice"]); a.code != 200 || a.echo["tier"] != "gold" {
		t.Fatalf("alice, premium: %d %s", a.code, a.body)
	}
	a := call(t, "GET", dp.url+"/reports/premium", keys["bob"])
	if a.code != 402 || a.body != "premium reports need the gold tier" || a.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("bob, premium: %d %v %s", a.code, a.header, a.body)
	}
	a = call(t, "GET", dp.url+"/reports/q1", keys["carol"])
	if a.code != 403 || a.body != `{"error":"forbidden by policy"}` || a.header.Get("X-Policy") != "reports-v1" || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("carol: %d %v %s", a.code, a.header, a.body)
	}
	if a := call(t, "POST", dp.url+"/reports/q1", keys["alice"]); a.code != 403 {
		t.Fatalf("alice, POST: %d %s", a.code, a.body)
	}
	// The body decides (include_body), and still reaches the service.
	if a := callBody(t, "POST", dp.url+"/reports/export", keys["bob"], `{"format":"csv"}`); a.code != 200 || a.echo["body"] != `{"format":"csv"}` || a.echo["tier"] != "silver" {
		t.Fatalf("bob, csv export: %d %s", a.code, a.body)
	}
	if a := callBody(t, "POST", dp.url+"/reports/export", keys["bob"], `{"format":"xlsx"}`); a.code != 403 {
		t.Fatalf("bob, xlsx export: %d %s", a.code, a.body)
	}
	if a := callBody(t, "POST", dp.url+"/reports/export", keys["bob"], `{"format":"csv","pad":"`+strings.Repeat("x", 64)+`"}`); a.code != 413 {
		t.Fatalf("bob, export over include_body: %d %s", a.code, a.body)
	}

	opa.Freeze()
	defer opa.Thaw()
	if a := call(t, "GET", dp.url+"/reports/q1", keys["alice"]); a.code != 503 || a.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(a.body, "ext-authz-unavailable") {
		t.Fatalf("fail_closed: %d %s", a.code, a.body)
	}
	// fail_open: through, unchanged, and still without the forged tier.
	if a := call(t, "GET", dp.url+"/open/reports/q1", keys["carol"], "X-User-Tier", "gold"); a.code != 200 || a.echo["tier"] != "" {
		t.Fatalf("fail_open: %d %s", a.code, a.body)
	}
	opa.Thaw()
	testutil.Eventually(t, 10*time.Second, func() bool { return call(t, "GET", dp.url+"/reports/q1", keys["alice"]).code == 200 },
		"decisions again once the service answers")
	checkDecisions(t, dp, []decisionCount{{"reports", "allowed", 4}, {"reports", "denied", 3}, {"reports", "error_denied", 1}, {"reports-open", "error_allowed", 1}}, "reports")
}
