package router

import (
	"net/http"
	"net/url"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/portico-gw/portico/shared/config"
)

// Conditions: the header, query and cookie part of a rule (config.RouteMatch),
// compiled once per rule and shared by its patterns. Testing them reads the
// request in place: a header's first value from the map, the query by
// scanning RawQuery, cookies by scanning the Cookie headers. Nothing is
// copied, except a query name or value that is percent- or '+'-encoded,
// which is decoded (an allocation, only for such requests).

// Inputs is what conditions read from a request.
type Inputs struct {
	Header   http.Header // canonical names, as net/http parses them
	RawQuery string
}

type condSource uint8

const (
	fromHeader condSource = iota
	fromQuery
	fromCookie
)

type condOp uint8

const (
	opExact condOp = iota
	opPrefix
	opRegex
	opPresent
	opAbsent
)

type cond struct {
	src   condSource
	op    condOp
	name  string
	value string
	re    *pattern
}

// rank is what orders rules at one leaf after the method: more conditions
// first, then the higher priority, then the name (then the rule index, for
// rules without names).
type rank struct {
	conds    []cond
	key      string // config.RouteMatch.Key: equal keys are ambiguous
	priority int
	name     string
}

// compileConds compiles a rule's match. Conditions are kept in a fixed
// order (headers, query, cookies, each by name) so that a rule's cost does
// not depend on map order.
func compileConds(m *config.RouteMatch) ([]cond, error) {
	if m.Len() == 0 {
		return nil, nil
	}
	out := make([]cond, 0, m.Len())
	for _, kind := range []struct {
		src   condSource
		items map[string]config.ValueMatch
	}{{fromHeader, m.Headers}, {fromQuery, m.Query}, {fromCookie, m.Cookies}} {
		names := make([]string, 0, len(kind.items))
		for n := range kind.items {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			v := kind.items[n]
			c := cond{src: kind.src, name: n}
			if kind.src == fromHeader {
				c.name = http.CanonicalHeaderKey(n)
			}
			switch {
			case v.Present != nil && *v.Present:
				c.op = opPresent
			case v.Present != nil:
				c.op = opAbsent
			case v.Regex != "":
				re, err := newPattern(v.Regex)
				if err != nil {
					return nil, err
				}
				c.op, c.re = opRegex, re
			case v.Prefix != "":
				c.op, c.value = opPrefix, v.Prefix
			default:
				c.op, c.value = opExact, v.Exact
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// accepts reports whether every condition holds for in.
func accepts(conds []cond, in *Inputs) bool {
	for i := range conds {
		c := &conds[i]
		var v string
		var ok bool
		switch c.src {
		case fromHeader:
			if vs := in.Header[c.name]; len(vs) > 0 {
				v, ok = vs[0], true
			}
		case fromQuery:
			v, ok = queryValue(in.RawQuery, c.name)
		case fromCookie:
			v, ok = cookieValue(in.Header["Cookie"], c.name)
		}
		if !c.test(v, ok) {
			return false
		}
	}
	return true
}

func (c *cond) test(v string, present bool) bool {
	switch c.op {
	case opPresent:
		return present
	case opAbsent:
		return !present
	}
	if !present {
		return false
	}
	switch c.op {
	case opExact:
		return v == c.value
	case opPrefix:
		return strings.HasPrefix(v, c.value)
	}
	return c.re.match(v)
}

// queryValue returns the first value of the query parameter name, decoded.
func queryValue(raw, name string) (string, bool) {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k != name {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			if dk, err := url.QueryUnescape(k); err != nil || dk != name {
				continue
			}
		}
		if strings.ContainsAny(v, "%+") {
			dv, err := url.QueryUnescape(v)
			if err != nil {
				// Undecodable: url.ParseQuery drops the pair, and so
				// does a service reading it that way.
				continue
			}
			v = dv
		}
		return v, true
	}
	return "", false
}

// cookieValue returns the value of the first cookie called name in the
// Cookie headers (RFC 6265 §5.4 "; "-separated pairs), without quotes.
func cookieValue(headers []string, name string) (string, bool) {
	for _, h := range headers {
		for h != "" {
			var part string
			part, h, _ = strings.Cut(h, ";")
			part = strings.TrimSpace(part)
			k, v, found := strings.Cut(part, "=")
			if !found || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// pattern is a compiled expression (a condition's regex or a parameter's
// constraint) with a fast path for the shapes most of them have: an
// optional literal prefix, then one ASCII character class repeated
// ("[0-9]+", "[a-f0-9]{8}", "acme-[a-z]+"), matched by a byte table
// instead of the regexp machine. Anything else goes to the regexp.
type pattern struct {
	re       *regexp.Regexp
	fast     bool
	lit      string
	class    *[256]bool
	min, max int // repetitions of class; max -1: unbounded
}

func newPattern(expr string) (*pattern, error) {
	re, err := config.CompileRegexp(expr)
	if err != nil {
		return nil, err
	}
	p := &pattern{re: re}
	p.fast = p.simple(expr)
	return p, nil
}

// simple fills the fast path when expr has its shape.
func (p *pattern) simple(expr string) bool {
	ast, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return false
	}
	// Not simplified: that would spell "[0-9]{8}" as eight classes.
	parts := []*syntax.Regexp{ast}
	if ast.Op == syntax.OpConcat {
		parts = ast.Sub
	}
	switch len(parts) {
	case 1:
	case 2:
		l := parts[0]
		if l.Op != syntax.OpLiteral || l.Flags&syntax.FoldCase != 0 {
			return false
		}
		for _, r := range l.Rune {
			if r >= 0x80 {
				return false
			}
		}
		p.lit = string(l.Rune)
	default:
		return false
	}
	rep := parts[len(parts)-1]
	var cls *syntax.Regexp
	switch rep.Op {
	case syntax.OpPlus:
		cls, p.min, p.max = rep.Sub[0], 1, -1
	case syntax.OpStar:
		cls, p.min, p.max = rep.Sub[0], 0, -1
	case syntax.OpRepeat:
		cls, p.min, p.max = rep.Sub[0], rep.Min, rep.Max
	default:
		return false
	}
	if cls.Op != syntax.OpCharClass {
		return false
	}
	p.class = new([256]bool)
	for i := 0; i+1 < len(cls.Rune); i += 2 {
		lo, hi := cls.Rune[i], cls.Rune[i+1]
		if hi >= 0x80 {
			return false
		}
		for c := lo; c <= hi; c++ {
			p.class[c] = true
		}
	}
	return true
}

func (p *pattern) match(s string) bool {
	if !p.fast {
		return p.re.MatchString(s)
	}
	if !strings.HasPrefix(s, p.lit) {
		return false
	}
	s = s[len(p.lit):]
	if len(s) < p.min || p.max >= 0 && len(s) > p.max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !p.class[s[i]] {
			return false
		}
	}
	return true
}
