package cache

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/authority"
	"github.com/portico-gw/portico/shared/config"
)

// Policy is one route's compiled cache settings. It is immutable.
type Policy struct {
	route       string
	generation  int64
	ttl         time.Duration
	store       string
	keyHeaders  []string // canonical, sorted, unique
	keyQuery    map[string]bool
	ignoreQuery bool
	keyConsumer bool
	// keyCookie: Cookie is one of the key headers, so answers to requests
	// with cookies are private to that cookie header and may be stored.
	keyCookie  bool
	keyCookies map[string]bool // KeyCookies; nil: none
	maxEntry   int64
}

// Compile compiles route's cache settings; generation is the route's
// revision, so that any change of the route (a purge included) starts a new
// key space. A nil spec gives a nil Policy, with which Serve only calls next.
func Compile(route string, generation int64, spec *config.RouteCache) *Policy {
	if spec == nil {
		return nil
	}
	p := &Policy{
		route:       route,
		generation:  generation,
		ttl:         time.Duration(spec.TTL),
		store:       cmp.Or(spec.Store, config.CacheMemory),
		ignoreQuery: spec.IgnoreQuery,
		keyConsumer: spec.KeyConsumer,
		maxEntry:    cmp.Or(spec.MaxEntryBytes, config.DefaultCacheEntry),
	}
	for _, h := range spec.KeyHeaders {
		p.keyHeaders = append(p.keyHeaders, textproto.CanonicalMIMEHeaderKey(h))
	}
	slices.Sort(p.keyHeaders)
	p.keyHeaders = slices.Compact(p.keyHeaders)
	p.keyCookie = slices.Contains(p.keyHeaders, "Cookie")
	if len(spec.KeyCookies) > 0 {
		p.keyCookies = make(map[string]bool, len(spec.KeyCookies))
		for _, c := range spec.KeyCookies {
			p.keyCookies[c] = true
		}
	}
	if len(spec.KeyQuery) > 0 {
		p.keyQuery = make(map[string]bool, len(spec.KeyQuery))
		for _, q := range spec.KeyQuery {
			p.keyQuery[foldName(q)] = true
		}
	}
	return p
}

// keysWholeQuery: every byte of the query the upstream sees is in the key.
func (p *Policy) keysWholeQuery() bool { return !p.ignoreQuery && p.keyQuery == nil }

// Route is the route the policy belongs to.
func (p *Policy) Route() string { return p.route }

// field writes s length-prefixed, so that no choice of values can make two
// different field lists hash alike.
func field(h hash.Hash, s string) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	h.Write([]byte(s))
}

// hostKey is the request's authority in the normal form of package
// authority: host and non-default port. The proxy has already replaced
// r.Host with it (and refused a request without a valid one), so this costs
// a scan; a request that reaches the cache some other way with an invalid
// authority gets a key of its own rather than a shared one. The port is kept:
// "shop.example:8443" may be another site, and the Host the client sent
// names the load balancer's port, not a data plane's.
func hostKey(r *http.Request) string {
	def := authority.PortHTTP
	if r.TLS != nil {
		def = authority.PortHTTPS
	}
	h, err := authority.Normalize(r.Host, def)
	if err != nil {
		return "\x00invalid\x00" + r.Host
	}
	return h
}

