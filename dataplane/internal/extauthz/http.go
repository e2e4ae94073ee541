package extauthz

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/tracecarrier"
	"github.com/portico-gw/portico/shared/config"
)

// httpDecider asks a forward-auth service.
type httpDecider struct {
	url    string
	client *http.Client
	// withBody: include_body; the check is a POST carrying the body.
	withBody bool
}

func newHTTPDecider(e *config.ExtAuthz, cl *Client) (*httpDecider, error) {
	if _, err := url.Parse(e.HTTP.URL); err != nil {
		return nil, fmt.Errorf("ext_authz.http.url: %w", err)
	}
	c, err := cl.httpClient(e.TLS)
	if err != nil {
		return nil, err
	}
	return &httpDecider{url: e.HTTP.URL, client: c, withBody: e.IncludeBody != nil}, nil
}

// decide sends GET url with the check in headers, or, with include_body,
// POST url carrying the request body (empty when the request has none)
// with its Content-Type and Content-Encoding: a GET's body has no meaning
// servers agree on (RFC 9110 9.3.1), so a service that reads bodies reads
// a POST's. The answer's status decides: 2xx allows (its headers are the
// candidates for upstream), 3xx and 4xx deny (its headers and body are the
// client's), anything else is an error.
func (h *httpDecider) decide(ctx context.Context, c *check, req *stage.Request) (*decision, error) {
	method, body := http.MethodGet, io.Reader(nil)
	if h.withBody {
		method, body = http.MethodPost, bytes.NewReader(c.Body)
	}
	out, err := http.NewRequestWithContext(ctx, method, h.url, body)
	if err != nil {
		return nil, err
	}
	for name, v := range c.Header {
		out.Header[name] = v
	}
	out.Header.Set("X-Forwarded-Method", c.Method)
	out.Header.Set("X-Forwarded-Proto", c.Scheme)
	out.Header.Set("X-Forwarded-Host", c.Host)
	out.Header.Set("X-Forwarded-Uri", c.uri())
	if c.ClientIP != "" {
		out.Header.Set("X-Forwarded-For", c.ClientIP)
	}
	if req.Env != nil && req.Env.Propagator != nil {
		req.Env.Propagator.Inject(ctx, tracecarrier.Header(out.Header))
	}
	resp, err := h.client.Do(out)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		// Drain a little so that the connection goes back to the pool.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, config.MaxExtAuthzDenyBody))
		return &decision{Allow: true, Upstream: resp.Header}, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 500:
		body, err := io.ReadAll(io.LimitReader(resp.Body, config.MaxExtAuthzDenyBody+1))
		if err != nil {
			return nil, fmt.Errorf("reading the denial: %w", err)
		}
		if len(body) > config.MaxExtAuthzDenyBody {
			return nil, fmt.Errorf("%w: a denial body over %d bytes", errBadAnswer, config.MaxExtAuthzDenyBody)
		}
		return &decision{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
	}
	return nil, fmt.Errorf("the authorization service answered %d", resp.StatusCode)
}

func (h *httpDecider) describe() map[string]any {
	if h.withBody {
		return map[string]any{"url": h.url, "method": http.MethodPost}
	}
	return map[string]any{"url": h.url}
}
