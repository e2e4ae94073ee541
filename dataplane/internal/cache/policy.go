package cache

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

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
	maxEntry    int64
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
	if len(spec.KeyQuery) > 0 {
		p.keyQuery = make(map[string]bool, len(spec.KeyQuery))
		for _, q := range spec.KeyQuery {
			p.keyQuery[q] = true
		}
	}
	return p
}

// Route is the route the policy belongs to.
func (p *Policy) Route() string { return p.route }

// field writes s length-prefixed, so that no choice of values can make two
// different field lists hash alike.
func field(h hash.Hash, s string) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	h.Write([]byte(s))
}

// hostKey is the request's host name without its port: routes match hosts
// regardless of port, and the data planes behind one load balancer each
// listen on their own, so a port in the key would keep them from sharing
// entries.
func hostKey(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(host)
}

// primaryKey is the key of r under p, before Vary.
func (p *Policy) primaryKey(r *http.Request, consumer string) string {
	h := sha256.New()
	field(h, "v1")
	field(h, p.route)
	field(h, strconv.FormatInt(p.generation, 10))
	field(h, hostKey(r.Host))
	field(h, r.URL.EscapedPath())
	if p.ignoreQuery {
		field(h, "")
	} else {
		field(h, normalizeQuery(r.URL.RawQuery, p.keyQuery))
	}
	for _, name := range p.keyHeaders {
		field(h, name)
		field(h, headerValue(r.Header, name))
	}
	if p.keyConsumer {
		field(h, "consumer")
		field(h, consumer)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// normalizeQuery decodes and re-encodes the parameters (so that "%41" and
// "A" key alike) and sorts them stably by name: the order of distinct
// parameters does not matter to an upstream, the order of one parameter's
// values may. With only, parameters not in it are left out.
func normalizeQuery(raw string, only map[string]bool) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var ps []kv
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if only != nil && !only[k] {
			continue
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			v = uv
		}
		ps = append(ps, kv{k, v})
	}
	slices.SortStableFunc(ps, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(p.k))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p.v))
	}
	return b.String()
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
