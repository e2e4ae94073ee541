package router

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// benchRules generates n rules shaped like a multi-tenant gateway's:
// per-service static, parameter and prefix routes, some restricted to
// methods, some to exact or wildcard hosts.
func benchRules(n int) []Rule {
	rules := make([]Rule, n)
	for i := range rules {
		svc := fmt.Sprintf("svc%d", i)
		switch i % 5 {
		case 0:
			rules[i] = Rule{Paths: []string{"/api/v1/" + svc + "/health", "/api/v1/" + svc + "/ready"}, Methods: []string{"GET", "HEAD"}}
		case 1:
			rules[i] = Rule{
				Paths:   []string{"/api/v1/" + svc + "/users/{id}", "/api/v1/" + svc + "/users/{id}/orders/{order}"},
				Methods: []string{"GET", "PUT", "DELETE"},
			}
		case 2:
			rules[i] = Rule{Paths: []string{"/static/" + svc + "/*"}}
		case 3:
			rules[i] = Rule{Paths: []string{"/users/{id}", "/*"}, Hosts: []string{svc + ".example.com"}}
		case 4:
			rules[i] = Rule{Paths: []string{"/api/*"}, Hosts: []string{"*." + svc + ".example.com"}, Methods: []string{"GET"}}
		}
	}
	return rules
}

type benchReq struct {
	host, method, path string
	hit                bool
}

// benchRequests hits rules near the end of the table (the last of each
// kind), so that nothing benefits from being inserted first.
func benchRequests(n int) []benchReq {
	// last(kind) is the highest rule index i < n with i%5 == kind.
	last := func(kind int) string { return fmt.Sprintf("svc%d", (n-1-kind)/5*5+kind) }
	return []benchReq{
		{"gw.example.net", "GET", "/api/v1/" + last(1) + "/users/12345/orders/987", true},
		{"gw.example.net", "GET", "/static/" + last(2) + "/js/app.min.js", true},
		{"gw.example.net", "GET", "/api/v1/" + last(0) + "/health", true},
		{last(3) + ".example.com:443", "GET", "/users/42", true},
		{"a." + last(4) + ".example.com", "GET", "/api/things/1", true},
		{"gw.example.net", "GET", "/api/v1/nosuch/users/1", false},
		{"gw.example.net", "POST", "/api/v1/" + last(1) + "/users/1", false},
	}
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			tab, err := Compile(benchRules(n))
			if err != nil {
				b.Fatal(err)
			}
			reqs := benchRequests(n)
			var m Match
			for _, r := range reqs {
				if got := tab.Match(r.host, r.method, r.path, &m); got != r.hit {
					b.Fatalf("Match(%q, %q, %q) = %v, want %v", r.host, r.method, r.path, got, r.hit)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := &reqs[i%len(reqs)]
				tab.Match(r.host, r.method, r.path, &m)
				i++
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			rules := benchRules(n)
			b.ReportAllocs()
			// Retained size, as opposed to B/op, which counts garbage too.
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			tab, err := Compile(rules)
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(tab)
			for b.Loop() {
				if _, err := Compile(rules); err != nil {
					b.Fatal(err)
				}
			}
			// After the loop: b.Loop's timer reset drops earlier metrics.
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "table-MiB")
		})
	}
}

// benchRulesWithConditions is benchRules with issue 16's matching on top:
// the parameter routes constrain {id} to digits, and every service has
// two more routes on the same paths told apart by a header (exact), a
// query parameter, a cookie (prefix) or a header regex, so a request
// tests conditions at the leaf before it finds its route.
func benchRulesWithConditions(n int) []Rule {
	rules := benchRules(n)
	for i := range rules {
		if i%5 != 1 {
			continue
		}
		svc := fmt.Sprintf("svc%d", i)
		paths := []string{"/api/v1/" + svc + "/users/{id:[0-9]+}", "/api/v1/" + svc + "/users/{id:[0-9]+}/orders/{order}"}
		rules[i].Paths = paths
		rules = append(rules,
			Rule{Name: svc + "-v2", Paths: paths, Methods: rules[i].Methods, Match: &config.RouteMatch{
				Headers: map[string]config.ValueMatch{"X-Api-Version": {Exact: "2"}},
				Query:   map[string]config.ValueMatch{"beta": {Exact: "true"}},
			}},
			Rule{Name: svc + "-canary", Paths: paths, Methods: rules[i].Methods, Match: &config.RouteMatch{
				Headers: map[string]config.ValueMatch{"X-Tenant": {Regex: "acme-[a-z]+"}},
				Cookies: map[string]config.ValueMatch{"canary": {Prefix: "yes"}},
			}},
		)
	}
	return rules[:n]
}

func BenchmarkMatchConditions(b *testing.B) {
	for _, n := range []int{10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			rules := benchRulesWithConditions(n)
			tab, err := Compile(rules)
			if err != nil {
				b.Fatal(err)
			}
			// The last parameter route kept in the list, and three requests
			// to it: one passing the two-condition v2 route, one the
			// canary's regex and cookie, one neither (falls to the plain
			// route after testing both).
			last := 0
			for i := range rules {
				if i%5 == 1 && strings.Contains(rules[i].Paths[0], "{id:") {
					last = i
				}
			}
			path := "/api/v1/svc" + fmt.Sprint(last) + "/users/12345/orders/987"
			ins := []*Inputs{
				{Header: http.Header{"X-Api-Version": {"2"}, "Accept": {"*/*"}}, RawQuery: "page=2&beta=true"},
				{Header: http.Header{"X-Tenant": {"acme-corp"}, "Cookie": {"session=abc; canary=yes-1"}}},
				{Header: http.Header{"X-Api-Version": {"1"}, "Cookie": {"session=abc"}}, RawQuery: "page=2"},
			}
			var m Match
			for _, in := range ins {
				if !tab.MatchRequest("gw.example.net", "GET", path, in, &m) {
					b.Fatalf("no match for %s %+v", path, in)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tab.MatchRequest("gw.example.net", "GET", path, ins[i%len(ins)], &m)
				i++
			}
		})
	}
}
