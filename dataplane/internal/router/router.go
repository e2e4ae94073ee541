// Package router is the data plane's compiled route table: it turns the
// matching part of the configured routes into an immutable structure that
// picks the route for a request without allocating.
//
// # Matching
//
// MatchRequest takes the request's host, method and path, and the headers
// and query its rules' conditions read (Match: none).
//
// The host is the request's authority as package authority normalised it
// (the proxy refuses a request whose authority does not parse, so a "port"
// such as ":1,evil.example" never gets here). A ":port" suffix is ignored
// (for a bracketed IPv6 literal, everything after the closing ']'): routes
// match a host on every port, while the cache key keeps the port. Then one
// trailing dot is ignored, and the rest is compared ASCII case-insensitively. Route hosts are
// either exact ("api.example.com") or wildcards ("*.example.com"), which match
// any host ending in ".example.com" with at least one character before it, so
// "a.example.com" and "a.b.example.com" but not "example.com".
//
// The path must be an absolute path that the caller has already normalised
// (no "..", no "//"); a path not starting with '/' matches nothing. Matching
// works on '/'-separated segments and is case-sensitive. Pattern forms:
//
//   - "/health" matches only "/health": a trailing slash is significant, so it
//     does not match "/health/", and "/" matches only "/".
//   - "/users/{id}" captures one non-empty segment as the parameter id.
//   - "/users/{id:[0-9]+}" captures it only when the RE2 expression matches
//     the whole segment (config.CompileRegexp anchors it).
//   - "/users/*" matches "/users", "/users/" and every path below "/users/",
//     but not "/usersX". "/*" matches every path.
//
// Precedence, applied in this order:
//
//  1. Host: rules listing the exact host, then rules with wildcard hosts, the
//     longest (most specific) suffix first, then rules without hosts. When
//     nothing in a group matches the path and method, the next group is tried.
//  2. Path, segment by segment from the left: a static segment beats a
//     constrained {param:regex} (several at one depth: in the order of their
//     expressions' text, each tried in turn), which beats a {param}, which
//     beats a "/*" prefix ending at that depth. So a deeper
//     prefix beats a shorter one, and an exact pattern beats a prefix that
//     covers the same segments ("/users" beats "/users/*" on "/users"). If the
//     more specific branch fails further down, the next one is tried
//     (backtracking): "/users/me/x" falls back from "/users/me" to
//     "/users/{id}/x" and then to "/users/*".
//  3. Method, at one pattern: a rule listing the request method beats a rule
//     without methods. Methods compare case-sensitively, as HTTP defines them.
//     If every rule at the pattern lists methods and none is the request's,
//     matching continues with the less specific patterns (a "/*" catch-all,
//     say), and then with the next host group.
//  4. Conditions, among the rules of one pattern and method (or of any
//     method): only rules whose conditions all hold take part (conditions.go
//     says which value each reads); the rule with more conditions wins, then
//     the higher Priority, then the lower Name. When no rule's conditions
//     hold, matching goes on as in 3 (any-method rules, then less specific
//     patterns, then the next host group).
//
// So priority never overrides a more specific path, host or method: it
// only orders routes that the request could reach on the same pattern.
//
// Parameters reported are those of the matched pattern only, never values
// captured on a branch that was abandoned.
//
// # Compiling
//
// Compile checks every pattern with config.PathShape, the same rules the
// control plane applies, and refuses two rules that claim the same host (or
// none), the same method (or any), the same path shape (constraints
// included) and the same conditions (config.RouteMatch.Key), because the
// winner between them would be arbitrary. That is config's one rule of route
// ambiguity (shared/config/ambiguity.go), by which the control plane refuses
// the later route; here the trie holds it (two rules' keys meet in one leaf
// exactly when they are equal), and FuzzAmbiguityMatchesConfig checks that
// Compile refuses exactly the route and path config.Validate refuses first.
// The table checks because a bad table is worse than a rejected snapshot,
// and because an incremental compile validates only the changed routes
// among themselves: a changed route claiming an unchanged one's requests is
// found here.
//
// # Updating
//
// Table.Update builds the table for a new rule list from an existing one
// (rules removed, added anywhere, moved), copying only the trie nodes on the
// changed rules' paths and sharing the rest; the old table is not modified.
// Rules carry an internal id that stays while the rule does, mapped to the
// rule's index in the current list at match time, so inserting a rule in
// the middle of the list renumbers nothing in the trie. Update checks added
// rules as Compile does; the answers of an updated table are those of a
// table compiled from the new list (TestUpdateMatchesReference).
package router

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/portico-gw/portico/shared/config"
)