// primaryKey is the key of r under p, before Vary.
func (p *Policy) primaryKey(r *http.Request, consumer string) string {
	h := sha256.New()
	field(h, "v1")
	field(h, p.route)
	field(h, strconv.FormatInt(p.generation, 10))
	field(h, hostKey(r))
	field(h, r.URL.EscapedPath())
	if p.ignoreQuery {
		field(h, "")
	} else {
		field(h, queryKey(r.URL.RawQuery, p.keyQuery))
	}
	for _, name := range p.keyHeaders {
		field(h, name)
		field(h, headerValue(r.Header, name))
	}
	if p.keyConsumer {
		field(h, "consumer")
		field(h, consumer)
	}
	if p.keyCookies != nil {
		// Only requests whose cookies are all keyed share answers
		// (cookiesKeyed), so the key takes them all, as sent.
		field(h, "cookies")
		for _, v := range r.Header["Cookie"] {
			for part := range strings.SplitSeq(v, ";") {
				if part = textproto.TrimString(part); part != "" {
					field(h, part)
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cookiesKeyed: every cookie r carries is one of KeyCookies. The Cookie
// header is split here, not by net/http, which skips pairs it cannot parse
// that a lenient upstream might still read: any part that is not a keyed
// name with '=' makes the answer false.
func (p *Policy) cookiesKeyed(r *http.Request) bool {
	if p.keyCookies == nil {
		return false
	}
	for _, v := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(v, ";") {
			part = textproto.TrimString(part)
			if part == "" {
				continue
			}
			name, _, ok := strings.Cut(part, "=")
			if !ok || !p.keyCookies[name] {
				return false
			}
		}
	}
	return true
}

// queryKey is the key form of a raw query. Two queries share it only when
// no upstream can read them differently, so it stays close to the bytes the
// upstream receives (the raw query, unchanged):
//
//   - Percent-encoding is normalised only as RFC 3986 §6.2.2 allows: an
//     encoded unreserved character is decoded ("%41" is "A") and hex digits
//     are upper-cased ("%2f" is "%2F"). Everything else stays as sent: "+"
//     is not "%20" (form decoding says space, a path decoder says plus),
//     "%3B" is not ";", and an invalid escape such as "%zz" stays as it is,
//     so it never meets "%25zz", which decodes to it.
//   - Parameters ('&'-separated; empty ones dropped, as every parser does)
//     are sorted stably by folded name, so that "a=1&b=2" and "b=2&a=1"
//     share an entry while one name's values keep their order. A raw ';'
//     separates parameters for some upstreams (Rails, Tomcat's path
//     parameters, Python before 3.9.2) and not for others (Go, PHP); with one
//     in the query nothing is reordered, so the key is the query as sent.
//   - With only (key_query), a parameter is left out of the key only when
//     no upstream could read it as one of the keyed names: names are
//     compared folded (foldName: decoded, case-insensitive like ASP.NET,
//     PHP's "." and " " as "_" and "q[]" as "q"), and a parameter with a
//     raw ';' stays when any of its ';'-separated pieces names a keyed
//     parameter ("x=1;q=evil" stays on a route keyed by q: parameter
//     cloaking).
func queryKey(raw string, only map[string]bool) string {
	if raw == "" {
		return ""
	}
	semicolon := strings.IndexByte(raw, ';') >= 0
	type param struct{ folded, raw string }
	var ps []param
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		name, _, _ := strings.Cut(part, "=")
		folded := foldName(name)
		if only != nil && !only[folded] && !(semicolon && piecesKeyed(part, only)) {
			continue
		}
		ps = append(ps, param{folded, normalizeEscapes(part)})
	}
	if !semicolon {
		slices.SortStableFunc(ps, func(a, b param) int { return strings.Compare(a.folded, b.folded) })
	}
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.raw)
	}
	return b.String()
}

// piecesKeyed: one of part's ';'-separated pieces names a keyed parameter.
func piecesKeyed(part string, only map[string]bool) bool {
	for piece := range strings.SplitSeq(part, ";") {
		name, _, _ := strings.Cut(piece, "=")
		if only[foldName(name)] {
			return true
		}
	}
	return false
}

// foldName is the form under which upstreams may know a query parameter's
// name: form-decoded (an invalid escape left as sent), leading spaces
// removed, cut at '[' (PHP arrays), ' ' and '.' as '_' (PHP), lower case
// (ASP.NET). Over-folding only merges names in the key's filter, which keeps
// more parameters in the key: the safe direction.
func foldName(name string) string {
	if d, err := url.QueryUnescape(name); err == nil {
		name = d
	}
	name = strings.TrimLeft(name, " ")
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	return strings.ToLower(strings.Map(func(r rune) rune {
		if r == ' ' || r == '.' {
			return '_'
		}
		return r
	}, name))
}

// normalizeEscapes applies RFC 3986 §6.2.2.1-2 to s: upper-case hex digits
// in percent-encodings, and decode those of unreserved characters. Invalid
// escapes are left alone.
func normalizeEscapes(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' || i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			b.WriteByte(c)
			continue
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		if isUnreserved(v) {
			b.WriteByte(v)
		} else {
			b.WriteByte('%')
			b.WriteByte(upperHex[v>>4])
			b.WriteByte(upperHex[v&15])
		}
		i += 2
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// isUnreserved: RFC 3986 §2.3.
func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// headerValue joins a request header's values with list whitespace
// normalised, so that "gzip, br" and "gzip,br" key alike.
func headerValue(h http.Header, name string) string {
	vs := h.Values(name)
	if len(vs) == 0 {
		return "\x00absent"
	}
	var items []string
	for _, v := range vs {
		for item := range strings.SplitSeq(v, ",") {
			items = append(items, strings.TrimSpace(item))
		}
	}
	return strings.Join(items, ",")
}

// variantKey is the key of r's variant of a response that varies on names.
// Without names it is the primary key itself.
func variantKey(primary string, names []string, r *http.Request) string {
	if len(names) == 0 {
		return primary
	}
	h := sha256.New()
	field(h, primary)
	for _, name := range names {
		field(h, name)
		field(h, headerValue(r.Header, name))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// varyNames are the canonical names a response's Vary lists, sorted and
// unique; star reports "Vary: *".
func varyNames(h http.Header) (names []string, star bool) {
	for _, v := range h.Values("Vary") {
		for item := range strings.SplitSeq(v, ",") {
			item = strings.TrimSpace(item)
			switch item {
			case "":
			case "*":
				return nil, true
			default:
				names = append(names, textproto.CanonicalMIMEHeaderKey(item))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), false
}

// cacheControl maps the Cache-Control directives of h (lower-cased) to
// their values, unquoted ("" when they have none).
func cacheControl(h http.Header) map[string]string {
	vs := h.Values("Cache-Control")
	if len(vs) == 0 {
		return nil
	}
	cc := map[string]string{}
	for _, v := range vs {
		for d := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			if _, seen := cc[name]; !seen {
				cc[name] = strings.Trim(strings.TrimSpace(val), `"`)
			}
		}
	}
	return cc
}

// seconds parses a delta-seconds directive value; ok is false when it is
// absent or malformed.
func seconds(cc map[string]string, name string) (time.Duration, bool) {
	v, ok := cc[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	// RFC 9111 §1.2.2: too large a value means "a long time".
	return time.Duration(min(n, int64(config.MaxCacheTTL/time.Second))) * time.Second, true
}
