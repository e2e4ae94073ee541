package config

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Protocols a service may speak.
const (
	ProtocolHTTP = "http"
	ProtocolGRPC = "grpc"
)

// Limits on the traffic features.
const (
	MaxAggregateBackends = 16
	MaxCacheTTL          = 30 * 24 * time.Hour
	MaxCacheEntryBytes   = 64 << 20
	MaxEdits             = 64
	DefaultCacheEntry    = 1 << 20
	DefaultCORSMaxAge    = 5 * time.Minute
)

// AggregateBackend is one call of an aggregating route. Path is a template:
// "{name}" takes the route's path parameter of that name, or else the
// client's query parameter of that name ("" when neither is present).
type AggregateBackend struct {
	Service string `json:"service"`
	Path    string `json:"path"`
	// Key is the member of the merged object that holds this backend's
	// JSON. Empty: the backend's object is merged into the top level.
	Key string `json:"key,omitempty"`
	// Method is GET (default) or another method without a request body.
	Method string `json:"method,omitempty"`
	// Timeout bounds this backend's answer; zero means the route's timeout.
	Timeout Duration `json:"timeout,omitzero"`
	// Required: when this backend fails the whole request fails (502)
	// instead of answering with what arrived.
	Required bool `json:"required,omitempty"`
}

// RouteGRPC maps a route to a unary gRPC method of its service.
type RouteGRPC struct {
	// Method is "package.Service/Method".
	Method string `json:"method"`
}

// ServiceGRPC tells the data plane how to learn a gRPC service's message
// types: from DescriptorSet (a serialized google.protobuf.FileDescriptorSet,
// base64 in JSON) or, without one, from the server's reflection service.
type ServiceGRPC struct {
	DescriptorSet []byte `json:"descriptor_set,omitempty"`
}

// RouteCache caches GET and HEAD responses of a route.
type RouteCache struct {
	// TTL is how long a response stays fresh when the upstream does not say
	// (Cache-Control s-maxage or max-age win over it).
	TTL Duration `json:"ttl"`
	// Store is "memory" (default: an LRU on each data plane, bounded in
	// bytes) or "redis" (shared by every data plane).
	Store string `json:"store,omitempty"`
	// KeyHeaders are request headers whose values are part of the key
	// (on top of whatever the response's Vary names).
	KeyHeaders []string `json:"key_headers,omitempty"`
	// KeyQuery limits the query parameters in the key to these; empty means
	// the whole query. IgnoreQuery leaves the query out of the key.
	KeyQuery    []string `json:"key_query,omitempty"`
	IgnoreQuery bool     `json:"ignore_query,omitempty"`
	// KeyCookies are cookies whose values are part of the key. A request
	// with a Cookie is otherwise answered from the cache only by responses
	// that say Cache-Control: public; with KeyCookies, a request whose
	// cookies are all named here is cached like one without cookies, per
	// value. Any other cookie still means: public answers only.
	KeyCookies []string `json:"key_cookies,omitempty"`
	// KeyConsumer keys the cache per authenticated consumer, which also
	// allows caching answers to requests that carry credentials.
	KeyConsumer bool `json:"key_consumer,omitempty"`
	// MaxEntryBytes: larger responses are passed through, not stored.
	// Zero means 1 MiB.
	MaxEntryBytes int64 `json:"max_entry_bytes,omitempty"`
}

// Cache stores.
const (
	CacheMemory = "memory"
	CacheRedis  = "redis"
)