// MaxParams is the most {param} segments one pattern may have, and so the
// capacity of Params.
const MaxParams = config.MaxParamsPerPath

const (
	// hostWindow is how many trailing bytes of a request host take part in
	// host matching. It covers the longest exact host (253, the DNS limit
	// config.HostProblem enforces) and the longest
	// wildcard suffix ("." plus 253), so a longer request host can still match
	// a wildcard while being copied to a fixed-size stack buffer for
	// lower-casing.
	hostWindow = 256
	// smallFanOut is the number of static children kept in a slice before a
	// node switches to a map: for a handful of keys a linear scan of string
	// compares is cheaper than hashing.
	smallFanOut = 8
)

// Rule is one route's matching part. Its position in the slice given to
// Compile is its index.
type Rule struct {
	Paths   []string // "/health" exact, "/users/{id}" params, "/users/{id:[0-9]+}" constrained, "/users/*" prefix ("/*" = everything)
	Methods []string // upper case; empty = any method
	Hosts   []string // lower case "api.example.com" or "*.example.com"; empty = any host
	// Match holds conditions on headers, query and cookies (nil: none).
	Match *config.RouteMatch
	// Priority and Name order rules that tie on host, path, method and
	// number of conditions: higher priority first, then by name.
	Priority int
	Name     string
}

// Match is the result of a successful Table.Match.
type Match struct {
	Route int // index of the matched Rule
	Path  int // index of the matched pattern within Rule.Paths
	// PrefixLen is, for a "/*" pattern, how many bytes of the request path its
	// static part covered ("/users/*" on "/users/7/x" gives len("/users"), "/*"
	// gives 0), so that a strip-prefix proxy can cut path[PrefixLen:]. For
	// other patterns it is len(path).
	PrefixLen int
	Params    Params // {param} captures
}

// Params holds the {param} captures of a match. Values are substrings of the
// request path. It is a fixed-size value so that matching does not allocate.
type Params struct {
	n    int
	keys [MaxParams]string
	vals [MaxParams]string
}

// Get returns the value captured for the parameter name.
func (p *Params) Get(name string) (string, bool) {
	for i := 0; i < p.n; i++ {
		if p.keys[i] == name {
			return p.vals[i], true
		}
	}
	return "", false
}

// Len returns the number of captured parameters.
func (p *Params) Len() int { return p.n }

// At returns the i'th parameter in pattern order. It panics if i is out of
// range, like a slice index.
func (p *Params) At(i int) (name, value string) {
	return p.keys[:p.n][i], p.vals[:p.n][i]
}

// Table is a compiled, immutable route table. Its methods are safe for
// concurrent use.
type Table struct {
	rules int
	exact map[string]*node // by host
	wild  map[string]*node // by suffix including the dot: ".example.com"
	// wildLen[n] says whether any wildcard suffix is n bytes long, so that
	// Match looks up only the suffixes of the request host that could exist.
	wildLen [hostWindow + 1]bool
	any     *node
	// ext maps a rule's internal id (in targets) to its index in the rule
	// list, -1 for a free id; nil means the identity (a table from
	// Compile). free lists the free ids. See update.go.
	ext  []int32
	free []int32
}

// node is a position in a host group's segment trie: the patterns that
// agree on all segments so far.
type node struct {
	edges []edge           // static children while few
	kids  map[string]*node // static children once many; edges is then nil
	// over holds the static children Update set since kids was shared
	// with the table it was updated from (which still reads kids), and
	// takes precedence over kids; ownKids says kids is this node's alone
	// and may be written (see update.go).
	over    map[string]*node
	ownKids bool
	// constrained are the {param:regex} children, by regex text: tried
	// in that order, after the static child and before param.
	constrained []constrainedEdge
	param       *node // the {param} child, whatever its name
	exact       *leaf // patterns ending here
	prefix      *leaf // "/*" patterns whose static part ends here
}

