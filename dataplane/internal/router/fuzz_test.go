package router

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/portico-gw/portico/shared/config"
)

// FuzzMatch compares Table.Match with refMatch, a brute-force reading of the
// documented semantics, on a small rule set derived from data and on the
// fixture rules, for requests derived from data and for the raw host,
// method and path (which also proves that arbitrary input does not panic).
// Compile is checked against the reference too: it must fail exactly when a
// pattern is invalid, a host is invalid, or two rules claim the same requests.
func FuzzMatch(f *testing.F) {
	f.Add([]byte{}, "", "GET", "/")
	f.Add([]byte("\x05\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a"), "api.example.com", "GET", "/users/7")
	f.Add([]byte("\x83\x02\x01\x00\x03\x01\x02\x11\x22\x33\x44\x55\x66\x77"), "X.A.COM:80", "POST", "/a/b/c")
	f.Add([]byte("\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1"), "b.a.com.", "PUT", "/a/")
	f.Add([]byte("\x40\x03\x02\x01\x00\x02\x01\x03\x09\x08\x07\x06\x05\x04"), "[::1]:443", "DELETE", "/b/x/a")
	f.Add([]byte("\x80\x00"), "*.a.com", "GET", "/a/{p0}/*")
	f.Add([]byte("\x41\x01"), "x.b.a.com", "get", "//a/../b")
	f.Add([]byte("\x00\x02\x13\x11"), "\u212a.a.com", "GET", "/c")

	fixRules, _ := fixtureRules()
	fixTable := mustCompile(f, fixRules)
	f.Fuzz(func(t *testing.T, data []byte, host, method, path string) {
		checkAgainstReference(t, fixTable, fixRules, host, method, path, nil)

		g := &gen{data: data}
		rules := g.rules()
		// The raw strings sometimes become a rule, so that Compile sees
		// arbitrary patterns and hosts; validity then comes from the control
		// plane's own checks.
		flags := g.byte()
		if flags&0x80 != 0 {
			rules = append(rules, Rule{Paths: []string{path}})
		}
		if flags&0x40 != 0 {
			rules = append(rules, Rule{Paths: []string{"/"}, Hosts: []string{host}})
		}
		tab, err := Compile(rules)
		if why := refCompileProblem(rules); (err == nil) != (why == "") {
			t.Fatalf("Compile error = %v, reference says %q\nrules: %#v", err, why, rules)
		}
		if err != nil {
			return
		}
		if tab.Len() != len(rules) {
			t.Fatalf("Len() = %d, want %d", tab.Len(), len(rules))
		}
		checkAgainstReference(t, tab, rules, host, method, path, nil)
		for range 4 {
			checkAgainstReference(t, tab, rules, g.host(), g.method(), g.path(), g.inputs())
		}
	})
}

func checkAgainstReference(t *testing.T, tab *Table, rules []Rule, host, method, path string, in *Inputs) {
	t.Helper()
	if in == nil {
		in = &Inputs{}
	}
	var m Match
	got := resultOf(tab.MatchRequest(host, method, path, in, &m), &m, nil)
	want := refMatch(t, rules, host, method, path, in)
	if diff := gocmp.Diff(want, got); diff != "" {
		t.Fatalf("Match(%q, %q, %q, %+v) differs from reference (-ref +got):\n%s\nrules: %s", host, method, path, *in, diff, describeRules(rules))
	}
}

func describeRules(rules []Rule) string {
	var b strings.Builder
	for i, r := range rules {
		fmt.Fprintf(&b, "\n  %d %s paths=%q methods=%q hosts=%q if %s priority %d", i, r.Name, r.Paths, r.Methods, r.Hosts, r.Match.Key(), r.Priority)
	}
	return b.String()
}

// gen derives rules and requests from fuzz bytes. Small alphabets make
// overlapping patterns, and so precedence decisions, likely.
type gen struct {
	data []byte
	i    int
}

func (g *gen) byte() byte {
	if g.i >= len(g.data) {
		return 0
	}
	g.i++
	return g.data[g.i-1]
}

func (g *gen) pick(from []string) string { return from[int(g.byte())%len(from)] }

