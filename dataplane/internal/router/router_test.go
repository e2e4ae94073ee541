package router

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// result is a comparable view of a Match, with the rule given by name in
// the fixture tests and by index elsewhere.
type result struct {
	OK        bool
	Rule      string
	Path      int
	PrefixLen int
	Params    []string // "name=value" in pattern order
}

func resultOf(ok bool, m *Match, names []string) result {
	if !ok {
		return result{}
	}
	r := result{OK: true, Rule: fmt.Sprint(m.Route), Path: m.Path, PrefixLen: m.PrefixLen}
	if names != nil {
		r.Rule = names[m.Route]
	}
	for i := 0; i < m.Params.Len(); i++ {
		k, v := m.Params.At(i)
		r.Params = append(r.Params, k+"="+v)
	}
	return r
}

type namedRule struct {
	name string
	Rule
}

// fixture exercises every precedence rule at once; several tests share it
// so that each case also proves the other rules did not interfere.
var fixture = []namedRule{
	{"root", Rule{Paths: []string{"/"}}},
	{"catchall", Rule{Paths: []string{"/*"}}},
	{"health", Rule{Paths: []string{"/health"}}},
	{"user", Rule{Paths: []string{"/users/{id}"}}},
	{"me", Rule{Paths: []string{"/users/me"}}},
	{"userX", Rule{Paths: []string{"/users/{id}/x"}}},
	{"users", Rule{Paths: []string{"/users/*"}}},
	{"posts", Rule{Paths: []string{"/users/{uid}/posts/{pid}", "/u/{uid}/p/{pid}"}}},
	{"static", Rule{Paths: []string{"/static/*"}}},
	{"css", Rule{Paths: []string{"/static/css/*"}}},
	{"dirSlash", Rule{Paths: []string{"/dir/"}}},
	{"dir", Rule{Paths: []string{"/dir"}}},
	{"ordersGet", Rule{Paths: []string{"/orders"}, Methods: []string{"GET", "HEAD"}}},
	{"ordersAny", Rule{Paths: []string{"/orders"}}},
	{"ordersPost", Rule{Paths: []string{"/orders"}, Methods: []string{"POST"}}},
	{"adminGet", Rule{Paths: []string{"/admin/{x}"}, Methods: []string{"GET"}}},
	{"xParam", Rule{Paths: []string{"/x/{p}/static"}}},
	{"xLit", Rule{Paths: []string{"/x/lit/{q}"}}},
	{"files", Rule{Paths: []string{"/files/{bucket}/*"}}},
	{"multi", Rule{Paths: []string{"/multi/{a}/{b}/{c}"}}},
	{"apiUser", Rule{Paths: []string{"/users/{id}"}, Hosts: []string{"api.example.com"}}},
	{"apiV1Get", Rule{Paths: []string{"/v1/*"}, Hosts: []string{"api.example.com", "api2.example.com"}, Methods: []string{"GET"}}},
	{"wild", Rule{Paths: []string{"/users/*", "/w"}, Hosts: []string{"*.example.com"}}},
	{"wildB", Rule{Paths: []string{"/users/*"}, Hosts: []string{"*.b.example.com"}}},
	{"wildPost", Rule{Paths: []string{"/p"}, Hosts: []string{"*.example.com"}, Methods: []string{"POST"}}},
	{"exactP", Rule{Paths: []string{"/p"}, Hosts: []string{"x.b.example.com"}}},
}

func fixtureRules() ([]Rule, []string) {
	rules := make([]Rule, len(fixture))
	names := make([]string, len(fixture))
	for i, f := range fixture {
		rules[i], names[i] = f.Rule, f.name
	}
	return rules, names
}

type matchCase struct {
	name               string
	host, method, path string
	rule               string // "" for no match
	pathIdx, prefixLen int
	params             []string
	prefixLenIsPathLen bool
}

func (c matchCase) want() result {
	if c.rule == "" {
		return result{}
	}
	pl := c.prefixLen
	if c.prefixLenIsPathLen {
		pl = len(c.path)
	}
	return result{OK: true, Rule: c.rule, Path: c.pathIdx, PrefixLen: pl, Params: c.params}
}

