package router

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

func hdr(name string, v config.ValueMatch) *config.RouteMatch {
	return &config.RouteMatch{Headers: map[string]config.ValueMatch{name: v}}
}

// TestPrecedence walks the documented order on one table: path kind
// first (static, constrained {param}, {param}, prefix), then the method,
// then the number of conditions, then priority, then the name.
func TestPrecedence(t *testing.T) {
	yes, no := true, false
	rules := []Rule{
		{Name: "prefix", Paths: []string{"/users/*"}},
		{Name: "template", Paths: []string{"/users/{name}"}},
		{Name: "numeric", Paths: []string{"/users/{id:[0-9]+}"}},
		{Name: "exact", Paths: []string{"/users/me"}},
		{Name: "v2", Paths: []string{"/users/{name}"}, Match: hdr("X-Api-Version", config.ValueMatch{Exact: "2"})},
		{Name: "v2-beta", Paths: []string{"/users/{name}"}, Match: &config.RouteMatch{
			Headers: map[string]config.ValueMatch{"X-Api-Version": {Exact: "2"}},
			Query:   map[string]config.ValueMatch{"beta": {Present: &yes}},
		}},
		{Name: "tenant-b", Paths: []string{"/users/{name}"}, Match: hdr("X-Tenant", config.ValueMatch{Prefix: "acme"})},
		{Name: "tenant-a", Paths: []string{"/users/{name}"}, Match: hdr("X-Tenant", config.ValueMatch{Regex: "acme-[a-z]+"}), Priority: 5},
		{Name: "no-debug-cookie", Paths: []string{"/users/{name}"}, Methods: []string{"DELETE"}, Match: &config.RouteMatch{
			Cookies: map[string]config.ValueMatch{"debug": {Present: &no}},
		}},
		{Name: "a-cookie", Paths: []string{"/items"}, Match: &config.RouteMatch{Cookies: map[string]config.ValueMatch{"session": {Prefix: "s-"}}}},
		{Name: "b-cookie", Paths: []string{"/items"}, Match: &config.RouteMatch{Cookies: map[string]config.ValueMatch{"group": {Exact: "beta"}}}},
	}
	tab := mustCompile(t, rules)
	cases := []struct {
		name, method, path string
		header             http.Header
		query              string
		want               string
	}{
		{"exact path first", "GET", "/users/me", http.Header{"X-Api-Version": {"2"}}, "", "exact"},
		{"constrained before template, conditions or not", "GET", "/users/42", http.Header{"X-Api-Version": {"2"}}, "", "numeric"},
		{"template when the constraint fails", "GET", "/users/bob", nil, "", "template"},
		{"prefix below", "GET", "/users/bob/x", nil, "", "prefix"},
		{"a condition beats none", "GET", "/users/bob", http.Header{"X-Api-Version": {"2"}}, "", "v2"},
		{"two conditions beat one", "GET", "/users/bob", http.Header{"X-Api-Version": {"2"}}, "beta", "v2-beta"},
		{"query parameter decoded", "GET", "/users/bob", http.Header{"X-Api-Version": {"2"}}, "x=1&b%65ta=", "v2-beta"},
		{"first header value only", "GET", "/users/bob", http.Header{"X-Api-Version": {"1", "2"}}, "", "template"},
		{"priority among equal counts", "GET", "/users/bob", http.Header{"X-Tenant": {"acme-x"}}, "", "tenant-a"},
		{"regex is anchored", "GET", "/users/bob", http.Header{"X-Tenant": {"acme-x1"}}, "", "tenant-b"},
		{"method beats conditions", "DELETE", "/users/bob", http.Header{"X-Api-Version": {"2"}}, "", "no-debug-cookie"},
		{"absent fails when present", "DELETE", "/users/bob", http.Header{"Cookie": {"a=1; debug=1"}}, "", "template"},
		{"name breaks ties", "GET", "/items", http.Header{"Cookie": {"group=beta; session=s-1"}}, "", "a-cookie"},
		{"quoted cookie value", "GET", "/items", http.Header{"Cookie": {`x=1`, `group="beta"`}}, "", "b-cookie"},
		{"no condition holds: nothing", "GET", "/items", http.Header{"Cookie": {"group=alpha"}}, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m Match
			got := ""
			if tab.MatchRequest("h", c.method, c.path, &Inputs{Header: c.header, RawQuery: c.query}, &m) {
				got = rules[m.Route].Name
			}
			if got != c.want {
				t.Fatalf("matched %q, want %q", got, c.want)
			}
		})
	}
}

