// Package httpsredirect is the route stage of "https_redirect" and "hsts".
//
// Rules:
//
//   - A request that arrived over plain HTTP on a route with
//     https_redirect is answered 308 Permanent Redirect to the same URL on
//     HTTPS: the request's host (as package authority normalised it)
//     without its port, then the route's https_port unless it is 443 or
//     unset, then the path and query. 308, not 301: the method and body are
//     kept (RFC 9110 §15.4.9), so a POST is not turned into a GET.
//   - It is the first stage: nothing else runs for a request that is sent
//     away (no auth, no rate limit, no service call), and credentials a
//     client sent over plain HTTP are not used.
//   - A request over TLS passes; with hsts, every answer over TLS carries
//     Strict-Transport-Security (browsers ignore it over plain HTTP, RFC
//     6797 §8.1, so it is never sent there).
//   - The scheme is the data plane's own listener's, or the one a trusted
//     proxy (--trusted-proxies) names in X-Forwarded-Proto: behind a load
//     balancer that terminates TLS and forwards plain HTTP, requests the
//     client sent over HTTPS pass (and get HSTS) instead of looping on
//     redirects; nobody else's X-Forwarded-Proto counts
//     (clientip.Resolver.Scheme).
package httpsredirect

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/portico-gw/portico/dataplane/internal/clientip"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// Stage is a route's compiled https_redirect and hsts.
type Stage struct {
	redirect bool
	// port is ":8443", or "" for 443.
	port string
	// hsts is the header value, "" for none.
	hsts string
}

// Compile returns the route's stage, or nil when it uses neither option.
func Compile(r *config.Route) stage.Stage {
	if !r.HTTPSRedirect && r.HSTS == nil {
		return nil
	}
	s := &Stage{redirect: r.HTTPSRedirect}
	if r.HTTPSPort != 0 && r.HTTPSPort != 443 {
		s.port = ":" + strconv.Itoa(r.HTTPSPort)
	}
	if r.HSTS != nil {
		s.hsts = r.HSTS.Header()
	}
	return s
}

// Serve redirects a plain request, or marks a TLS answer with HSTS.
func (s *Stage) Serve(req *stage.Request) {
	r := req.R
	var ips *clientip.Resolver
	if req.Env != nil {
		ips = req.Env.ClientIP
	}
	if ips.Scheme(r) != "https" {
		if s.redirect {
			h := req.W.Header()
			h.Set("Location", "https://"+hostname(r.Host)+s.port+r.URL.RequestURI())
			h.Set("Cache-Control", "no-store") // the port or the policy may change
			req.W.WriteHeader(http.StatusPermanentRedirect)
			return
		}
	} else if s.hsts != "" {
		req.W.Header().Set("Strict-Transport-Security", s.hsts)
	}
	req.Next()
}

// hostname drops the port of a normalised authority ("h:8080", "[::1]:80").
func hostname(host string) string {
	if i := strings.LastIndexByte(host, ':'); i > strings.LastIndexByte(host, ']') {
		return host[:i]
	}
	return host
}

// Describe renders the stage for golden files.
func (s *Stage) Describe() any {
	return map[string]any{"redirect": s.redirect, "port": s.port, "hsts": s.hsts}
}
