package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// TestCompileSkipsRejectedObjects: objects a data plane cannot apply (here:
// an issuer whose key is not a key, a service with a target the data plane
// refuses, a route with an out-of-range field, all of which a control plane
// of another version could have sent) are left out; the rest of the
// revision serves, an API key keeps working, and the routes that depend on
// a rejected object answer 503 config-rejected instead of falling through
// to a broader route.
func TestCompileSkipsRejectedObjects(t *testing.T) {
	up := headerEcho(t)
	key, id, hash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Services: []config.Service{
			{Name: "s", Targets: []config.Target{{URL: up.URL}}},
			{Name: "bad-svc", Targets: []config.Target{{URL: "ftp://h:1"}}},
		},
		Consumers: []config.Consumer{{Name: "alice", APIKeys: []config.APIKey{{ID: id, Hash: hash, Prefix: apikey.Prefix(key)}}}},
		Issuers: []config.Issuer{
			{Name: "broken", Issuer: "https://broken.example", Algorithms: []string{"RS256"}, Keys: []string{"not a key"}},
			{Name: "corp", Issuer: "https://id.example.com", Algorithms: []string{"HS256"}, Keys: []string{hmacSecret}},
		},
		Routes: []*config.Route{
			{Name: "catch-all", Paths: []string{"/*"}, Service: "s"},
			{Name: "keyed", Paths: []string{"/keyed"}, Service: "s", Auth: &config.RouteAuth{APIKey: true}},
			{Name: "needs-broken", Paths: []string{"/secure/*"}, Service: "s", Auth: &config.RouteAuth{JWT: true, Issuers: []string{"broken"}}},
			{Name: "on-bad-svc", Paths: []string{"/bad-svc"}, Service: "bad-svc"},
			{Name: "bad-route", Paths: []string{"/bad-route"}, Service: "s", MaxInFlight: -1},
		},
	}
	h, gw := newGateway(t, nil)
	rejected := applyCfg(t, h, 7, cfg)

	tests := []struct {
		name, path string
		hdr        []string
		status     int
		contains   string
	}{
		{"unrelated route serves", "/anything", nil, 200, "X-Forwarded-For"},
		{"api key still authenticates", "/keyed", []string{"X-Api-Key", key}, 200, `"X-Consumer-Name":["alice"]`},
		{"route of a rejected issuer", "/secure/x", nil, 503, "config-rejected"},
		{"route of a rejected service", "/bad-svc", nil, 503, "config-rejected"},
		{"rejected route does not fall through to /*", "/bad-route", nil, 503, "config-rejected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := do(t, "GET", gw+tt.path, nil, tt.hdr...)
			if code != tt.status || !strings.Contains(body, tt.contains) {
				t.Fatalf("GET %s = %d %s; want %d containing %q", tt.path, code, body, tt.status, tt.contains)
			}
			if code == 503 && strings.Contains(body, "not a key") {
				t.Fatalf("the 503 leaks the reason to the client: %s", body)
			}
		})
	}

	got := map[string]string{}
	for _, r := range rejected {
		got[string(r.Kind)+"/"+r.Name] = r.Reason
	}
	for _, want := range []struct{ obj, reason string }{
		{"issuer/broken", "keys[0]"},
		{"service/bad-svc", "scheme"},
		{"route/needs-broken", `issuer "broken"`},
		{"route/on-bad-svc", `service "bad-svc"`},
		{"route/bad-route", "max_in_flight"},
	} {
		if !strings.Contains(got[want.obj], want.reason) {
			t.Errorf("Rejected()[%s] = %q; want a reason mentioning %q (all: %v)", want.obj, got[want.obj], want.reason, got)
		}
	}
	if len(got) != 5 {
		t.Errorf("Rejected() = %v; want exactly the 5 objects above", got)
	}
}

// TestRejectedAgainstTableInService: compiled against the table in service
// (as every revision after the first is), an object that turns bad is
// rejected all the same, a route depending on it answers 503 even though
// the route itself did not change, and fixing the object brings it back.
func TestRejectedAgainstTableInService(t *testing.T) {
	up := headerEcho(t)
	cfg := func(rev int64, keys []string) *snapshot.Snapshot {
		c := &config.Config{
			Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}, Meta: config.Meta{Version: 1, Revision: 1}}},
			Issuers: []config.Issuer{{Name: "corp", Issuer: "https://id.example.com", Algorithms: []string{"HS256"}, Keys: keys,
				Meta: config.Meta{Version: rev, Revision: rev}}},
			Routes: []*config.Route{
				{Name: "open", Paths: []string{"/open"}, Service: "s", Meta: config.Meta{Version: 1, Revision: 1}},
				{Name: "secure", Paths: []string{"/secure"}, Service: "s", Auth: &config.RouteAuth{JWT: true, Issuers: []string{"corp"}},
					Meta: config.Meta{Version: 1, Revision: 1}},
			},
		}
		s, _, err := snapshot.Encode(rev, c, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	h, gw := newGateway(t, nil)
	applier := NewApplier(h, testDeps())
	t.Cleanup(applier.Close)
	steps := []struct {
		keys   []string
		secure int // status of /secure without credentials
	}{
		{[]string{hmacSecret}, 401},
		{[]string{"short"}, 503}, // the issuer turns bad: refused by validation
		{[]string{hmacSecret}, 401},
	}
	for i, st := range steps {
		if _, err := applier.Apply(cfg(int64(i+1), st.keys)); err != nil {
			t.Fatalf("revision %d: %v", i+1, err)
		}
		if code, _, _ := do(t, "GET", gw+"/open", nil); code != 200 {
			t.Fatalf("revision %d: /open = %d", i+1, code)
		}
		if code, _, body := do(t, "GET", gw+"/secure", nil); code != st.secure {
			t.Fatalf("revision %d: /secure = %d %s, want %d", i+1, code, body, st.secure)
		}
	}
	t.Cleanup(func() { h.Table().Retire(nil) })
}
