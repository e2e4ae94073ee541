package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// GetRaw GETs an admin API path ("/v1/routes") and returns the JSON body as
// it came, for tools that show objects as the server wrote them.
func (c *Client) GetRaw(ctx context.Context, path string, query url.Values) ([]byte, *Response, error) {
	var body []byte
	r, err := c.do(ctx, http.MethodGet, path, query, nil, &body, nil)
	return body, r, err
}

// Delete removes the object at collection/name ("/v1/routes", "users"), for
// tools that name the kind at run time.
func Delete(ctx context.Context, c *Client, collection, name string, opts ...WriteOption) (*Response, error) {
	return c.do(ctx, http.MethodDelete, collection+"/"+url.PathEscape(name), nil, nil, nil, headers(opts))
}

// Issuers is the JWT issuers collection.
func (c *Client) Issuers() Objects[config.Issuer] { return Objects[config.Issuer]{c, "/v1/issuers"} }

// AnalyticsSeries is Analytics with the window as points of step, for all
// routes together and for the routes named (none: the control plane's
// choice of the busiest).
func (c *Client) AnalyticsSeries(ctx context.Context, window, step time.Duration, routes ...string) (*apiv1.Analytics, error) {
	var a apiv1.Analytics
	q := url.Values{"window": {window.String()}, "step": {step.String()}}
	for _, r := range routes {
		q.Add("route", r)
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/analytics", q, nil, &a, nil)
	return &a, err
}