// Edits change a set of name/value pairs (headers, query parameters):
// Remove first, then Set (replace), then Add (append). Values may use the
// route's {param}s.
type Edits struct {
	Add    map[string]string `json:"add,omitempty"`
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// CORS answers preflight requests at the gateway and adds the CORS headers
// to responses for allowed origins.
type CORS struct {
	// AllowOrigins are exact origins ("https://app.example.com"), origins
	// with a wildcard subdomain ("https://*.example.com"), or "*".
	AllowOrigins []string `json:"allow_origins"`
	// AllowMethods default to the route's methods (or GET, HEAD, POST).
	AllowMethods     []string `json:"allow_methods,omitempty"`
	AllowHeaders     []string `json:"allow_headers,omitempty"`
	ExposeHeaders    []string `json:"expose_headers,omitempty"`
	AllowCredentials bool     `json:"allow_credentials,omitempty"`
	// MaxAge lets browsers keep a preflight answer; zero: 5 minutes.
	MaxAge Duration `json:"max_age,omitzero"`
}

// Backends returns the services a route sends traffic to.
func (r *Route) Backends() []string {
	if r.Mirror != nil {
		// The mirror's service is in use too (deleting it is refused).
		cp := *r
		cp.Mirror = nil
		out := cp.Backends()
		if !slices.Contains(out, r.Mirror.Service) {
			out = append(out, r.Mirror.Service)
		}
		return out
	}
	if len(r.Split) > 0 {
		out := make([]string, 0, len(r.Split))
		for _, b := range r.Split {
			out = append(out, b.Service)
		}
		return out
	}
	if len(r.Aggregate) == 0 {
		if r.Service == "" {
			return nil
		}
		return []string{r.Service}
	}
	out := make([]string, 0, len(r.Aggregate))
	for _, b := range r.Aggregate {
		if !slices.Contains(out, b.Service) {
			out = append(out, b.Service)
		}
	}
	return out
}

// Params returns the {param} names every path of the route captures, and
// whether every path ends in "/*" (so that {*} is known too).
func (r *Route) Params() (common map[string]bool, allPrefix bool) {
	allPrefix = len(r.Paths) > 0
	for i, p := range r.Paths {
		names := map[string]bool{}
		for _, seg := range strings.Split(p, "/") {
			if n, _, ok := ParamSegment(seg); ok && strings.HasSuffix(seg, "}") {
				names[n] = true
			}
		}
		if !strings.HasSuffix(p, "/*") {
			allPrefix = false
		}
		if i == 0 {
			common = names
			continue
		}
		maps.DeleteFunc(common, func(n string, _ bool) bool { return !names[n] })
	}
	return common, allPrefix
}

// TemplatePart is a piece of a value template: literal text, or the
// placeholder Param ("*" for the rest of a prefix path).
type TemplatePart struct {
	Lit   string
	Param string
}

// ParseTemplate splits a template ("/users/{id}/x") into literal text and
// {name} placeholders. Validation and the data plane's compiler both use
// it, so they cannot disagree on what a template means.
func ParseTemplate(tmpl string) ([]TemplatePart, error) {
	var parts []TemplatePart
	for rest := tmpl; rest != ""; {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			parts = append(parts, TemplatePart{Lit: rest})
			break
		}
		if rest[i] == '}' {
			return nil, fmt.Errorf("%q: unmatched '}'", tmpl)
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("%q: unclosed '{'", tmpl)
		}
		name := rest[i+1 : i+j]
		if name != "*" && !isIdent(name) {
			return nil, fmt.Errorf("%q: placeholder {%s} must look like {name}", tmpl, name)
		}
		if i > 0 {
			parts = append(parts, TemplatePart{Lit: rest[:i]})
		}
		parts = append(parts, TemplatePart{Param: name})
		rest = rest[i+j+1:]
	}
	return parts, nil
}

// templateParams returns the placeholders of a template.
func templateParams(tmpl string) ([]string, error) {
	parts, err := ParseTemplate(tmpl)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range parts {
		if p.Param != "" {
			names = append(names, p.Param)
		}
	}
	return names, nil
}

