package config

import (
	"errors"
	"strings"
	"testing"
)

func TestRouteMatchValidate(t *testing.T) {
	yes := true
	tests := []struct {
		name  string
		route string // JSON of the route, decoded strictly
		field string // "" = valid
		msg   string
	}{
		{"shorthand and forms", `{"match":{"headers":{"x-api-version":"2","X-Tenant":{"prefix":"acme"}},"query":{"beta":{"present":true}},"cookies":{"canary":{"regex":"yes|1"}}},"priority":5}`, "", ""},
		{"absent", `{"match":{"headers":{"X-Debug":{"present":false}}}}`, "", ""},
		{"constrained param", `{"paths":["/users/{id:[0-9]+}/x/{slug:[a-z-]{1,32}}"]}`, "", ""},
		{"two forms", `{"match":{"headers":{"X-A":{"exact":"1","prefix":"1"}}}}`, "match.headers.X-A", "exactly one"},
		{"no form", `{"match":{"query":{"a":{}}}}`, "match.query.a", "needs one of"},
		{"empty exact", `{"match":{"cookies":{"a":""}}}`, "match.cookies.a", "needs one of"},
		{"bad regex", `{"match":{"headers":{"X-A":{"regex":"(a"}}}}`, "match.headers.X-A.regex", "not an RE2 expression"},
		{"regex too large", `{"match":{"headers":{"X-A":{"regex":"(a|b){1000}"}}}}`, "match.headers.X-A.regex", "too large"},
		{"regex too long", `{"match":{"headers":{"X-A":{"regex":"` + strings.Repeat("a", MaxRegexLen+1) + `"}}}}`, "match.headers.X-A.regex", "longer than"},
		{"perl backreference", `{"match":{"headers":{"X-A":{"regex":"(a)\\1"}}}}`, "match.headers.X-A.regex", "not an RE2"},
		{"bad header name", `{"match":{"headers":{"X A":"1"}}}`, "match.headers.X A", "header name"},
		{"owned header", `{"match":{"headers":{"x-consumer-name":"bob"}}}`, "match.headers.X-Consumer-Name", "cannot be matched"},
		{"host header", `{"match":{"headers":{"Host":"a"}}}`, "match.headers.Host", "cannot be matched"},
		{"bad cookie name", `{"match":{"cookies":{"a b":"1"}}}`, "match.cookies.a b", "cookie name"},
		{"priority range", `{"priority":10001}`, "priority", "between"},
		{"bad constraint", `{"paths":["/u/{id:[0-9}"]}`, "paths[0]", "not an RE2"},
		{"empty constraint", `{"paths":["/u/{id:}"]}`, "paths[0]", "{name:regex}"},
		{"constraint with slash", `{"paths":["/u/{id:a/b}"]}`, "paths[0]", "{name:regex}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Route
			body := `{"name":"r","service":"s","paths":["/a"],` + strings.TrimPrefix(tc.route, "{")
			if strings.Contains(tc.route, `"paths"`) {
				body = `{"name":"r","service":"s",` + strings.TrimPrefix(tc.route, "{")
			}
			if err := Decode([]byte(body), &r); err != nil {
				t.Fatalf("decode: %v", err)
			}
			r.Normalize()
			err := r.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
			for _, f := range FieldErrors(err) {
				if f.Field == tc.field && strings.Contains(f.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("error %v, want %s: ...%s...", err, tc.field, tc.msg)
		})
	}
	_ = yes
}

func TestValueMatchDecodeIsStrict(t *testing.T) {
	var r Route
	err := Decode([]byte(`{"name":"r","paths":["/"],"service":"s","match":{"headers":{"X-A":{"exactly":"1"}}}}`), &r)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "exactly") {
		t.Fatalf("error %v, want a malformed unknown field", err)
	}
}