// TestConditionConflicts: the same conditions (in any spelling) on the
// same key are refused; different conditions, or a constraint, are not.
func TestConditionConflicts(t *testing.T) {
	cases := []struct {
		name  string
		rules []Rule
		want  string // "" = accepted
	}{
		{"same conditions", []Rule{
			{Paths: []string{"/a"}, Match: hdr("X-A", config.ValueMatch{Exact: "1"})},
			{Paths: []string{"/a"}, Match: hdr("X-A", config.ValueMatch{Exact: "1"}), Priority: 3},
		}, `matches the same requests (any method, if header "X-A" exact "1") as rule 0`},
		{"different values", []Rule{
			{Paths: []string{"/a"}, Match: hdr("X-A", config.ValueMatch{Exact: "1"})},
			{Paths: []string{"/a"}, Match: hdr("X-A", config.ValueMatch{Exact: "2"})},
		}, ""},
		{"different forms", []Rule{
			{Paths: []string{"/a"}, Match: hdr("X-A", config.ValueMatch{Exact: "1"})},
			{Paths: []string{"/a"}, Match: hdr("X-A", config.ValueMatch{Prefix: "1"})},
		}, ""},
		{"constraint is another shape", []Rule{
			{Paths: []string{"/a/{id:[0-9]+}"}},
			{Paths: []string{"/a/{x}"}},
			{Paths: []string{"/a/{y:[0-9]+}"}, Methods: []string{"GET"}},
		}, ""},
		{"same constraint, other name", []Rule{
			{Paths: []string{"/a/{id:[0-9]+}"}},
			{Paths: []string{"/a/{n:[0-9]+}"}},
		}, "matches the same requests (any method)"},
		{"bad regex", []Rule{
			{Paths: []string{"/a"}, Match: hdr("X-A", config.ValueMatch{Regex: "("})},
		}, "match: not an RE2 expression"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.rules)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			var ce *CompileError
			if err != nil && !errors.As(err, &ce) {
				t.Fatalf("%v is not a CompileError", err)
			}
		})
	}
}

// TestMatchRequestDoesNotAllocate: conditions of every form and a
// constrained parameter, read in place.
func TestMatchRequestDoesNotAllocate(t *testing.T) {
	rules := []Rule{
		{Paths: []string{"/u/{id:[0-9]+}"}, Match: &config.RouteMatch{
			Headers: map[string]config.ValueMatch{"X-Api-Version": {Regex: "v[0-9]+"}},
			Query:   map[string]config.ValueMatch{"beta": {Exact: "true"}},
			Cookies: map[string]config.ValueMatch{"session": {Prefix: "s-"}},
		}},
		{Paths: []string{"/u/{id}"}},
	}
	tab := mustCompile(t, rules)
	in := &Inputs{
		Header:   http.Header{"X-Api-Version": {"v2"}, "Cookie": {"a=b; session=s-123"}},
		RawQuery: "x=1&beta=true",
	}
	var m Match
	if !tab.MatchRequest("h", "GET", "/u/12", in, &m) || m.Route != 0 {
		t.Fatalf("matched %v %+v", m.Route, m)
	}
	if allocs := testing.AllocsPerRun(200, func() { tab.MatchRequest("h", "GET", "/u/12", in, &m) }); allocs != 0 {
		t.Fatalf("%v allocations per match", allocs)
	}
}

// TestPatternFastPath: the byte-table path answers like the regexp for
// every string over an alphabet around its classes, and is taken for the
// shapes it is meant for.
func TestPatternFastPath(t *testing.T) {
	cases := []struct {
		expr string
		fast bool
	}{
		{"[0-9]+", true}, {`\d{2,4}`, true}, {"acme-[a-z]+", true}, {"s-[0-9a-f]{8}", true},
		{"[a-c]*", true}, {"x[ab]{0,2}", true}, {"(?i)[a-z]+", false}, {"ab[^a]+", false},
		{"(?i)ab[a-z]+", false}, {"[0-9]+x", false}, {"a|b", false}, {"([0-9]+)", false}, {".+", false},
		{"[Kk]+", true}, {"(?i)k+", false},
	}
	alphabet := []string{"", "a", "b", "c", "x", "0", "5", "9", "-", "K", "\u212a", "acme-", "s-", "ab", "A"}
	var values []string
	for _, a := range alphabet {
		for _, b := range alphabet {
			for _, c := range alphabet {
				values = append(values, a+b+c)
			}
		}
	}
	values = append(values, "s-0123abcd", "s-0123abcde", "s-0123abc", "12345", "acme-corp", "acme-Corp")
	for _, c := range cases {
		p, err := newPattern(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		if p.fast != c.fast {
			t.Errorf("%s: fast = %v, want %v", c.expr, p.fast, c.fast)
		}
		for _, v := range values {
			if got, want := p.match(v), p.re.MatchString(v); got != want {
				t.Errorf("%s on %q: %v, regexp says %v", c.expr, v, got, want)
			}
		}
	}
}