// validateTraffic checks the issue-9 features of a route on their own.
func (r *Route) validateTraffic(l *errorList, p string) {
	params, allPrefix := r.Params()
	known := func(name string) bool { return params[name] || name == "*" && allPrefix }
	if len(r.Aggregate) > 0 {
		if r.Service != "" {
			l.add(join(p, "service"), "an aggregating route names its services in aggregate, not here")
		}
		if r.GRPC != nil {
			l.add(join(p, "grpc"), "does not combine with aggregate")
		}
		if r.Rewrite != "" || r.StripPrefix {
			l.add(join(p, "rewrite"), "does not apply to an aggregating route (each backend has its own path)")
		}
		if len(r.Aggregate) > MaxAggregateBackends {
			l.add(join(p, "aggregate"), "at most %d backends", MaxAggregateBackends)
		}
		keys := map[string]int{}
		for i, b := range r.Aggregate {
			bp := join(p, fmt.Sprintf("aggregate[%d]", i))
			if msg := nameProblem(b.Service); msg != "" {
				l.add(join(bp, "service"), "%s", msg)
			}
			if !strings.HasPrefix(b.Path, "/") {
				l.add(join(bp, "path"), "must start with '/'")
			} else if _, err := templateParams(b.Path); err != nil {
				l.add(join(bp, "path"), "%v", err)
			} else if strings.ContainsAny(b.Path, " #\r\n") {
				l.add(join(bp, "path"), "must not contain spaces, '#' or line breaks")
			}
			if b.Key != "" {
				if j, dup := keys[b.Key]; dup {
					l.add(join(bp, "key"), "duplicate of aggregate[%d].key", j)
				}
				keys[b.Key] = i
				if len(b.Key) > MaxNameLen {
					l.add(join(bp, "key"), "must be at most %d characters", MaxNameLen)
				}
			}
			switch b.Method {
			case "", http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions:
			default:
				l.add(join(bp, "method"), "must be GET, HEAD, DELETE or OPTIONS: backend calls carry no request body")
			}
			if d := b.Timeout.Std(); d < 0 || d > MaxRouteTimeout {
				l.add(join(bp, "timeout"), "must be between 0 and %s", MaxRouteTimeout)
			}
		}
	}
	if r.GRPC != nil {
		svc, method, ok := strings.Cut(r.GRPC.Method, "/")
		if !ok || !isDottedIdent(svc) || !isIdent(method) {
			l.add(join(p, "grpc.method"), "must look like package.Service/Method")
		}
		if r.Rewrite != "" || r.StripPrefix {
			l.add(join(p, "rewrite"), "does not apply to a gRPC route (the method is the path)")
		}
	}
	if r.Rewrite != "" {
		if !strings.HasPrefix(r.Rewrite, "/") {
			l.add(join(p, "rewrite"), "must start with '/'")
		} else if strings.ContainsAny(r.Rewrite, "?# \r\n") {
			l.add(join(p, "rewrite"), "is a path: no query, '#', spaces or line breaks (add query parameters with query)")
		} else if names, err := templateParams(r.Rewrite); err != nil {
			l.add(join(p, "rewrite"), "%v", err)
		} else {
			for _, n := range names {
				if !known(n) {
					l.add(join(p, "rewrite"), "{%s} is not captured by every path of the route", n)
				}
			}
		}
		if r.StripPrefix {
			l.add(join(p, "strip_prefix"), "give either strip_prefix or rewrite (use {*} for the rest of the path)")
		}
	}
	if r.Cache != nil {
		r.Cache.validate(l, join(p, "cache"))
		if len(r.Methods) > 0 && !slices.Contains(r.Methods, http.MethodGet) && !slices.Contains(r.Methods, http.MethodHead) {
			l.add(join(p, "cache"), "only GET and HEAD responses are cached; the route allows neither")
		}
		if r.Cache.KeyConsumer && r.Auth == nil {
			l.add(join(p, "cache.key_consumer"), "needs auth on the route to know the consumer")
		}
	}
	r.RequestHeaders.validate(l, join(p, "request_headers"), headerEdit, known)
	r.ResponseHeaders.validate(l, join(p, "response_headers"), headerEdit, known)
	r.Query.validate(l, join(p, "query"), queryEdit, known)
	if r.CORS != nil {
		r.CORS.validate(l, join(p, "cors"))
	}
}

func isDottedIdent(s string) bool {
	for _, part := range strings.Split(s, ".") {
		if !isIdent(part) {
			return false
		}
	}
	return true
}

func (c *RouteCache) validate(l *errorList, p string) {
	if d := c.TTL.Std(); d <= 0 || d > MaxCacheTTL {
		l.add(join(p, "ttl"), "must be between 1s and %s", MaxCacheTTL)
	} else if d < time.Second {
		l.add(join(p, "ttl"), "must be at least 1s")
	}
	switch c.Store {
	case "", CacheMemory, CacheRedis:
	default:
		l.add(join(p, "store"), "must be memory or redis")
	}
	for i, h := range c.KeyHeaders {
		if !isToken(h) {
			l.add(join(p, fmt.Sprintf("key_headers[%d]", i)), "%q is not a header name", h)
		}
	}
	for i, q := range c.KeyQuery {
		if q == "" || strings.ContainsAny(q, "&=#") {
			l.add(join(p, fmt.Sprintf("key_query[%d]", i)), "%q is not a query parameter name", q)
		}
	}
	for i, name := range c.KeyCookies {
		if !isToken(name) {
			l.add(join(p, fmt.Sprintf("key_cookies[%d]", i)), "%q is not a cookie name", name)
		}
	}
	if c.IgnoreQuery && len(c.KeyQuery) > 0 {
		l.add(join(p, "ignore_query"), "give either ignore_query or key_query")
	}
	if c.MaxEntryBytes < 0 || c.MaxEntryBytes > MaxCacheEntryBytes {
		l.add(join(p, "max_entry_bytes"), "must be between 0 (default 1 MiB) and %d", MaxCacheEntryBytes)
	}
}

type editKind int

const (
	headerEdit editKind = iota
	queryEdit
)

// unsettable headers are managed by the gateway and HTTP itself.
var unsettable = withHopByHop("Content-Length", "Host")