var (
	genStatic = []string{"a", "b", "c"}
	// Constraints overlap ("a" matches both) so that their order matters.
	genConstraints = []string{"[ab]", "a|x", "[a-c]+"}
	reqHeaders     = []string{"", "1", "12", "2"}
	reqQueries     = []string{"", "q=1", "q=2&q=1", "x=1&q=12", "q", "q=%31"}
	reqCookies     = []string{"", "c=1", "c=12; d=1", "d=1"}
	genHosts       = []string{"a.com", "b.a.com", "x.b.a.com", "*.a.com", "*.b.a.com", "*.com"}
	genMethods     = []string{"GET", "POST", "PUT"}
	reqSegs        = []string{"a", "b", "c", "x", ""}
	reqHosts       = []string{"a.com", "b.a.com", "x.b.a.com", "y.x.b.a.com", "z.a.com", "com", "other.org", ""}
	reqMethods     = []string{"GET", "POST", "PUT", "DELETE", "get"}
)

func (g *gen) rules() []Rule {
	rules := make([]Rule, 1+int(g.byte())%6)
	for i := range rules {
		r := &rules[i]
		for range 1 + int(g.byte())%3 {
			r.Paths = append(r.Paths, g.pattern())
		}
		if mb := g.byte(); mb%4 != 0 {
			for j, m := range genMethods {
				if mb&(8<<j) != 0 {
					r.Methods = append(r.Methods, m)
				}
			}
		}
		if hb := g.byte(); hb%3 != 0 {
			for range int(hb % 3) {
				r.Hosts = append(r.Hosts, g.pick(genHosts))
			}
		}
		r.Match = g.match()
		r.Priority = int(g.byte()%3) - 1
		// Names in index order, so that a list updated (ids moved)
		// breaks ties like a compiled one.
		r.Name = fmt.Sprintf("r%03d", i)
	}
	return rules
}

// match draws conditions from a small set per item, so that routes often
// share some of them.
func (g *gen) match() *config.RouteMatch {
	b := g.byte()
	if b%2 == 0 {
		return nil
	}
	yes, no := true, false
	m := &config.RouteMatch{}
	header := []*config.ValueMatch{nil, {Exact: "1"}, {Prefix: "1"}, {Present: &yes}, {Present: &no}, {Regex: "1[0-9]"}}
	if v := header[int(b>>1)%len(header)]; v != nil {
		m.Headers = map[string]config.ValueMatch{"X-A": *v}
	}
	query := []*config.ValueMatch{nil, {Exact: "1"}, {Present: &yes}, {Present: &no}}
	if v := query[int(b>>4)%len(query)]; v != nil {
		m.Query = map[string]config.ValueMatch{"q": *v}
	}
	cookie := []*config.ValueMatch{nil, {Exact: "1"}, {Prefix: "1"}}
	if v := cookie[int(b>>6)%len(cookie)]; v != nil {
		m.Cookies = map[string]config.ValueMatch{"c": *v}
	}
	if m.Len() == 0 {
		return nil
	}
	return m
}

func (g *gen) inputs() *Inputs {
	in := &Inputs{Header: http.Header{}, RawQuery: g.pick(reqQueries)}
	if v := g.pick(reqHeaders); v != "" {
		in.Header["X-A"] = []string{v}
	}
	if v := g.pick(reqCookies); v != "" {
		in.Header["Cookie"] = []string{v}
	}
	return in
}

func (g *gen) pattern() string {
	var b strings.Builder
	n := int(g.byte()) % 4
	for i := range n {
		b.WriteByte('/')
		if c := g.byte(); c%3 == 0 {
			// Names vary across patterns of one shape but never repeat
			// within a pattern.
			if c%2 == 0 {
				fmt.Fprintf(&b, "{%c%d}", "pq"[c/3%2], i)
			} else {
				fmt.Fprintf(&b, "{%c%d:%s}", "pq"[c/3%2], i, genConstraints[int(c/6)%len(genConstraints)])
			}
		} else {
			b.WriteString(genStatic[int(c)%len(genStatic)])
		}
	}
	switch g.byte() % 3 {
	case 1:
		b.WriteString("/")
	case 2:
		b.WriteString("/*")
	}
	if b.Len() == 0 || strings.HasPrefix(b.String(), "//") {
		return "/"
	}
	return b.String()
}

