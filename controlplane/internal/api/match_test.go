package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestRouteMatchingAPI: a route's conditions are validated with field
// paths (422), two routes that can never be told apart are refused with
// 409 naming the other, and every route answer carries its precedence
// (output only: sending it back changes nothing).
func TestRouteMatchingAPI(t *testing.T) {
	s := newTestServer(t, true)
	s.mustStatus(t, 201, "PUT", "/v1/services/users", `{"targets":[{"url":"http://127.0.0.1:9001"}]}`)
	_, body := s.mustStatus(t, 201, "PUT", "/v1/routes/users-v2",
		`{"paths":["/users/{id:[0-9]+}","/users/*"],"service":"users","priority":3,"match":{"headers":{"x-api-version":"2"},"query":{"beta":{"present":true}}}}`)
	var r config.Route
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	want := config.Precedence{PathKinds: []string{"template", "prefix"}, Conditions: 2, Priority: 3,
		Key: `header "X-Api-Version" exact "2", query "beta" present "true"`}
	if r.Precedence == nil || strings.Join(r.Precedence.PathKinds, ",") != "template,prefix" || r.Precedence.Key != want.Key ||
		r.Precedence.Conditions != 2 || r.Precedence.Priority != 3 {
		t.Fatalf("precedence %+v, want %+v", r.Precedence, want)
	}
	if _, ok := r.Match.Headers["X-Api-Version"]; !ok {
		t.Fatalf("header name not canonical: %v", r.Match.Headers)
	}
	_, list := s.mustStatus(t, 200, "GET", "/v1/routes", "")
	if !strings.Contains(string(list), `"precedence":{"path_kinds":["template","prefix"],"conditions":2,"priority":3`) {
		t.Fatalf("list without precedence: %s", list)
	}
	// GET output PUT back is a no-op (same version).
	_, got := s.mustStatus(t, 200, "GET", "/v1/routes/users-v2", "")
	h, _ := s.mustStatus(t, 200, "PUT", "/v1/routes/users-v2", string(got))
	if h.Get("ETag") != `"1"` {
		t.Fatalf("PUT of the GET output made version %s", h.Get("ETag"))
	}

	_, prob := s.mustStatus(t, 409, "PUT", "/v1/routes/again",
		`{"paths":["/users/{n:[0-9]+}"],"service":"users","priority":9,"match":{"query":{"beta":{"present":true}},"headers":{"X-API-Version":{"exact":"2"}}}}`)
	if !strings.Contains(string(prob), `route \"users-v2\"`) || !strings.Contains(string(prob), "paths[0]") {
		t.Fatalf("conflict does not name the route and path: %s", prob)
	}
	s.mustStatus(t, 201, "PUT", "/v1/routes/v3", `{"paths":["/users/{n:[0-9]+}"],"service":"users","match":{"headers":{"X-Api-Version":"3"}}}`)

	_, prob = s.mustStatus(t, 422, "PUT", "/v1/routes/bad",
		`{"paths":["/u/{id:[0-9}"],"service":"users","priority":20000,"match":{"headers":{"X-A":{"regex":"(a|b){1000}"}},"cookies":{"c":{"exact":"1","prefix":"1"}}}}`)
	for _, field := range []string{"paths[0]", "priority", "match.headers.X-A.regex", "match.cookies.c"} {
		if !strings.Contains(string(prob), `"field":"`+field+`"`) {
			t.Fatalf("problem without field %s: %s", field, prob)
		}
	}
}