func (e *Edits) validate(l *errorList, p string, kind editKind, known func(string) bool) {
	if e == nil {
		return
	}
	if len(e.Add)+len(e.Set)+len(e.Remove) > MaxEdits {
		l.add(p, "at most %d edits", MaxEdits)
	}
	check := func(fp, name string) {
		switch kind {
		case headerEdit:
			if !isToken(name) {
				l.add(fp, "%q is not a header name", name)
			} else if unsettable[http.CanonicalHeaderKey(name)] {
				l.add(fp, "%s is managed by the gateway and cannot be edited", http.CanonicalHeaderKey(name))
			}
		case queryEdit:
			if name == "" || strings.ContainsAny(name, "&=#") {
				l.add(fp, "%q is not a query parameter name", name)
			}
		}
	}
	checkValue := func(fp, v string) {
		if strings.ContainsAny(v, "\r\n\x00") {
			l.add(fp, "value must not contain line breaks or NUL")
			return
		}
		names, err := templateParams(v)
		if err != nil {
			l.add(fp, "%v", err)
			return
		}
		for _, n := range names {
			if !known(n) {
				l.add(fp, "{%s} is not captured by every path of the route", n)
			}
		}
	}
	for _, m := range []struct {
		name string
		vals map[string]string
	}{{"add", e.Add}, {"set", e.Set}} {
		for _, k := range slices.Sorted(maps.Keys(m.vals)) {
			fp := join(p, m.name+"."+k)
			check(fp, k)
			checkValue(fp, m.vals[k])
		}
	}
	for i, name := range e.Remove {
		check(join(p, fmt.Sprintf("remove[%d]", i)), name)
	}
}

func (c *CORS) validate(l *errorList, p string) {
	if len(c.AllowOrigins) == 0 {
		l.add(join(p, "allow_origins"), "at least one origin (or \"*\") is required")
	}
	for i, o := range c.AllowOrigins {
		fp := join(p, fmt.Sprintf("allow_origins[%d]", i))
		if o == "*" {
			if c.AllowCredentials {
				l.add(fp, "\"*\" cannot be combined with allow_credentials (browsers refuse it); list the origins")
			}
			continue
		}
		u, err := url.Parse(strings.Replace(o, "://*.", "://wildcard.", 1))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			l.add(fp, "%q must be an origin such as https://app.example.com or https://*.example.com", o)
		}
	}
	for i, m := range c.AllowMethods {
		if !knownMethods[strings.ToUpper(m)] {
			l.add(join(p, fmt.Sprintf("allow_methods[%d]", i)), "unknown HTTP method %q", m)
		}
	}
	for i, h := range c.AllowHeaders {
		if h != "*" && !isToken(h) {
			l.add(join(p, fmt.Sprintf("allow_headers[%d]", i)), "%q is not a header name", h)
		}
	}
	for i, h := range c.ExposeHeaders {
		if !isToken(h) {
			l.add(join(p, fmt.Sprintf("expose_headers[%d]", i)), "%q is not a header name", h)
		}
	}
	if d := c.MaxAge.Std(); d < 0 || d > 24*time.Hour {
		l.add(join(p, "max_age"), "must be between 0 and 24h")
	}
}

// validateProtocol checks a service's protocol settings.
func (s *Service) validateProtocol(l *errorList, p string) {
	switch s.Protocol {
	case "", ProtocolHTTP:
		if s.GRPC != nil {
			l.add(join(p, "grpc"), "only applies with protocol grpc")
		}
	case ProtocolSOAP:
		s.validateSOAP(l, p)
	case ProtocolGRPC:
		switch {
		case s.GRPC == nil || len(s.GRPC.DescriptorSet) == 0:
		case len(s.GRPC.DescriptorSet) > 8<<20:
			l.add(join(p, "grpc.descriptor_set"), "at most 8 MiB")
		default:
			if _, err := ParseDescriptorSet(s.GRPC.DescriptorSet); err != nil {
				l.add(join(p, "grpc.descriptor_set"), "%v", err)
			}
		}
	default:
		l.add(join(p, "protocol"), "must be http, grpc or soap")
	}
	if s.SOAP != nil && s.Protocol != ProtocolSOAP {
		l.add(join(p, "soap"), "only applies with protocol soap")
	}
}

// checkRouteProtocol checks a route against the protocol of its service.
func checkRouteProtocol(l *errorList, p string, r *Route, svc *Service) {
	grpcSvc := svc.Protocol == ProtocolGRPC
	switch {
	case GRPCPassThrough(r, svc):
		checkGRPCPassThrough(l, p, r)
	case !grpcSvc && r.GRPC != nil:
		l.add(join(p, "grpc"), "service %q does not speak gRPC (protocol grpc)", svc.Name)
	}
	checkGRPCMethod(l, p, r, svc)
	switch soapSvc := svc.Protocol == ProtocolSOAP; {
	case soapSvc && r.SOAP == nil:
		l.add(join(p, "soap"), "service %q speaks SOAP: the route must name an operation (soap.operation)", svc.Name)
	case !soapSvc && r.SOAP != nil:
		l.add(join(p, "soap"), "service %q does not speak SOAP (protocol soap)", svc.Name)
	}
	checkSOAPOperation(l, p, r, svc)
}

func (e *Edits) clone() *Edits {
	if e == nil {
		return nil
	}
	return &Edits{Add: maps.Clone(e.Add), Set: maps.Clone(e.Set), Remove: slices.Clone(e.Remove)}
}