func (g *gen) host() string {
	h := g.pick(reqHosts)
	f := g.byte()
	if f&1 != 0 {
		h = strings.ToUpper(h)
	}
	if f&2 != 0 {
		h += "."
	}
	if f&4 != 0 {
		h += ":8080"
	}
	return h
}

func (g *gen) method() string { return g.pick(reqMethods) }

func (g *gen) path() string {
	n := int(g.byte()) % 5
	var b strings.Builder
	for range n {
		b.WriteByte('/')
		b.WriteString(g.pick(reqSegs))
	}
	if n == 0 {
		return "/"
	}
	return b.String()
}

// refCompileProblem says why Compile should fail, or "" if it should not.
func refCompileProblem(rules []Rule) string {
	type key struct{ host, method, shape, conds string }
	type claim struct{ rule, path int }
	claims := map[key]claim{}
	for ri, r := range rules {
		if len(r.Paths) == 0 {
			return "no paths"
		}
		for _, h := range r.Hosts {
			// The control plane's own validation decides which hosts are
			// valid.
			cr := config.Route{Name: "r", Service: "s", Paths: []string{"/"}, Hosts: []string{h}}
			if err := cr.Validate(); err != nil {
				return err.Error()
			}
		}
		hosts, methods := r.Hosts, r.Methods
		if len(hosts) == 0 {
			hosts = []string{""}
		}
		if len(methods) == 0 {
			methods = []string{""}
		}
		for pi, p := range r.Paths {
			shape, err := config.PathShape(p)
			if err != nil {
				return err.Error()
			}
			for _, h := range hosts {
				for _, m := range methods {
					k := key{h, m, shape, r.Match.Key()}
					if c, ok := claims[k]; ok && c != (claim{ri, pi}) {
						return fmt.Sprintf("rule %d path %d claims %v like rule %d path %d", ri, pi, k, c.rule, c.path)
					}
					claims[k] = claim{ri, pi}
				}
			}
		}
	}
	return ""
}

// refCandidate is one (rule, host, pattern) that matches a request, with
// what the ranking needs.
type refCandidate struct {
	rule, path int
	// hostRank: 0 for an exact host, then wildcards by decreasing suffix
	// length, then rules without hosts.
	hostRank int
	// kinds says, for every segment of the request path, what covered it:
	// "0" a static segment, "1"+regex a constrained {param:regex}, "2" a
	// {param}, "3" the "/*" of a prefix pattern.
	kinds       []string
	isPrefix    bool
	methodAny   bool
	conds       int
	condKey     string
	priority    int
	name        string
	prefixLen   int
	paramKV     []string
	description string
}

// refRank orders candidates, best first: host class, then segment-by-segment
// specificity (static > constrained param, by regex text > param > prefix),
// which also makes a deeper prefix win, then an exact pattern over a prefix
// covering the same segments, then a rule listing the method over one that
// allows any, then more conditions, then higher priority.
func refRank(a, b *refCandidate) int {
	return cmp.Or(
		cmp.Compare(a.hostRank, b.hostRank),
		slices.Compare(a.kinds, b.kinds),
		boolRank(a.isPrefix, b.isPrefix),
		boolRank(a.methodAny, b.methodAny),
		cmp.Compare(b.conds, a.conds),
		cmp.Compare(b.priority, a.priority),
	)
}

// refTieBreak: then the name, then the rule index.
func refTieBreak(a, b *refCandidate) int {
	return cmp.Or(refRank(a, b), strings.Compare(a.name, b.name), cmp.Compare(a.rule, b.rule))
}

// refAccepts is a plain reading of the documented condition semantics,
// with the standard library's parsers.
func refAccepts(t *testing.T, m *config.RouteMatch, in *Inputs) bool {
	if m == nil {
		return true
	}
	test := func(v config.ValueMatch, val string, present bool) bool {
		switch {
		case v.Present != nil:
			return *v.Present == present
		case !present:
			return false
		case v.Regex != "":
			re, err := config.CompileRegexp(v.Regex)
			if err != nil {
				t.Fatal(err)
			}
			return re.MatchString(val)
		case v.Prefix != "":
			return strings.HasPrefix(val, v.Prefix)
		}
		return val == v.Exact
	}
	for name, v := range m.Headers {
		vals := in.Header.Values(name)
		val := ""
		if len(vals) > 0 {
			val = vals[0]
		}
		if !test(v, val, len(vals) > 0) {
			return false
		}
	}
	q, _ := url.ParseQuery(in.RawQuery)
	for name, v := range m.Query {
		_, present := q[name]
		if !test(v, q.Get(name), present) {
			return false
		}
	}
	req := &http.Request{Header: in.Header}
	for name, v := range m.Cookies {
		c, err := req.Cookie(name)
		val := ""
		if err == nil {
			val = c.Value
		}
		if !test(v, val, err == nil) {
			return false
		}
	}
	return true
}

