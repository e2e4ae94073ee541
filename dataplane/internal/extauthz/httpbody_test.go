package extauthz

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestHTTPBody: with include_body a forward-auth check is a POST carrying
// the request body with its Content-Type (also when request_headers does
// not list it), an empty one for a request without a body; the service
// behind the route still gets the whole body; a body over max_bytes is
// refused (413) without asking; without include_body the check stays a
// GET without a body.
func TestHTTPBody(t *testing.T) {
	f := newFixture(t)
	var (
		mu                  sync.Mutex
		method, body, ctype string
	)
	f.svc.answer = func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		method, body, ctype = r.Method, string(b), r.Header.Get("Content-Type")
		mu.Unlock()
	}
	withBody := f.stage(config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: f.url}, RequestHeaders: []string{"X-Request-Tag"},
		IncludeBody: &config.ExtAuthzBody{MaxBytes: 16}})
	without := f.stage(config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: f.url}, RequestHeaders: []string{"X-Request-Tag"}})
	for _, c := range []struct {
		name        string
		sent        string // the client's body
		include     bool
		code        int
		asked       bool
		method      string
		body, ctype string // what the check carried
	}{
		{"JSON body", `{"amount":50}`, true, 200, true, "POST", `{"amount":50}`, "application/json"},
		{"at the bound", `{"amount":12345}`, true, 200, true, "POST", `{"amount":12345}`, "application/json"},
		{"no body", "", true, 200, true, "POST", "", ""},
		{"over the bound", `{"amount":123456}`, true, 413, false, "", "", ""},
		{"without include_body", `{"amount":50}`, false, 200, true, "GET", "", ""},
	} {
		st, sent := without, c.sent
		if c.include {
			st = withBody
		}
		before := f.svc.count()
		mu.Lock()
		method, body, ctype = "", "", ""
		mu.Unlock()
		w, up := run(st, func(r *http.Request) {
			r.Body, r.ContentLength = http.NoBody, 0
			if sent != "" {
				r.Body = io.NopCloser(strings.NewReader(sent))
				r.ContentLength = -1 // chunked: the bound is the stage's own
				r.Header.Set("Content-Type", "application/json")
			}
		})
		if w.Code != c.code {
			t.Fatalf("%s: %d %s", c.name, w.Code, w.Body)
		}
		if asked := f.svc.count() > before; asked != c.asked {
			t.Fatalf("%s: asked %v", c.name, asked)
		}
		if !c.asked {
			if up.got != nil {
				t.Fatalf("%s: forwarded", c.name)
			}
			continue
		}
		mu.Lock()
		if method != c.method || body != c.body || ctype != c.ctype {
			t.Errorf("%s: the check was %s %q (%q), want %s %q (%q)", c.name, method, body, ctype, c.method, c.body, c.ctype)
		}
		mu.Unlock()
		if up.body != sent {
			t.Errorf("%s: the service got %q, want %q", c.name, up.body, sent)
		}
	}
}

// bodyPolicy makes OPA's own server a forward-auth service deciding on the
// request body: OPA's authorizer reads the JSON body of a POST to
// /v1/data/... as input.body, so with include_body the check's body is the
// client's. alice may pay up to 1000, bob up to 100.
const bodyPolicy = `package system.authz

default allow := false

limits := {"alice": 1000, "bob": 100}

hdr(name) := object.get(input.headers, name, [""])[0]

allow if {
	input.method == "POST"
	input.path == ["v1", "data", "payments"]
	hdr("X-Forwarded-Method") == "POST"
	hdr("X-Forwarded-Uri") == "/payments"
	input.body.amount <= limits[hdr("X-Consumer-Name")]
}
`

// TestHTTPBodyOPA: a real OPA server decides on the body that include_body
// sends: within alice's limit 200 and the whole body reaches the route's
// service, over it OPA's 401, a body OPA cannot read OPA's 400, and a
// body over max_bytes 413 before OPA is asked.
func TestHTTPBodyOPA(t *testing.T) {
	opa := testutil.StartOPAServer(t, bodyPolicy)
	f := newFixture(t)
	st := f.stage(config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: "http://" + opa.Addr + "/v1/data/payments"},
		IncludeBody: &config.ExtAuthzBody{MaxBytes: 64}})
	for _, c := range []struct {
		body string
		code int
		in   string // in the answer
	}{
		{`{"amount":500,"to":"bob"}`, 200, ""},
		{`{"amount":1000}`, 200, ""},
		{`{"amount":1001}`, 401, "request rejected by administrative policy"},
		{`{"to":"bob"}`, 401, "request rejected by administrative policy"},
		{`amount=5`, 400, "invalid_parameter"},
		{`{"amount":5,"memo":"` + strings.Repeat("x", 64) + `"}`, 413, "too-large"},
	} {
		w, up := run(st, func(r *http.Request) {
			r.URL.Path, r.URL.RawQuery = "/payments", ""
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(c.body)), int64(len(c.body))
			r.Header.Set("Content-Type", "application/json")
		})
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.in) {
			t.Fatalf("%s: %d %s, want %d with %q", c.body, w.Code, w.Body, c.code, c.in)
		}
		if c.code == 200 && up.body != c.body {
			t.Fatalf("%s: the service got %q", c.body, up.body)
		}
		if c.code != 200 && up.got != nil {
			t.Fatalf("%s: forwarded after a refusal", c.body)
		}
	}
}