type edge struct {
	seg  string
	next *node
}

type constrainedEdge struct {
	src  string // the regex as written in the pattern
	re   *pattern
	next *node
}

// leaf holds the rules of one host group that share one path shape: per
// method (and for any method) the targets in rank order (more conditions,
// higher priority, name), at most one per set of conditions (Compile
// refuses more).
type leaf struct {
	methods []methodTarget
	any     []*target
}

type methodTarget struct {
	method string
	t      *target
}

// target is one (rule, pattern) pair. It is shared by every host group and
// method the rule lists.
type target struct {
	route, path int
	pattern     string
	names       []string // parameter names in pattern order
	// conds is rank.conds, kept here so that a leaf's plain targets are
	// told apart without following rank (one pointer less per request).
	conds []cond
	rank  *rank // shared by the rule's targets
}

// CompileError reports the rule (and pattern) Compile refused, so that the
// caller can name the route behind it.
type CompileError struct {
	Rule    int
	Path    int    // index in Rule.Paths, or -1 when the problem is not a pattern's
	Pattern string // Rule.Paths[Path]
	Err     error
}

func (e *CompileError) Error() string {
	if e.Path < 0 {
		return fmt.Sprintf("router: rule %d: %v", e.Rule, e.Err)
	}
	return fmt.Sprintf("router: rule %d paths[%d] %q: %v", e.Rule, e.Path, e.Pattern, e.Err)
}

func (e *CompileError) Unwrap() error { return e.Err }