// TestMatchKeyIsCanonical: conditions written differently but meaning the
// same have one key (so ambiguity sees them), conditions that differ have
// different keys.
func TestMatchKeyIsCanonical(t *testing.T) {
	decode := func(js string) *Route {
		t.Helper()
		var r Route
		if err := Decode([]byte(`{"name":"r","paths":["/"],"service":"s","match":`+js+`}`), &r); err != nil {
			t.Fatal(err)
		}
		r.Normalize()
		return &r
	}
	a := decode(`{"headers":{"x-api-version":"2","X-Tenant":{"prefix":"a"}}}`)
	b := decode(`{"headers":{"X-Tenant":{"prefix":"a"},"X-API-VERSION":{"exact":"2"}}}`)
	if a.Match.Key() != b.Match.Key() {
		t.Fatalf("keys differ:\n%s\n%s", a.Match.Key(), b.Match.Key())
	}
	if want := `header "X-Api-Version" exact "2", header "X-Tenant" prefix "a"`; a.Match.Key() != want {
		t.Fatalf("key %s, want %s", a.Match.Key(), want)
	}
	for _, other := range []string{
		`{"headers":{"x-api-version":"3","X-Tenant":{"prefix":"a"}}}`,
		`{"headers":{"x-api-version":{"prefix":"2"},"X-Tenant":{"prefix":"a"}}}`,
		`{"headers":{"x-api-version":"2"},"query":{"X-Tenant":{"prefix":"a"}}}`,
	} {
		if decode(other).Match.Key() == a.Match.Key() {
			t.Fatalf("%s has the key of %s", other, a.Match.Key())
		}
	}
}

// TestAmbiguityWithConditions: routes that differ only in spelling are
// refused (409, naming the other route); different conditions or a
// constrained parameter are another key. CheckRoute (the admin API's
// write) and Validate agree.
func TestAmbiguityWithConditions(t *testing.T) {
	base := func() *Config {
		return &Config{
			Services: []Service{{Name: "s", Targets: []Target{{URL: "http://127.0.0.1:1", Weight: 1}}}},
			Routes: []*Route{{Name: "v2", Paths: []string{"/users/{id}"}, Service: "s",
				Match: &RouteMatch{Headers: map[string]ValueMatch{"X-Api-Version": {Exact: "2"}}}}},
		}
	}
	tests := []struct {
		name     string
		route    Route
		conflict bool
	}{
		{"same conditions, other spelling and priority", Route{Paths: []string{"/users/{name}"}, Priority: 9,
			Match: &RouteMatch{Headers: map[string]ValueMatch{"x-api-version": {Exact: "2"}}}}, true},
		{"no conditions", Route{Paths: []string{"/users/{name}"}}, false},
		{"other value", Route{Paths: []string{"/users/{name}"},
			Match: &RouteMatch{Headers: map[string]ValueMatch{"X-Api-Version": {Exact: "3"}}}}, false},
		{"constrained", Route{Paths: []string{"/users/{id:[0-9]+}"},
			Match: &RouteMatch{Headers: map[string]ValueMatch{"X-Api-Version": {Exact: "2"}}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			r := tc.route
			r.Name, r.Service = "w", "s"
			r.Normalize()
			check := c.CheckRoute(&r)
			c.Routes = append(c.Routes, &r)
			verr := c.Validate()
			for _, err := range []error{check, verr} {
				if got := errors.Is(err, ErrConflict); got != tc.conflict {
					t.Fatalf("conflict = %v (%v), want %v", got, err, tc.conflict)
				}
				if tc.conflict && !strings.Contains(err.Error(), `same requests as route "v2" (any method any host /users/{} if header "X-Api-Version" exact "2")`) {
					t.Fatalf("message %v does not say which route and why", err)
				}
			}
		})
	}
}

func TestComputePrecedence(t *testing.T) {
	r := Route{Paths: []string{"/a", "/u/{id:[0-9]+}", "/s/*"}, Priority: 3,
		Match: &RouteMatch{Query: map[string]ValueMatch{"v": {Exact: "1"}}}}
	p := r.ComputePrecedence()
	if strings.Join(p.PathKinds, ",") != "exact,template,prefix" || p.Conditions != 1 || p.Priority != 3 || p.Key != `query "v" exact "1"` {
		t.Fatalf("precedence %+v", p)
	}
}