func boolRank(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// refMatch enumerates every (rule, host, pattern), keeps the ones that match
// and returns the best by refRank.
func refMatch(t *testing.T, rules []Rule, host, method, path string, in *Inputs) result {
	h := refHost(host)
	if !strings.HasPrefix(path, "/") {
		return result{}
	}
	req := strings.Split(path[1:], "/")
	var cands []*refCandidate
	for ri, r := range rules {
		methodAny := len(r.Methods) == 0
		if !methodAny && !slices.Contains(r.Methods, method) || !refAccepts(t, r.Match, in) {
			continue
		}
		var ranks []int
		if len(r.Hosts) == 0 {
			ranks = append(ranks, 1<<20)
		}
		for _, rh := range r.Hosts {
			if suffix, ok := strings.CutPrefix(rh, "*"); ok {
				if strings.HasSuffix(h, suffix) && len(h) > len(suffix) {
					ranks = append(ranks, 1+(1<<10-len(suffix)))
				}
			} else if h == rh {
				ranks = append(ranks, 0)
			}
		}
		for _, rank := range ranks {
			for pi, p := range r.Paths {
				c := refMatchPattern(p, path, req)
				if c == nil {
					continue
				}
				c.rule, c.path, c.hostRank, c.methodAny = ri, pi, rank, methodAny
				c.conds, c.condKey, c.priority, c.name = r.Match.Len(), r.Match.Key(), r.Priority, r.Name
				c.description = fmt.Sprintf("rule %d %q rank %d", ri, p, rank)
				cands = append(cands, c)
			}
		}
	}
	if len(cands) == 0 {
		return result{}
	}
	slices.SortStableFunc(cands, refTieBreak)
	best := cands[0]
	for _, c := range cands[1:] {
		if refRank(best, c) != 0 {
			break
		}
		if (c.rule != best.rule || c.path != best.path) && c.condKey == best.condKey {
			t.Fatalf("reference: ambiguous candidates %s and %s; Compile should have refused the rules", best.description, c.description)
		}
	}
	return result{OK: true, Rule: strconv.Itoa(best.rule), Path: best.path, PrefixLen: best.prefixLen, Params: best.paramKV}
}

func refMatchPattern(pattern, path string, req []string) *refCandidate {
	segs := strings.Split(pattern[1:], "/")
	c := &refCandidate{prefixLen: len(path)}
	if segs[len(segs)-1] == "*" {
		c.isPrefix = true
		segs = segs[:len(segs)-1]
		if len(req) < len(segs) {
			return nil
		}
		c.prefixLen = 0
		for _, s := range req[:len(segs)] {
			c.prefixLen += 1 + len(s)
		}
	} else if len(req) != len(segs) {
		return nil
	}
	for i, s := range segs {
		if name, constraint, ok := config.ParamSegment(s); ok {
			if req[i] == "" {
				return nil
			}
			kind := "2"
			if constraint != "" {
				re := regexp.MustCompile("^(?:" + constraint + ")$")
				if !re.MatchString(req[i]) {
					return nil
				}
				kind = "1" + constraint
			}
			c.kinds = append(c.kinds, kind)
			c.paramKV = append(c.paramKV, name+"="+req[i])
			continue
		}
		if s != req[i] {
			return nil
		}
		c.kinds = append(c.kinds, "0")
	}
	for range req[len(segs):] {
		c.kinds = append(c.kinds, "3")
	}
	return c
}

// refHost applies the documented host normalisation: no port, no trailing
// dot, ASCII lower case (strings.ToLower would also fold non-ASCII, such as
// the Kelvin sign to 'k').
func refHost(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.Index(host, "]"); i >= 0 {
			host = host[:i+1]
		}
	} else if i := strings.LastIndex(host, ":"); i >= 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	b := []byte(host)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
