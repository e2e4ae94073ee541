package proxy

import (
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestRouteConditions: requests through the real handler to real upstreams
// pick routes by header, query and cookie conditions, a constrained
// parameter and priority; an incremental compile that changes only a
// route's conditions or priority is seen (sameRule compares them).
func TestRouteConditions(t *testing.T) {
	v1, v2, beta, canary := echoUpstream(t, "v1"), echoUpstream(t, "v2"), echoUpstream(t, "beta"), echoUpstream(t, "canary")
	yes := true
	svc := func(name, url string) config.Service {
		return config.Service{Name: name, Targets: []config.Target{{URL: url}}}
	}
	cfg := &config.Config{
		Services: []config.Service{svc("beta", beta.URL), svc("canary", canary.URL), svc("v1", v1.URL), svc("v2", v2.URL)},
		Routes: []*config.Route{
			{Name: "beta", Paths: []string{"/users/{id}"}, Service: "beta", Match: &config.RouteMatch{
				Headers: map[string]config.ValueMatch{"X-Api-Version": {Exact: "2"}},
				Query:   map[string]config.ValueMatch{"beta": {Present: &yes}},
			}},
			{Name: "canary", Paths: []string{"/users/{id}"}, Service: "canary", Priority: 1, Match: &config.RouteMatch{
				Cookies: map[string]config.ValueMatch{"canary": {Prefix: "yes"}},
			}},
			{Name: "numeric", Paths: []string{"/users/{id:[0-9]+}"}, Service: "v1", Methods: []string{"DELETE"}},
			{Name: "users-v1", Paths: []string{"/users/{id}"}, Service: "v1"},
			{Name: "users-v2", Paths: []string{"/users/{id}"}, Service: "v2", Match: &config.RouteMatch{
				Headers: map[string]config.ValueMatch{"X-Api-Version": {Regex: "2|2\\.[0-9]+"}},
			}},
		},
	}
	h, gw := newGateway(t, cfg)
	cases := []struct {
		name, method, path string
		hdr                []string
		want               string
	}{
		{"no conditions", "GET", "/users/7", nil, "v1 GET /users/7"},
		{"header regex", "GET", "/users/7", []string{"X-Api-Version", "2.1"}, "v2 GET"},
		{"regex anchored", "GET", "/users/7", []string{"X-Api-Version", "12"}, "v1 GET"},
		{"two conditions win", "GET", "/users/7?beta", []string{"X-Api-Version", "2"}, "beta GET /users/7?beta"},
		{"priority breaks a tie", "GET", "/users/7", []string{"X-Api-Version", "2", "Cookie", "canary=yes"}, "canary GET"},
		{"constrained, method", "DELETE", "/users/7", nil, "v1 DELETE"},
		{"constraint fails", "DELETE", "/users/x7", []string{"X-Api-Version", "2"}, "v2 DELETE"},
	}
	check := func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				code, _, body := do(t, c.method, gw+c.path, nil, c.hdr...)
				if code != 200 || !strings.HasPrefix(body, c.want) {
					t.Fatalf("%s %s %q = %d %q, want %q", c.method, c.path, c.hdr, code, body, c.want)
				}
			})
		}
	}
	check(t)

	// Only the canary's priority and the v2 route's conditions change: the
	// incremental compile must not keep the old router.
	next := cfg.Clone()
	next.Routes[1].Priority = -1
	next.Routes[1].Revision, next.Routes[1].Version = 2, 2
	next.Routes[4].Match = &config.RouteMatch{Headers: map[string]config.ValueMatch{"X-Api-Version": {Exact: "3"}}}
	next.Routes[4].Revision, next.Routes[4].Version = 2, 2
	applyCfg(t, h, 2, next)
	cases = []struct {
		name, method, path string
		hdr                []string
		want               string
	}{
		{"lower priority loses now", "GET", "/users/7", []string{"X-Api-Version", "3", "Cookie", "canary=yes"}, "v2 GET"},
		{"changed condition", "GET", "/users/7", []string{"X-Api-Version", "3"}, "v2 GET"},
		{"old condition gone", "GET", "/users/7", []string{"X-Api-Version", "2.1"}, "v1 GET"},
	}
	check(t)
}