// Compile builds the table for rules. The rules are not retained, but the
// strings in them are.
func Compile(rules []Rule) (*Table, error) {
	t := &Table{
		rules: len(rules),
		exact: map[string]*node{},
		wild:  map[string]*node{},
		any:   &node{},
	}
	for i := range rules {
		if err := t.add(i, &rules[i]); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// group is a host group's trie root and how to describe it in errors.
type group struct {
	root *node
	host string
}

func (t *Table) add(ri int, r *Rule) error {
	if len(r.Paths) == 0 {
		return &CompileError{Rule: ri, Path: -1, Err: fmt.Errorf("no paths")}
	}
	for _, m := range r.Methods {
		if !validMethod(m) {
			return &CompileError{Rule: ri, Path: -1, Err: fmt.Errorf("method %q is not an upper-case HTTP method token", m)}
		}
	}
	rk, err := newRank(r)
	if err != nil {
		return &CompileError{Rule: ri, Path: -1, Err: err}
	}
	groups := make([]group, 0, max(1, len(r.Hosts)))
	for _, h := range r.Hosts {
		suffix, wild, ok := parseHost(h)
		if !ok {
			return &CompileError{Rule: ri, Path: -1, Err: fmt.Errorf("host %q is not a lower-case host name or *.wildcard", h)}
		}
		groups = append(groups, group{root: t.root(suffix, wild), host: h})
	}
	if len(r.Hosts) == 0 {
		groups = append(groups, group{root: t.any, host: "any host"})
	}
	for pi, p := range r.Paths {
		if _, err := config.PathShape(p); err != nil {
			return &CompileError{Rule: ri, Path: pi, Pattern: p, Err: err}
		}
		tg := &target{route: ri, path: pi, pattern: p, rank: rk, conds: rk.conds}
		segs := strings.Split(p[1:], "/")
		tg.names = paramNames(segs)
		for _, g := range groups {
			l, err := g.root.insert(segs)
			if err != nil {
				return &CompileError{Rule: ri, Path: pi, Pattern: p, Err: err}
			}
			if err := l.claim(tg, r.Methods); err != nil {
				return &CompileError{Rule: ri, Path: pi, Pattern: p, Err: fmt.Errorf("on %s: %w", g.host, err)}
			}
		}
	}
	return nil
}

func (t *Table) root(key string, wild bool) *node {
	m := t.exact
	if wild {
		m = t.wild
		t.wildLen[len(key)] = true
	}
	n := m[key]
	if n == nil {
		n = &node{}
		m[key] = n
	}
	return n
}

// newRank compiles what orders r among rules on the same leaf.
func newRank(r *Rule) (*rank, error) {
	conds, err := compileConds(r.Match)
	if err != nil {
		return nil, fmt.Errorf("match: %w", err)
	}
	return &rank{conds: conds, key: r.Match.Key(), priority: r.Priority, name: r.Name}, nil
}

// paramNames returns the {param} names of a pattern's segments.
func paramNames(segs []string) []string {
	var names []string
	for _, s := range segs {
		if name, _, ok := config.ParamSegment(s); ok {
			names = append(names, name)
		}
	}
	return names
}

// insert returns the leaf for a pattern already split into segments,
// creating nodes as needed. The pattern must have passed PathShape.
func (n *node) insert(segs []string) (*leaf, error) {
	for i, s := range segs {
		switch {
		case s == "*" && i == len(segs)-1:
			if n.prefix == nil {
				n.prefix = &leaf{}
			}
			return n.prefix, nil
		case s != "" && s[0] == '{':
			if _, src, _ := config.ParamSegment(s); src != "" {
				c, err := n.constrainedChild(src, nil)
				if err != nil {
					return nil, err
				}
				n = c
				continue
			}
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
		default:
			n = n.staticChild(s, true)
		}
	}
	if n.exact == nil {
		n.exact = &leaf{}
	}
	return n.exact, nil
}

// constrainedChild returns the child for the constraint src, creating it
// (in src order) when there is none; copy, when not nil, replaces the
// existing child first (Update's path copying).
func (n *node) constrainedChild(src string, copyNode func(*node) *node) (*node, error) {
	i, found := slices.BinarySearchFunc(n.constrained, src, func(e constrainedEdge, s string) int { return strings.Compare(e.src, s) })
	if found {
		if copyNode != nil {
			n.constrained[i].next = copyNode(n.constrained[i].next)
		}
		return n.constrained[i].next, nil
	}
	re, err := newPattern(src)
	if err != nil {
		return nil, err
	}
	c := &node{}
	if copyNode != nil {
		c = copyNode(nil)
	}
	n.constrained = slices.Insert(n.constrained, i, constrainedEdge{src: src, re: re, next: c})
	return c, nil
}

func (n *node) staticChild(seg string, create bool) *node {
	if n.kids != nil {
		var c *node
		ok := false
		if n.over != nil {
			c, ok = n.over[seg]
		}
		if !ok {
			c = n.kids[seg]
		}
		if c == nil && create {
			c = &node{}
			n.setKid(seg, c)
		}
		return c
	}
	for i := range n.edges {
		if n.edges[i].seg == seg {
			return n.edges[i].next
		}
	}
	if !create {
		return nil
	}
	c := &node{}
	if len(n.edges) < smallFanOut {
		n.edges = append(n.edges, edge{seg, c})
		return c
	}
	n.kids, n.ownKids = make(map[string]*node, 2*smallFanOut), true
	for _, e := range n.edges {
		n.kids[e.seg] = e.next
	}
	n.kids[seg] = c
	n.edges = nil
	return c
}

// setKid makes c the static child for seg of n, which has kids: in kids
// when n owns them, else in over. An Update used to copy the kids of every
// node on a changed rule's path: at 100,000 routes under one prefix that
// is a map of 100,000 entries per write (3.6 MB of garbage, milliseconds).
// over is folded into a copy of kids once it holds an eighth as many: the
// copies then cost a few entries per Update on average.
func (n *node) setKid(seg string, c *node) {
	if n.ownKids {
		n.kids[seg] = c
		return
	}
	if n.over == nil {
		n.over = make(map[string]*node, 4)
	}
	n.over[seg] = c
	if len(n.over) > 16+len(n.kids)/8 {
		kids := maps.Clone(n.kids)
		maps.Copy(kids, n.over)
		n.kids, n.over, n.ownKids = kids, nil, true
	}
}

// claim registers tg for methods (none = any) at l, refusing a method
// already claimed by another (rule, pattern) with the same conditions. The
// same rule claiming twice (a host or method listed twice) is harmless and
// ignored. Targets are kept in rank order.
func (l *leaf) claim(tg *target, methods []string) error {
	if len(methods) == 0 {
		for _, prev := range l.any {
			switch {
			case prev.same(tg):
				return nil
			case prev.rank.key == tg.rank.key:
				return conflict(prev, "any method")
			}
		}
		i, _ := slices.BinarySearchFunc(l.any, tg, compareTargets)
		l.any = slices.Insert(l.any, i, tg)
		return nil
	}
	for _, m := range methods {
		dup := false
		for _, mt := range l.methods {
			if mt.method != m {
				continue
			}
			switch {
			case mt.t.same(tg):
				dup = true
			case mt.t.rank.key == tg.rank.key:
				return conflict(mt.t, m)
			}
		}
		if dup {
			continue
		}
		i, _ := slices.BinarySearchFunc(l.methods, methodTarget{m, tg}, func(a, b methodTarget) int {
			return cmp.Or(strings.Compare(a.method, b.method), compareTargets(a.t, b.t))
		})
		l.methods = slices.Insert(l.methods, i, methodTarget{m, tg})
	}
	return nil
}

// compareTargets orders targets of one leaf and method: more conditions
// first, then higher priority, then name, then rule.
func compareTargets(a, b *target) int {
	return cmp.Or(
		cmp.Compare(len(b.rank.conds), len(a.rank.conds)),
		cmp.Compare(b.rank.priority, a.rank.priority),
		strings.Compare(a.rank.name, b.rank.name),
		cmp.Compare(a.route, b.route),
		cmp.Compare(a.path, b.path),
	)
}

func (a *target) same(b *target) bool { return a.route == b.route && a.path == b.path }

func conflict(prev *target, method string) error {
	if prev.rank.key != "" {
		return fmt.Errorf("matches the same requests (%s, if %s) as rule %d paths[%d] %q", method, prev.rank.key, prev.route, prev.path, prev.pattern)
	}
	return fmt.Errorf("matches the same requests (%s) as rule %d paths[%d] %q", method, prev.route, prev.path, prev.pattern)
}

// parseHost checks a rule host and returns its lookup key: the host itself,
// or for "*.example.com" the suffix ".example.com". Upper case is refused
// rather than folded: the control plane normalises hosts, so an upper-case
// host here means the input skipped validation.
func parseHost(h string) (key string, wild bool, ok bool) {
	if config.HostProblem(h) != "" {
		return "", false, false
	}
	if _, wild := strings.CutPrefix(h, "*."); wild {
		return h[1:], true, true
	}
	return h, false, true
}

// validMethod accepts an RFC 9110 token without lower-case letters. Methods
// are case-sensitive, and Rule.Methods is documented upper case, so "get"
// would silently never match a normal client.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Len returns the number of rules the table was compiled from.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return t.rules
}

// noInputs is a request without headers or query: Match's view.
var noInputs Inputs

// Match finds the route for a request without headers, query or cookies
// (every condition sees its item absent). See MatchRequest.
func (t *Table) Match(host, method, path string, m *Match) bool {
	return t.MatchRequest(host, method, path, &noInputs, m)
}

// MatchRequest finds the route for a request, following the precedence
// described in the package documentation, and reports whether there is
// one. On success it fills *m; otherwise it leaves *m zeroed. It does not
// allocate (except to decode an encoded query parameter a condition reads).
func (t *Table) MatchRequest(host, method, path string, in *Inputs, m *Match) bool {
	*m = Match{}
	if t == nil || path == "" || path[0] != '/' {
		return false
	}
	if t.match(host, method, path, in, m) {
		return true
	}
	// Abandoned branches captured values; a stale Match must not keep
	// request paths reachable.
	*m = Match{}
	return false
}

func (t *Table) match(host, method, path string, in *Inputs, m *Match) bool {
	if len(t.exact) > 0 || len(t.wild) > 0 {
		// Lower-case into a stack buffer: map lookups keyed by string(b[...])
		// do not allocate, whatever the case of the request host.
		var buf [hostWindow]byte
		h, whole := hostTail(host)
		n := len(h)
		for i := 0; i < n; i++ {
			c := h[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[i] = c
		}
		b := buf[:n]
		if whole {
			if root := t.exact[string(b)]; root != nil && t.matchIn(root, method, path, in, m) {
				return true
			}
		}
		// Left to right visits the longest suffix first. The dot must not be
		// the first byte: "*.example.com" needs a non-empty label before it.
		// A truncated window has that label outside the window, but then the
		// suffix would be hostWindow bytes long, longer than any rule's.
		for i := 1; i < n && len(t.wild) > 0; i++ {
			if b[i] != '.' || !t.wildLen[n-i] {
				continue
			}
			if root := t.wild[string(b[i:])]; root != nil && t.matchIn(root, method, path, in, m) {
				return true
			}
		}
	}
	return t.matchIn(t.any, method, path, in, m)
}

// hostTail strips the port and a trailing dot and returns at most the last
// hostWindow bytes of what remains, and whether that is the whole host.
func hostTail(host string) (string, bool) {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i >= 0 {
			host = host[:i+1]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if len(host) > hostWindow {
		return host[len(host)-hostWindow:], false
	}
	return host, true
}

func (t *Table) matchIn(root *node, method, path string, in *Inputs, m *Match) bool {
	tg, plen := root.lookup(path, 0, method, in, &m.Params.vals, 0)
	if tg == nil {
		return false
	}
	m.Route, m.Path, m.PrefixLen = tg.route, tg.path, plen
	if t.ext != nil {
		m.Route = int(t.ext[tg.route])
	}
	k := copy(m.Params.keys[:], tg.names)
	m.Params.n = k
	// Abandoned branches may have written values past k.
	clear(m.Params.vals[k:])
	return true
}

// lookup walks the trie from n, where path[:pos] has been consumed and
// path[pos:] is empty or starts with '/'. np parameter values are in vals.
// It returns the matched target and the length of the path its static part
// covered.
func (n *node) lookup(path string, pos int, method string, in *Inputs, vals *[MaxParams]string, np int) (*target, int) {
	if pos == len(path) {
		if tg := n.exact.find(method, in); tg != nil {
			return tg, pos
		}
		return n.prefix.find(method, in), pos
	}
	end := len(path)
	if i := strings.IndexByte(path[pos+1:], '/'); i >= 0 {
		end = pos + 1 + i
	}
	seg := path[pos+1 : end]
	if c := n.staticChild(seg, false); c != nil {
		if tg, l := c.lookup(path, end, method, in, vals, np); tg != nil {
			return tg, l
		}
	}
	if seg != "" && np < MaxParams {
		for i := range n.constrained {
			c := &n.constrained[i]
			if !c.re.match(seg) {
				continue
			}
			vals[np] = seg
			if tg, l := c.next.lookup(path, end, method, in, vals, np+1); tg != nil {
				return tg, l
			}
		}
	}
	// np < MaxParams always holds for tries built from valid patterns; the
	// check keeps the array index provably in range.
	if n.param != nil && seg != "" && np < MaxParams {
		vals[np] = seg
		if tg, l := n.param.lookup(path, end, method, in, vals, np+1); tg != nil {
			return tg, l
		}
	}
	return n.prefix.find(method, in), pos
}

// find returns the first target for method whose conditions hold, then the
// first any-method one.
func (l *leaf) find(method string, in *Inputs) *target {
	if l == nil {
		return nil
	}
	for i := range l.methods {
		if mt := &l.methods[i]; mt.method == method && (len(mt.t.conds) == 0 || accepts(mt.t.conds, in)) {
			return mt.t
		}
	}
	for _, tg := range l.any {
		if len(tg.conds) == 0 || accepts(tg.conds, in) {
			return tg
		}
	}
	return nil
}
