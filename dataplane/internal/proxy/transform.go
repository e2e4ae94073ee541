package proxy

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/shared/config"
)

// tmpl is a compiled value template: literal text and {name} placeholders,
// split once at compile time so that expanding it per request is a single
// pass with no parsing.
type tmpl struct {
	parts []config.TemplatePart
}

// compileTmpl compiles a template the configuration already validated.
func compileTmpl(s string) tmpl {
	parts, err := config.ParseTemplate(s)
	if err != nil { // validation refuses this; keep the text as it is
		parts = []config.TemplatePart{{Lit: s}}
	}
	return tmpl{parts: parts}
}

// static reports a template without placeholders, and its text.
func (t *tmpl) static() (string, bool) {
	switch {
	case len(t.parts) == 0:
		return "", true
	case len(t.parts) == 1 && t.parts[0].Param == "":
		return t.parts[0].Lit, true
	}
	return "", false
}

func (t *tmpl) isStatic() bool {
	_, ok := t.static()
	return ok
}

// expand writes the template with each placeholder replaced by
// esc(lookup(name)).
func (t *tmpl) expand(lookup func(string) string, esc func(string) string) string {
	if s, ok := t.static(); ok {
		return s
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.Param == "" {
			b.WriteString(p.Lit)
			continue
		}
		v := lookup(p.Param)
		if esc != nil {
			v = esc(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// paramLookup resolves placeholders from a route match: {name} is a path
// parameter, {*} the rest of a "/*" path without its leading slash. It
// copies what it needs, so that the caller's Match stays on the stack of
// requests that never call it.
func paramLookup(m *router.Match, path string) func(string) string {
	params, rest := m.Params, strings.TrimPrefix(path[m.PrefixLen:], "/")
	return func(name string) string {
		if name == "*" {
			return rest
		}
		v, _ := params.Get(name)
		return v
	}
}

// edits are compiled header or query edits.
type edits struct {
	remove []string
	set    []kv
	add    []kv
	// params says whether any value has placeholders, so that requests on
	// routes without them never build a lookup.
	params bool
}

type kv struct {
	name string
	val  tmpl
}

// usesParams reports edits with {param}s (false for nil).
func (e *edits) usesParams() bool { return e != nil && e.params }

func compileEdits(e *config.Edits, canon func(string) string) *edits {
	if e == nil {
		return nil
	}
	out := &edits{}
	for _, name := range e.Remove {
		out.remove = append(out.remove, canon(name))
	}
	pairs := func(m map[string]string) []kv {
		var l []kv
		for _, k := range slices.Sorted(maps.Keys(m)) {
			t := compileTmpl(m[k])
			if _, ok := t.static(); !ok {
				out.params = true
			}
			l = append(l, kv{name: canon(k), val: t})
		}
		return l
	}
	out.set, out.add = pairs(e.Set), pairs(e.Add)
	return out
}

// applyHeaders edits h: remove, then set, then add.
func (e *edits) applyHeaders(h http.Header, lookup func(string) string) {
	for _, name := range e.remove {
		h.Del(name)
	}
	for _, p := range e.set {
		h[p.name] = []string{p.val.expand(lookup, nil)}
	}
	for _, p := range e.add {
		h[p.name] = append(h[p.name], p.val.expand(lookup, nil))
	}
}

// applyQuery edits a raw query string.
func (e *edits) applyQuery(raw string, lookup func(string) string) string {
	if len(e.remove) == 0 && len(e.set) == 0 {
		// Additions only: the client's query goes through byte for byte.
		add := url.Values{}
		for _, p := range e.add {
			add[p.name] = append(add[p.name], p.val.expand(lookup, nil))
		}
		if raw == "" {
			return add.Encode()
		}
		return raw + "&" + add.Encode()
	}
	q, _ := url.ParseQuery(raw) // keeps every pair it could parse
	for _, name := range e.remove {
		delete(q, name)
	}
	for _, p := range e.set {
		q[p.name] = []string{p.val.expand(lookup, nil)}
	}
	for _, p := range e.add {
		q[p.name] = append(q[p.name], p.val.expand(lookup, nil))
	}
	return q.Encode()
}

// cors is a route's compiled CORS policy.
type cors struct {
	any         bool // "*"
	exact       map[string]bool
	suffixes    []struct{ scheme, suffix string } // "https://*.example.com"
	credentials bool
	methods     string
	headers     string // "" means echo what the preflight asks for
	expose      string
	maxAge      string
}

func compileCORS(c *config.CORS, routeMethods []string) *cors {
	if c == nil {
		return nil
	}
	out := &cors{exact: map[string]bool{}, credentials: c.AllowCredentials}
	for _, o := range c.AllowOrigins {
		switch {
		case o == "*":
			out.any = true
		case strings.Contains(o, "://*."):
			scheme, rest, _ := strings.Cut(o, "://*")
			out.suffixes = append(out.suffixes, struct{ scheme, suffix string }{scheme + "://", strings.ToLower(rest)})
		default:
			out.exact[strings.ToLower(o)] = true
		}
	}
	methods := c.AllowMethods
	if len(methods) == 0 {
		methods = routeMethods
	}
	if len(methods) == 0 {
		methods = []string{http.MethodGet, http.MethodHead, http.MethodPost}
	}
	out.methods = strings.Join(methods, ", ")
	if !slices.Contains(c.AllowHeaders, "*") {
		out.headers = strings.Join(c.AllowHeaders, ", ")
	}
	out.expose = strings.Join(c.ExposeHeaders, ", ")
	age := c.MaxAge.Std()
	if age == 0 {
		age = config.DefaultCORSMaxAge
	}
	out.maxAge = strconv.Itoa(int(age.Seconds()))
	return out
}

func (c *cors) allows(origin string) bool {
	if origin == "" {
		return false
	}
	if c.any {
		return true
	}
	o := strings.ToLower(origin)
	if c.exact[o] {
		return true
	}
	for _, s := range c.suffixes {
		host, ok := strings.CutPrefix(o, s.scheme)
		if ok && strings.HasSuffix(host, s.suffix) && len(host) > len(s.suffix) && !strings.ContainsAny(host, "/?#@") {
			return true
		}
	}
	return false
}

// isPreflight reports a CORS preflight request (Fetch standard §3.2.2).
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// preflight answers a CORS preflight at the gateway: the upstream never
// sees it.
func (c *cors) preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	origin := r.Header.Get("Origin")
	if !c.allows(origin) {
		writeProblem(w, r, http.StatusForbidden, "cors-origin", "origin "+strconv.Quote(origin)+" is not allowed")
		return
	}
	c.allowOrigin(h, origin)
	h.Set("Access-Control-Allow-Methods", c.methods)
	if c.headers != "" {
		h.Set("Access-Control-Allow-Headers", c.headers)
	} else if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	}
	h.Set("Access-Control-Max-Age", c.maxAge)
	w.WriteHeader(http.StatusNoContent)
}

func (c *cors) allowOrigin(h http.Header, origin string) {
	if c.any && !c.credentials {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if c.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// respond adds the CORS headers to an actual (non-preflight) response. The
// gateway owns CORS on such a route, so whatever the upstream said about it
// is replaced.
func (c *cors) respond(h http.Header, origin string) {
	for _, name := range corsHeaders {
		delete(h, name)
	}
	if !c.any || c.credentials {
		h.Add("Vary", "Origin")
	}
	if !c.allows(origin) {
		return
	}
	c.allowOrigin(h, origin)
	if c.expose != "" {
		h.Set("Access-Control-Expose-Headers", c.expose)
	}
}

var corsHeaders = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
	"Access-Control-Expose-Headers", "Access-Control-Allow-Methods",
	"Access-Control-Allow-Headers", "Access-Control-Max-Age",
}

// responseHook is what a route does to every response header set before it
// is written: its header edits and CORS. The recorder calls it once, at the
// first WriteHeader or Write, whoever produced the response (the upstream,
// the cache, an aggregation, a gRPC call or the gateway's own problem).
type responseHook struct {
	route  *Route
	lookup func(string) string
	origin string
}

func (rh *responseHook) apply(h http.Header) {
	if e := rh.route.respEdits; e != nil {
		e.applyHeaders(h, rh.lookup)
	}
	if c := rh.route.cors; c != nil {
		c.respond(h, rh.origin)
	}
}