// exact builds a case for a non-prefix pattern, whose PrefixLen is len(path).
func exact(name, host, method, path, rule string, params ...string) matchCase {
	return matchCase{name: name, host: host, method: method, path: path, rule: rule, params: params, prefixLenIsPathLen: true}
}

func prefix(name, host, method, path, rule string, plen int, params ...string) matchCase {
	return matchCase{name: name, host: host, method: method, path: path, rule: rule, prefixLen: plen, params: params}
}

func withPath(c matchCase, i int) matchCase { c.pathIdx = i; return c }

var matchCases = []matchCase{
	// Exact patterns, root and trailing slashes.
	exact("root", "", "GET", "/", "root"),
	exact("static exact", "", "GET", "/health", "health"),
	prefix("trailing slash is significant", "", "GET", "/health/", "catchall", 0),
	prefix("exact is not a prefix", "", "GET", "/health/x", "catchall", 0),
	prefix("case-sensitive path", "", "GET", "/Health", "catchall", 0),
	exact("pattern with trailing slash", "", "GET", "/dir/", "dirSlash"),
	exact("pattern without trailing slash", "", "GET", "/dir", "dir"),
	prefix("deeper than trailing slash", "", "GET", "/dir/x", "catchall", 0),

	// Static beats param beats prefix, with backtracking.
	exact("static beats param", "", "GET", "/users/me", "me"),
	exact("param", "", "GET", "/users/7", "user", "id=7"),
	exact("backtrack from static to param", "", "GET", "/users/me/x", "userX", "id=me"),
	exact("param then static", "", "GET", "/users/7/x", "userX", "id=7"),
	prefix("backtrack to prefix", "", "GET", "/users/me/y", "users", len("/users")),
	prefix("prefix covers the bare prefix", "", "GET", "/users", "users", len("/users")),
	prefix("prefix covers the prefix with slash", "", "GET", "/users/", "users", len("/users")),
	prefix("prefix is segment-aligned", "", "GET", "/usersX", "catchall", 0),
	prefix("no leftover params from abandoned branch", "", "GET", "/users/5/posts/9/x", "users", len("/users")),
	exact("two params", "", "GET", "/users/5/posts/9", "posts", "uid=5", "pid=9"),
	withPath(exact("second pattern of a rule", "", "GET", "/u/5/p/9", "posts", "uid=5", "pid=9"), 1),
	exact("three params", "", "GET", "/multi/1/2/3", "multi", "a=1", "b=2", "c=3"),
	prefix("param needs a non-empty segment", "", "GET", "/multi/1//3", "catchall", 0),
	exact("earlier static wins over later static", "", "GET", "/x/lit/static", "xLit", "q=static"),
	exact("param where static fails", "", "GET", "/x/other/static", "xParam", "p=other"),
	prefix("deeper prefix beats shorter", "", "GET", "/static/css/a.css", "css", len("/static/css")),
	prefix("deeper prefix on its own prefix", "", "GET", "/static/css", "css", len("/static/css")),
	prefix("shorter prefix", "", "GET", "/static/js/a.js", "static", len("/static")),
	prefix("prefix after param", "", "GET", "/files/b1/a/b", "files", len("/files/b1"), "bucket=b1"),
	prefix("prefix after param, bare", "", "GET", "/files/b1", "files", len("/files/b1"), "bucket=b1"),
	prefix("prefix after param needs the param", "", "GET", "/files/", "catchall", 0),
	prefix("catch-all", "", "GET", "/nothing/here", "catchall", 0),

	// Methods.
	exact("method-specific beats any", "", "GET", "/orders", "ordersGet"),
	exact("second listed method", "", "HEAD", "/orders", "ordersGet"),
	exact("other specific method", "", "POST", "/orders", "ordersPost"),
	exact("unlisted method falls to any", "", "DELETE", "/orders", "ordersAny"),
	exact("methods are case-sensitive", "", "get", "/orders", "ordersAny"),
	exact("method rule", "", "GET", "/admin/1", "adminGet", "x=1"),
	prefix("method mismatch backtracks to catch-all", "", "DELETE", "/admin/1", "catchall", 0),

	// Hosts.
	exact("exact host beats static in any-host group", "api.example.com", "GET", "/users/me", "apiUser", "id=me"),
	exact("host case and port", "API.Example.COM:8443", "GET", "/users/7", "apiUser", "id=7"),
	exact("host trailing dot", "api.example.com.", "GET", "/users/7", "apiUser", "id=7"),
	exact("host trailing dot and port", "api.example.com.:80", "GET", "/users/7", "apiUser", "id=7"),
	exact("exact host falls back to any-host group", "api.example.com", "GET", "/health", "health"),
	withPath(exact("exact host falls back to wildcard", "api.example.com", "GET", "/w", "wild"), 1),
	prefix("host with methods", "api.example.com", "GET", "/v1/a", "apiV1Get", len("/v1")),
	prefix("second host of a rule", "api2.example.com", "GET", "/v1/a", "apiV1Get", len("/v1")),
	prefix("host method mismatch falls through all groups", "api.example.com", "POST", "/v1/a", "catchall", 0),
	prefix("wildcard", "x.example.com", "GET", "/users/7", "wild", len("/users")),
	prefix("wildcard, several labels", "a.b.c.example.com", "GET", "/users/7", "wild", len("/users")),
	prefix("longest wildcard suffix first", "x.b.example.com", "GET", "/users/7", "wildB", len("/users")),
	prefix("longest wildcard suffix, deeper", "y.x.b.example.com", "GET", "/users/7", "wildB", len("/users")),
	prefix("wildcard needs a label", "b.example.com", "GET", "/users/7", "wild", len("/users")),
	exact("wildcard does not match its apex", "example.com", "GET", "/users/7", "user", "id=7"),
	exact("wildcard does not match a lookalike", "xexample.com", "GET", "/users/7", "user", "id=7"),
	exact("wildcard does not match an empty label", ".example.com", "GET", "/users/7", "user", "id=7"),
	prefix("wildcard host case", "X.EXAMPLE.COM:443", "GET", "/users/7", "wild", len("/users")),
	exact("exact host beats wildcard", "x.b.example.com", "POST", "/p", "exactP"),
	exact("wildcard with method", "y.example.com", "POST", "/p", "wildPost"),
	prefix("wildcard with other method", "y.example.com", "GET", "/p", "catchall", 0),
	exact("IPv6 literal with port", "[::1]:8080", "GET", "/users/7", "user", "id=7"),
	exact("IPv6 literal", "[::1]", "GET", "/users/7", "user", "id=7"),
	exact("empty host", "", "GET", "/users/7", "user", "id=7"),

	// Malformed input matches nothing rather than misbehaving.
	{name: "empty path", host: "", method: "GET", path: ""},
	{name: "relative path", host: "", method: "GET", path: "health"},
}

