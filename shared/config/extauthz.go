package config

import (
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// External authorization (issue 18): a route asks a decision service
// whether to let each request through, after authentication (so the
// service learns the verified identity). Two protocols:
//
//   - http: forward-auth as Traefik and nginx's auth_request do it. The data
//     plane sends GET url (POST with the body, with include_body) with the
//     original request described in
//     X-Forwarded-Method/-Proto/-Host/-Uri/-For, the identity headers, and
//     the client's headers (request_headers, or all but the route's API key
//     header). A 2xx answer allows; any other 1xx-4xx answer denies and goes
//     back to the client (status, body up to MaxExtAuthzDenyBody, Content-Type
//     and client_headers); 5xx, timeouts and transport failures are errors.
//   - grpc: Envoy's envoy.service.auth.v3.Authorization/Check (what OPA's
//     Envoy plugin, Authorino and others serve). OK allows, with the
//     OkResponse headers; any other status denies with the DeniedResponse's
//     status, headers and body (403 without one); a failed call is an
//     error.
//
// On an error failure_mode decides: fail_closed (the default, 503) or
// fail_open (the request goes on, unchanged). The service's headers reach
// the upstream request only for names in upstream_headers, and a client's
// own headers of those names are always removed first: a client cannot
// pose as the decision service.

// Bounds of an ext_authz block.
const (
	DefaultExtAuthzTimeout   = time.Second
	MaxExtAuthzTimeout       = 30 * time.Second
	MaxExtAuthzCacheTTL      = 5 * time.Minute
	DefaultExtAuthzCacheSize = 1 << 20
	MaxExtAuthzCacheSize     = 256 << 20
	MaxExtAuthzHeaders       = 64
	// MaxExtAuthzBody bounds include_body.max_bytes.
	MaxExtAuthzBody = 1 << 20
	// MaxExtAuthzDenyBody bounds the body of a denial passed back to the
	// client (and kept in the decision cache).
	MaxExtAuthzDenyBody = 64 << 10
)

// ExtAuthz is a route's external authorization: exactly one of HTTP and
// GRPC.
type ExtAuthz struct {
	HTTP *ExtAuthzHTTP `json:"http,omitempty"`
	GRPC *ExtAuthzGRPC `json:"grpc,omitempty"`
	// TLS verifies the decision service (an https url, or grpc with tls);
	// without ca, the system roots.
	TLS *ExtAuthzTLS `json:"tls,omitempty"`
	// Timeout bounds one check, connection included; 0 means
	// DefaultExtAuthzTimeout.
	Timeout Duration `json:"timeout,omitzero"`
	// FailureMode: fail_closed (default: 503 while the service fails) or
	// fail_open (the request goes on without a decision).
	FailureMode string `json:"failure_mode,omitempty"`
	// RequestHeaders are the client's headers sent to the service; empty:
	// all of them but hop-by-hop ones and the route's API key header.
	RequestHeaders []string `json:"request_headers,omitempty"`
	// UpstreamHeaders are the headers an allowing answer may add to the
	// request sent to the service behind the route (a client's own are
	// removed).
	UpstreamHeaders []string `json:"upstream_headers,omitempty"`
	// ClientHeaders are the headers of a denying answer passed to the
	// client besides Content-Type (WWW-Authenticate, Location, ...).
	ClientHeaders []string `json:"client_headers,omitempty"`
	// Cache remembers decisions for a short time, keyed by everything the
	// check sent.
	Cache *ExtAuthzCache `json:"cache,omitempty"`
	// IncludeBody sends the request body with the check (gRPC: Envoy's
	// with_request_body; http: the check is a POST carrying it, as
	// Traefik's forwardBody): up to MaxBytes, and a larger body is refused
	// (413) rather than judged on a part of it.
	IncludeBody *ExtAuthzBody `json:"include_body,omitempty"`
}

// ExtAuthzBody bounds the body sent with a check.
type ExtAuthzBody struct {
	MaxBytes int64 `json:"max_bytes"`
}

// ExtAuthzHTTP is a forward-auth service.
type ExtAuthzHTTP struct {
	// URL is asked with GET (http or https, no credentials, no fragment).
	URL string `json:"url"`
}

// ExtAuthzGRPC is a service of Envoy's ext_authz v3 API.
type ExtAuthzGRPC struct {
	// Address is host:port.
	Address string `json:"address"`
	// UseTLS speaks TLS to it (verified with tls.ca or the system roots).
	UseTLS bool `json:"use_tls,omitempty"`
}

// ExtAuthzTLS verifies the decision service's certificate.
type ExtAuthzTLS struct {
	CA         string `json:"ca,omitempty"`
	ServerName string `json:"server_name,omitempty"`
}

// ExtAuthzCache keeps allow and deny decisions (never errors) for TTL, in
// at most MaxBytes per route.
type ExtAuthzCache struct {
	TTL      Duration `json:"ttl"`
	MaxBytes int64    `json:"max_bytes,omitempty"`
}

// EffectiveTimeout is the check's time bound.
func (e *ExtAuthz) EffectiveTimeout() time.Duration {
	if e.Timeout == 0 {
		return DefaultExtAuthzTimeout
	}
	return e.Timeout.Std()
}

// FailOpen reports whether an error lets the request through.
func (e *ExtAuthz) FailOpen() bool { return e.FailureMode == FailOpen }

// EffectiveMaxBytes is the cache's bound in bytes.
func (c *ExtAuthzCache) EffectiveMaxBytes() int64 {
	if c.MaxBytes == 0 {
		return DefaultExtAuthzCacheSize
	}
	return c.MaxBytes
}

// extAuthzUnsettable: names a decision service may not set upstream (the
// message framing, the routing, the gateway's identity and forwarding
// headers, which the gateway writes itself).
func extAuthzUnsettable(name string) bool {
	return unsettable[name] || ReservedHeader(name) && name != "Authorization"
}

func (e *ExtAuthz) validate(l *errorList, p string) {
	switch {
	case e.HTTP == nil && e.GRPC == nil:
		l.add(p, "needs http or grpc")
	case e.HTTP != nil && e.GRPC != nil:
		l.add(p, "http and grpc are exclusive: one decision service per route")
	}
	tlsUsed := false
	if h := e.HTTP; h != nil {
		if msg := extAuthzURLProblem(h.URL); msg != "" {
			l.add(join(p, "http.url"), "%s", msg)
		}
		tlsUsed = strings.HasPrefix(h.URL, "https:")
	}
	if g := e.GRPC; g != nil {
		if msg := hostPortProblem(g.Address); msg != "" {
			l.add(join(p, "grpc.address"), "%s", msg)
		}
		tlsUsed = g.UseTLS
	}
	if t := e.TLS; t != nil {
		if !tlsUsed {
			l.add(join(p, "tls"), "only applies to an https url or grpc with use_tls")
		}
		if _, fields := parseServiceTLS(&ServiceTLS{CA: t.CA, ServerName: t.ServerName}, false); len(fields) > 0 {
			for _, f := range fields {
				l.add(join(p, "tls."+f.Field), "%s", f.Message)
			}
		}
	}
	if d := e.Timeout.Std(); d < 0 || d > MaxExtAuthzTimeout {
		l.add(join(p, "timeout"), "must be between 0 (default %s) and %s", DefaultExtAuthzTimeout, MaxExtAuthzTimeout)
	}
	switch e.FailureMode {
	case "", FailOpen, FailClosed:
	default:
		l.add(join(p, "failure_mode"), "must be fail_closed (default) or fail_open")
	}
	headerList(l, join(p, "request_headers"), e.RequestHeaders, func(string) string { return "" })
	headerList(l, join(p, "upstream_headers"), e.UpstreamHeaders, func(name string) string {
		if extAuthzUnsettable(name) {
			return "is written by the gateway; a decision service cannot set it"
		}
		return ""
	})
	headerList(l, join(p, "client_headers"), e.ClientHeaders, func(name string) string {
		if IsHopByHop(name) || name == "Content-Length" {
			return "belongs to the connection, not the answer"
		}
		return ""
	})
	if b := e.IncludeBody; b != nil {
		if b.MaxBytes < 1 || b.MaxBytes > MaxExtAuthzBody {
			l.add(join(p, "include_body.max_bytes"), "must be between 1 and %d", MaxExtAuthzBody)
		}
	}
	if c := e.Cache; c != nil {
		if d := c.TTL.Std(); d <= 0 || d > MaxExtAuthzCacheTTL {
			l.add(join(p, "cache.ttl"), "must be above 0 and at most %s", MaxExtAuthzCacheTTL)
		}
		if c.MaxBytes < 0 || c.MaxBytes > MaxExtAuthzCacheSize {
			l.add(join(p, "cache.max_bytes"), "must be between 0 (default %d) and %d", DefaultExtAuthzCacheSize, MaxExtAuthzCacheSize)
		}
	}
}

// headerList checks a list of header names: tokens, no duplicates (any
// case), at most MaxExtAuthzHeaders, and what extra says of each
// (canonical) name.
func headerList(l *errorList, p string, names []string, extra func(canonical string) string) {
	if len(names) > MaxExtAuthzHeaders {
		l.add(p, "at most %d headers", MaxExtAuthzHeaders)
		return
	}
	seen := map[string]bool{}
	for i, n := range names {
		fp := fmt.Sprintf("%s[%d]", p, i)
		c := textproto.CanonicalMIMEHeaderKey(n)
		switch {
		case n == "" || !isToken(n):
			l.add(fp, "must be a header name")
		case seen[c]:
			l.add(fp, "duplicate header %q", n)
		default:
			if msg := extra(c); msg != "" {
				l.add(fp, "%s %s", n, msg)
			}
		}
		seen[c] = true
	}
}

func extAuthzURLProblem(raw string) string { return httpURLProblem(raw, true) }

func hostPortProblem(addr string) string {
	if addr == "" {
		return "is required"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return "must be host:port"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "port must be between 1 and 65535"
	}
	return ""
}

// clone copies e and its lists.
func (e *ExtAuthz) clone() *ExtAuthz {
	if e == nil {
		return nil
	}
	c := *e
	c.HTTP, c.GRPC, c.TLS, c.Cache = clonePtr(e.HTTP), clonePtr(e.GRPC), clonePtr(e.TLS), clonePtr(e.Cache)
	c.IncludeBody = clonePtr(e.IncludeBody)
	c.RequestHeaders = append([]string(nil), e.RequestHeaders...)
	c.UpstreamHeaders = append([]string(nil), e.UpstreamHeaders...)
	c.ClientHeaders = append([]string(nil), e.ClientHeaders...)
	return &c
}
