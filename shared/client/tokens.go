package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/portico-gw/portico/shared/apiv1"
)

// CreateToken creates an admin API token; the answer holds its secret,
// which the control plane never shows again.
func (c *Client) CreateToken(ctx context.Context, spec apiv1.TokenSpec) (*apiv1.CreatedToken, error) {
	var t apiv1.CreatedToken
	_, err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, spec, &t, nil)
	return &t, err
}

// Tokens lists the admin API tokens (never their secrets).
func (c *Client) Tokens(ctx context.Context) ([]apiv1.Token, error) {
	var l apiv1.List[apiv1.Token]
	_, err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, nil, &l, nil)
	return l.Items, err
}

// DeleteToken revokes an admin API token.
func (c *Client) DeleteToken(ctx context.Context, name string) (*Response, error) {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(name), nil, nil, nil, nil)
}

// Whoami says who the client's token is and what it may do.
func (c *Client) Whoami(ctx context.Context) (*apiv1.Whoami, error) {
	var w apiv1.Whoami
	_, err := c.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, &w, nil)
	return &w, err
}