func TestMatch(t *testing.T) {
	rules, names := fixtureRules()
	tab, err := Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != len(rules) {
		t.Errorf("Len() = %d, want %d", tab.Len(), len(rules))
	}
	for _, c := range matchCases {
		t.Run(c.name, func(t *testing.T) {
			var m Match
			got := resultOf(tab.Match(c.host, c.method, c.path, &m), &m, names)
			if diff := cmp.Diff(c.want(), got); diff != "" {
				t.Errorf("Match(%q, %q, %q) mismatch (-want +got):\n%s", c.host, c.method, c.path, diff)
			}
		})
	}
}

func TestMatchWithoutCatchAll(t *testing.T) {
	tab, err := Compile([]Rule{
		{Paths: []string{"/a"}, Methods: []string{"GET"}},
		{Paths: []string{"/b/{x}"}, Hosts: []string{"b.example.com"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ host, method, path string }{
		{"", "POST", "/a"},
		{"", "GET", "/a/"},
		{"", "GET", "/b/1"},
		{"c.example.com", "GET", "/b/1"},
		{"b.example.com", "GET", "/b/"},
		{"b.example.com", "GET", "/b"},
		{"b.example.com", "GET", "/b/1/2"}, // captures x before failing
	} {
		m := Match{Route: 9, PrefixLen: 9}
		m.Params.n = 1
		if tab.Match(c.host, c.method, c.path, &m) {
			t.Errorf("Match(%q, %q, %q) = true (rule %d), want false", c.host, c.method, c.path, m.Route)
		}
		if diff := cmp.Diff(Match{}, m, cmp.AllowUnexported(Params{})); diff != "" {
			t.Errorf("Match(%q, %q, %q) left m non-zero:\n%s", c.host, c.method, c.path, diff)
		}
	}
}

func TestEmptyAndNilTable(t *testing.T) {
	var m Match
	for _, tab := range []*Table{nil, mustCompile(t, nil)} {
		if tab.Match("a", "GET", "/", &m) {
			t.Errorf("empty table matched")
		}
		if tab.Len() != 0 {
			t.Errorf("Len() = %d", tab.Len())
		}
	}
}

func mustCompile(t testing.TB, rules []Rule) *Table {
	t.Helper()
	tab, err := Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestParams(t *testing.T) {
	tab := mustCompile(t, []Rule{{Paths: []string{"/{a}/x/{b}"}}})
	var m Match
	if !tab.Match("", "GET", "/1/x/22", &m) {
		t.Fatal("no match")
	}
	p := &m.Params
	if v, ok := p.Get("b"); !ok || v != "22" {
		t.Errorf(`Get("b") = %q, %v`, v, ok)
	}
	if v, ok := p.Get("x"); ok || v != "" {
		t.Errorf(`Get("x") = %q, %v, want absent`, v, ok)
	}
	if k, v := p.At(0); k != "a" || v != "1" {
		t.Errorf("At(0) = %q, %q", k, v)
	}
	defer func() {
		if recover() == nil {
			t.Error("At(Len()) did not panic")
		}
	}()
	p.At(p.Len())
}

func TestMaxParams(t *testing.T) {
	var pat, path strings.Builder
	for i := range MaxParams {
		fmt.Fprintf(&pat, "/{p%d}", i)
		fmt.Fprintf(&path, "/v%d", i)
	}
	tab := mustCompile(t, []Rule{{Paths: []string{pat.String()}}})
	var m Match
	if !tab.Match("", "GET", path.String(), &m) || m.Params.Len() != MaxParams {
		t.Fatalf("got %v with %d params", m, m.Params.Len())
	}
	if v, _ := m.Params.Get(fmt.Sprintf("p%d", MaxParams-1)); v != fmt.Sprintf("v%d", MaxParams-1) {
		t.Errorf("last param = %q", v)
	}
	if _, err := Compile([]Rule{{Paths: []string{pat.String() + "/{extra}"}}}); err == nil {
		t.Errorf("compiled a pattern with %d params", MaxParams+1)
	}
}

// TestLongHost checks that hosts longer than any rule host still take part
// in wildcard matching, and that a long exact host is not mistaken for a
// short one.
func TestLongHost(t *testing.T) {
	tab := mustCompile(t, []Rule{
		{Paths: []string{"/"}, Hosts: []string{"*.example.com"}},
		{Paths: []string{"/"}, Hosts: []string{"example.com"}},
		{Paths: []string{"/"}},
	})
	long := strings.Repeat("A", 300)
	for _, c := range []struct {
		host string
		want int
	}{
		{long + ".Example.com", 0},
		{long + "." + strings.Repeat("b.", 100) + "example.com:1", 0},
		{strings.Repeat("a", 400), 2},
		{long + "example.com", 2},
		{"EXAMPLE.COM", 1},
	} {
		var m Match
		if !tab.Match(c.host, "GET", "/", &m) || m.Route != c.want {
			t.Errorf("Match(%.20q...) = rule %d, want %d", c.host, m.Route, c.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	r := func(paths ...string) Rule { return Rule{Paths: paths} }
	tooLong := "/" + strings.Repeat("a", 1024)
	var manyParams strings.Builder
	for i := range MaxParams + 1 {
		fmt.Fprintf(&manyParams, "/{p%d}", i)
	}
	for _, c := range []struct {
		name  string
		rules []Rule
		want  string // substring of the error
		rule  int
		path  int
	}{
		{"empty pattern", []Rule{r("/ok"), r("")}, `rule 1 paths[0] ""`, 1, 0},
		{"relative", []Rule{r("/ok", "users")}, `rule 0 paths[1] "users"`, 0, 1},
		{"double slash", []Rule{r("/a//b")}, `empty segment`, 0, 0},
		{"dot segment", []Rule{r("/a/../b")}, `dot segment`, 0, 0},
		{"star in the middle", []Rule{r("/a/*/b")}, `'*' is only allowed`, 0, 0},
		{"star glued", []Rule{r("/a*")}, `not allowed`, 0, 0},
		{"empty param", []Rule{r("/a/{}")}, `must look like {name}`, 0, 0},
		{"unclosed param", []Rule{r("/a/{id")}, `must look like {name}`, 0, 0},
		{"param in segment", []Rule{r("/a/x{id}")}, `not allowed`, 0, 0},
		{"repeated param", []Rule{r("/{id}/{id}")}, `appears twice`, 0, 0},
		{"too many params", []Rule{r(manyParams.String())}, `at most`, 0, 0},
		{"space", []Rule{r("/a b")}, `not allowed`, 0, 0},
		{"percent", []Rule{r("/a%20b")}, `not allowed`, 0, 0},
		{"too long", []Rule{r(tooLong)}, `longer than`, 0, 0},
		{"no paths", []Rule{r("/a"), {}}, `rule 1: no paths`, 1, -1},
		{"empty method", []Rule{{Paths: []string{"/"}, Methods: []string{""}}}, `method ""`, 0, -1},
		{"lower-case method", []Rule{{Paths: []string{"/"}, Methods: []string{"get"}}}, `method "get"`, 0, -1},
		{"method with space", []Rule{{Paths: []string{"/"}, Methods: []string{"GET "}}}, `method "GET "`, 0, -1},
		{"empty host", []Rule{{Paths: []string{"/"}, Hosts: []string{""}}}, `host ""`, 0, -1},
		{"upper-case host", []Rule{{Paths: []string{"/"}, Hosts: []string{"API.example.com"}}}, `host "API.example.com"`, 0, -1},
		{"host with port", []Rule{{Paths: []string{"/"}, Hosts: []string{"example.com:80"}}}, `host`, 0, -1},
		{"host with trailing dot", []Rule{{Paths: []string{"/"}, Hosts: []string{"example.com."}}}, `host`, 0, -1},
		{"bare star host", []Rule{{Paths: []string{"/"}, Hosts: []string{"*"}}}, `host "*"`, 0, -1},
		{"star only", []Rule{{Paths: []string{"/"}, Hosts: []string{"*."}}}, `host "*."`, 0, -1},
		{"inner star", []Rule{{Paths: []string{"/"}, Hosts: []string{"a.*.com"}}}, `host`, 0, -1},
		{"empty label", []Rule{{Paths: []string{"/"}, Hosts: []string{"a..com"}}}, `host`, 0, -1},
		{"long label", []Rule{{Paths: []string{"/"}, Hosts: []string{strings.Repeat("a", 64) + ".com"}}}, `host`, 0, -1},
		{"hyphen label", []Rule{{Paths: []string{"/"}, Hosts: []string{"-a.com"}}}, `host`, 0, -1},

		{"same path", []Rule{r("/a"), r("/b"), r("/a")}, `rule 2 paths[0] "/a": on any host: matches the same requests (any method) as rule 0 paths[0] "/a"`, 2, 0},
		{"same shape", []Rule{r("/u/{id}"), r("/u/{uid}")}, `as rule 0 paths[0] "/u/{id}"`, 1, 0},
		{"same prefix", []Rule{r("/u/*"), r("/x", "/u/*")}, `rule 1 paths[1]`, 1, 1},
		{"same shape in one rule", []Rule{r("/u/{a}", "/u/{b}")}, `rule 0 paths[1]`, 0, 1},
		{"same method", []Rule{
			{Paths: []string{"/a"}, Methods: []string{"GET", "POST"}},
			{Paths: []string{"/a"}, Methods: []string{"PUT", "POST"}},
		}, `(POST) as rule 0`, 1, 0},
		{"same host", []Rule{
			{Paths: []string{"/a"}, Hosts: []string{"x.com"}},
			{Paths: []string{"/a"}, Hosts: []string{"y.com", "x.com"}},
		}, `on x.com`, 1, 0},
		{"same wildcard", []Rule{
			{Paths: []string{"/a/*"}, Hosts: []string{"*.x.com"}},
			{Paths: []string{"/a/*"}, Hosts: []string{"*.x.com"}},
		}, `on *.x.com`, 1, 0},
		{"same root", []Rule{r("/"), r("/")}, `rule 1 paths[0] "/"`, 1, 0},
		{"same catch-all", []Rule{r("/*"), r("/*")}, `rule 1 paths[0] "/*"`, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab, err := Compile(c.rules)
			if err == nil {
				t.Fatalf("Compile succeeded (%d rules), want error containing %q", tab.Len(), c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *CompileError", err)
			}
			if ce.Rule != c.rule || ce.Path != c.path {
				t.Errorf("error names rule %d path %d, want rule %d path %d", ce.Rule, ce.Path, c.rule, c.path)
			}
		})
	}
}

// TestCompileAccepts lists near-conflicts that are not conflicts.
func TestCompileAccepts(t *testing.T) {
	for _, c := range []struct {
		name  string
		rules []Rule
	}{
		{"method and any", []Rule{
			{Paths: []string{"/a"}, Methods: []string{"GET"}},
			{Paths: []string{"/a"}},
		}},
		{"different methods", []Rule{
			{Paths: []string{"/a"}, Methods: []string{"GET"}},
			{Paths: []string{"/a"}, Methods: []string{"POST"}},
		}},
		{"different hosts", []Rule{
			{Paths: []string{"/a"}, Hosts: []string{"x.com"}},
			{Paths: []string{"/a"}, Hosts: []string{"*.x.com"}},
			{Paths: []string{"/a"}},
		}},
		{"exact and prefix", []Rule{{Paths: []string{"/a"}}, {Paths: []string{"/a/*"}}}},
		{"slash and no slash", []Rule{{Paths: []string{"/a"}}, {Paths: []string{"/a/"}}}},
		{"root and catch-all", []Rule{{Paths: []string{"/"}}, {Paths: []string{"/*"}}}},
		{"param and static", []Rule{{Paths: []string{"/{a}"}}, {Paths: []string{"/a"}}}},
		{"host and method listed twice", []Rule{
			{Paths: []string{"/a"}, Hosts: []string{"x.com", "x.com"}, Methods: []string{"GET", "GET"}},
		}},
		{"extension method", []Rule{{Paths: []string{"/a"}, Methods: []string{"PURGE"}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Compile(c.rules); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestCompileDoesNotRetainRules checks that the table is immune to later
// changes of the slices it was compiled from.
func TestCompileDoesNotRetainRules(t *testing.T) {
	rules := []Rule{{Paths: []string{"/a/{x}"}, Methods: []string{"GET"}, Hosts: []string{"h.com"}}}
	tab := mustCompile(t, rules)
	rules[0].Paths[0], rules[0].Methods[0], rules[0].Hosts[0] = "/b", "POST", "g.com"
	var m Match
	if !tab.Match("h.com", "GET", "/a/1", &m) {
		t.Fatal("table changed with its input")
	}
	if v, _ := m.Params.Get("x"); v != "1" {
		t.Errorf("param x = %q", v)
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	rules, _ := fixtureRules()
	tab := mustCompile(t, rules)
	var m Match
	for _, c := range matchCases {
		allocs := testing.AllocsPerRun(100, func() { tab.Match(c.host, c.method, c.path, &m) })
		if allocs != 0 {
			t.Errorf("Match(%q, %q, %q): %v allocs", c.host, c.method, c.path, allocs)
		}
	}
}

// TestConcurrentMatch is meant for -race: the table must be read-only after
// Compile.
func TestConcurrentMatch(t *testing.T) {
	rules, names := fixtureRules()
	tab := mustCompile(t, rules)
	const goroutines, rounds = 16, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			var m Match
			for r := range rounds {
				for i := range matchCases {
					c := matchCases[(i+g+r)%len(matchCases)]
					got := resultOf(tab.Match(c.host, c.method, c.path, &m), &m, names)
					if !cmp.Equal(c.want(), got) {
						t.Errorf("goroutine %d: Match(%q, %q, %q) = %+v, want %+v", g, c.host, c.method, c.path, got, c.want())
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
