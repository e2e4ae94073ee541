package extauthz

import (
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"slices"
	"strconv"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// check is what one authorization check tells the decision service: both
// protocols send exactly this, and the decision cache is keyed by it.
type check struct {
	Method   string `json:"method"`
	Scheme   string `json:"scheme"`
	Host     string `json:"host"`
	Path     string `json:"path"`  // as the client sent it, escaped
	Query    string `json:"query"` // raw, without '?'
	ClientIP string `json:"client_ip"`
	// Header holds the client's headers sent to the service (canonical
	// names) and the identity headers the auth stage writes for services.
	Header http.Header `json:"header"`
	// The verified identity ("" and nil without one).
	Consumer   string   `json:"consumer,omitempty"`
	Groups     []string `json:"groups,omitempty"`
	AuthMethod string   `json:"auth_method,omitempty"`
	Issuer     string   `json:"issuer,omitempty"`
	// Body is the request body, with include_body.
	Body []byte `json:"body,omitempty"`
}

// newCheck describes req. The client's headers are the configured ones (or
// all of them), without hop-by-hop ones, Host and Content-Length (not the
// service's business), and without anything under the gateway's own
// identity and forwarding names (the gateway writes those); the identity
// writer then removes the route's API key and forwarded claims and adds the
// identity headers, exactly as for a request to the service.
func (s *Stage) newCheck(req *stage.Request) *check {
	r := req.R
	c := &check{
		Method: r.Method, Host: r.Host, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
		Scheme: "http", ClientIP: req.ClientIP(), Header: http.Header{},
	}
	if req.Env != nil && req.Env.ClientIP != nil {
		c.Scheme = req.Env.ClientIP.Scheme(r)
	} else if r.TLS != nil {
		c.Scheme = "https"
	}
	keep := func(name string) bool {
		switch name {
		case "Authorization", "Proxy-Authorization", "Cookie", "Content-Type", "Content-Encoding", "Expect":
			// Credentials the service may need, and what the body is.
			return true
		case "Traceparent", "Tracestate", "Baggage":
			// The check carries the gateway's own trace context.
			return false
		}
		// Hop-by-hop, Host, Content-Length, and the gateway's forwarding
		// and identity names (also spelled with underscores).
		return !config.ReservedHeader(name)
	}
	if s.requestHeaders == nil {
		for name, v := range r.Header {
			if keep(name) {
				c.Header[name] = v
			}
		}
	} else {
		for _, name := range s.requestHeaders {
			if v, ok := r.Header[name]; ok && keep(name) {
				c.Header[name] = v
			}
		}
	}
	req.WriteIdentity(c.Header)
	if id := req.Identity; id != nil {
		c.Consumer, c.Groups, c.AuthMethod, c.Issuer = id.Consumer, id.Groups, id.Method, id.Issuer
	}
	return c
}

// uri is the request target as the client sent it: path and query.
func (c *check) uri() string {
	if c.Query == "" {
		return c.Path
	}
	return c.Path + "?" + c.Query
}

// key is the decision cache's key: a SHA-256 of everything sent, each
// field length-prefixed and headers in name order, so that two checks share
// a key only if they are equal.
func (c *check) key() string {
	h := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	for _, s := range [...]string{c.Method, c.Scheme, c.Host, c.Path, c.Query, c.ClientIP, c.Consumer, c.AuthMethod, c.Issuer, string(c.Body)} {
		put(s)
	}
	put(strconv.Itoa(len(c.Groups)))
	for _, g := range c.Groups {
		put(g)
	}
	names := make([]string, 0, len(c.Header))
	for name := range c.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	put(strconv.Itoa(len(names)))
	for _, name := range names {
		put(name)
		vs := c.Header[name]
		put(strconv.Itoa(len(vs)))
		for _, v := range vs {
			put(v)
		}
	}
	return string(h.Sum(nil))
}
