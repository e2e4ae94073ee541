package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/textproto"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
)

// Route conditions (issue 16). Besides host, path and method, a route may
// require request headers, query parameters and cookies to have a value
// (exact, prefix or an RE2 expression), to be present, or to be absent.
// Conditions refine a route; they never make two routes with the same
// (host, method, path shape) and the same conditions distinguishable, so
// those are ambiguous as before (ambiguity.go).
//
// Which value is tested: the first value of a header (what Header.Get and
// most services read), the first occurrence of a query parameter (what
// url.Values.Get reads; '+' and %XX decoded), the first cookie of the name
// across the Cookie headers (quotes around the value removed). An absent
// item fails every value form; "present": false is the one form it passes.

// Limits on conditions. A regular expression is compiled when the route is
// written and again when a data plane compiles its table; the limits keep
// either from being slow or large, and keep a request's matching cost
// bounded (RE2 runs in time linear in the value).
const (
	MaxConditionsPerRoute = 16
	MaxMatchValueLen      = 1024
	MaxRegexLen           = 1024
	// MaxRegexProgram bounds the compiled program (instructions), which is
	// what memory and per-byte matching cost grow with; "(a{100}){100}"
	// is short but compiles to 10,000 instructions.
	MaxRegexProgram = 2000
	MinPriority     = -10000
	MaxPriority     = 10000
)

// RouteMatch holds a route's conditions, by item name. Header names are
// canonicalised ("x-api-version" → "X-Api-Version") by Normalize.
type RouteMatch struct {
	Headers map[string]ValueMatch `json:"headers,omitempty"`
	Query   map[string]ValueMatch `json:"query,omitempty"`
	Cookies map[string]ValueMatch `json:"cookies,omitempty"`
}

// ValueMatch is one condition; exactly one form is set. In JSON a plain
// string is the exact form: {"X-Api-Version": "2"}.
type ValueMatch struct {
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	// Regex is an RE2 expression the whole value must match (it is
	// anchored at both ends).
	Regex string `json:"regex,omitempty"`
	// Present true: the item is there, whatever its value (an empty one
	// too); false: it is absent.
	Present *bool `json:"present,omitempty"`
}

type valueMatchFields ValueMatch

// UnmarshalJSON takes the string shorthand or the object, strictly (an
// unknown member is refused, as everywhere in the model).
func (v *ValueMatch) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		*v = ValueMatch{}
		return json.Unmarshal(data, &v.Exact)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f valueMatchFields
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("a condition is a string (exact value) or an object with one of exact, prefix, regex, present: %w", err)
	}
	*v = ValueMatch(f)
	return nil
}

// form names the form that is set and its operand, for keys and messages.
func (v *ValueMatch) form() (form, operand string, n int) {
	if v.Exact != "" {
		form, operand, n = "exact", v.Exact, n+1
	}
	if v.Prefix != "" {
		form, operand, n = "prefix", v.Prefix, n+1
	}
	if v.Regex != "" {
		form, operand, n = "regex", v.Regex, n+1
	}
	if v.Present != nil {
		form, operand, n = "present", strconv.FormatBool(*v.Present), n+1
	}
	return form, operand, n
}

// Len is the number of conditions, which ranks routes on the same path
// shape (more conditions first).
func (m *RouteMatch) Len() int {
	if m == nil {
		return 0
	}
	return len(m.Headers) + len(m.Query) + len(m.Cookies)
}

// Key is a canonical text of the conditions: two routes with equal keys
// (and the same host, method and path shape) can never be told apart. ""
// means no conditions.
func (m *RouteMatch) Key() string {
	if m.Len() == 0 {
		return ""
	}
	var b strings.Builder
	for _, kind := range []struct {
		tag   string
		items map[string]ValueMatch
	}{{"header", m.Headers}, {"query", m.Query}, {"cookie", m.Cookies}} {
		for _, name := range slices.Sorted(maps.Keys(kind.items)) {
			v := kind.items[name]
			form, operand, _ := v.form()
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			if kind.tag == "header" {
				// Normalize canonicalises, but a data plane compiles what
				// it is sent without normalising.
				name = textproto.CanonicalMIMEHeaderKey(name)
			}
			fmt.Fprintf(&b, "%s %s %s %s", kind.tag, strconv.Quote(name), form, strconv.Quote(operand))
		}
	}
	return b.String()
}

// normalize canonicalises header names. Two spellings of one header stay
// apart (validation reports them) rather than one silently replacing the
// other.
func (m *RouteMatch) normalize() {
	if m == nil || len(m.Headers) == 0 {
		return
	}
	out := make(map[string]ValueMatch, len(m.Headers))
	for name, v := range m.Headers {
		c := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
		if _, dup := out[c]; dup {
			return
		}
		out[c] = v
	}
	m.Headers = out
}

// routingHeaders cannot carry conditions: Host is matched by hosts and
// Cookie by cookies; the gateway removes or rewrites the others before
// routing, so a condition on them would test the gateway, not the client.
var routingHeaders = withHopByHop("Host", "Cookie", "X-Real-Ip", "X-Auth-Method", "Forwarded")

func (m *RouteMatch) validate(l *errorList, p string) {
	if m.Len() > MaxConditionsPerRoute {
		l.add(p, "at most %d conditions", MaxConditionsPerRoute)
	}
	canon := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
		fp := join(p, "headers."+name)
		c := textproto.CanonicalMIMEHeaderKey(name)
		switch {
		case !isToken(name) || strings.IndexByte(name, '_') >= 0:
			l.add(fp, "must be a header name (letters, digits and '-')")
		case routingHeaders[c] || strings.HasPrefix(c, "X-Consumer-") || strings.HasPrefix(c, "X-Forwarded-"):
			l.add(fp, "%s cannot be matched (the gateway owns it, or hosts/cookies match it)", c)
		case canon[c] != "":
			l.add(fp, "names the same header as %q", canon[c])
		}
		canon[c] = name
		v := m.Headers[name]
		v.validate(l, fp)
	}
	for _, name := range slices.Sorted(maps.Keys(m.Query)) {
		fp := join(p, "query."+name)
		if name == "" || len(name) > 256 {
			l.add(fp, "a query parameter name is 1 to 256 bytes")
		}
		v := m.Query[name]
		v.validate(l, fp)
	}
	for _, name := range slices.Sorted(maps.Keys(m.Cookies)) {
		fp := join(p, "cookies."+name)
		if !isToken(name) {
			l.add(fp, "must be a cookie name (an HTTP token)")
		}
		v := m.Cookies[name]
		v.validate(l, fp)
	}
}

func (v *ValueMatch) validate(l *errorList, p string) {
	form, _, n := v.form()
	switch {
	case n == 0:
		l.add(p, "needs one of exact (a non-empty value), prefix, regex or present")
		return
	case n > 1:
		l.add(p, "exactly one of exact, prefix, regex or present")
		return
	}
	if len(v.Exact) > MaxMatchValueLen || len(v.Prefix) > MaxMatchValueLen {
		l.add(join(p, form), "at most %d bytes", MaxMatchValueLen)
	}
	if v.Regex != "" {
		if _, err := CompileRegexp(v.Regex); err != nil {
			l.add(join(p, "regex"), "%v", err)
		}
	}
}

// CompileRegexp compiles a condition's or a path parameter's expression,
// anchored so that it must match the whole value, refusing what is too
// long or compiles too large. Validation and the data plane's router both
// call it, so what one accepts the other compiles.
func CompileRegexp(expr string) (*regexp.Regexp, error) {
	if len(expr) > MaxRegexLen {
		return nil, fmt.Errorf("regular expression longer than %d bytes", MaxRegexLen)
	}
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("not an RE2 expression: %w", err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, fmt.Errorf("not an RE2 expression: %w", err)
	}
	if len(prog.Inst) > MaxRegexProgram {
		return nil, fmt.Errorf("regular expression too large (%d instructions compiled, at most %d)", len(prog.Inst), MaxRegexProgram)
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// ParamSegment splits a path segment "{name}" or "{name:expr}" into the
// parameter's name and its constraint (an RE2 expression the segment must
// match whole; "" for none). ok is false for a segment that is not a
// parameter (it does not start with '{').
func ParamSegment(seg string) (name, constraint string, ok bool) {
	inner, ok := strings.CutPrefix(seg, "{")
	if !ok {
		return "", "", false
	}
	inner = strings.TrimSuffix(inner, "}")
	name, constraint, _ = strings.Cut(inner, ":")
	return name, constraint, true
}

// PathKind says how a path pattern matches: exact (static segments only),
// template ({param} segments) or prefix ("/*").
func PathKind(path string) string {
	switch {
	case strings.HasSuffix(path, "/*"):
		return "prefix"
	case strings.Contains(path, "{"):
		return "template"
	}
	return "exact"
}

// Precedence is how a route ranks against others claiming the same
// request, shown by the admin API per route (output only, like Meta). The
// order: host (exact, then the longest wildcard, then none), path segment
// by segment (static, then a constrained {param}, then {param}, then
// "/*"), a route listing the method over an any-method one, then more
// conditions, then the higher priority, then the route name.
type Precedence struct {
	// PathKinds is PathKind of each path, in order.
	PathKinds  []string `json:"path_kinds"`
	Conditions int      `json:"conditions"`
	Priority   int      `json:"priority"`
	// Conditions as one line, in the canonical form ambiguity is decided on.
	Key string `json:"key,omitempty"`
}

// ComputePrecedence returns r's precedence.
func (r *Route) ComputePrecedence() *Precedence {
	p := &Precedence{Conditions: r.Match.Len(), Priority: r.Priority, Key: r.Match.Key()}
	for _, path := range r.Paths {
		p.PathKinds = append(p.PathKinds, PathKind(path))
	}
	return p
}
