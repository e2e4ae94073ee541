// Package client is a typed Go client for Portico's control-plane API: the
// admin API (services, routes, consumers, config, audit, data planes) and the
// sync API that data planes long-poll. Errors from the server come back as
// *problem.Problem, so callers can branch on Status and read the field errors.
package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/bearer"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/problem"
)

// maxResponse bounds what the client reads from one response.
const maxResponse = 256 << 20

// Client talks to one control plane. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
	actor string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient replaces the default HTTP client. Long polls hold a request
// for the wait they ask for, so its Timeout must be longer (or zero).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithActor names the operator in the audit log (X-Portico-Actor).
func WithActor(name string) Option { return func(c *Client) { c.actor = name } }

// New returns a client for the control plane at baseURL ("http://host:9000").
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("control plane URL %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("control plane URL %q: want http(s)://host:port", baseURL)
	}
	c := &Client{base: u, token: token, hc: &http.Client{}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// WriteOption adds conditions to a write.
type WriteOption func(h http.Header)

// IfMatch makes a write conditional on the object's current version.
func IfMatch(version int64) WriteOption {
	return func(h http.Header) { h.Set("If-Match", `"`+strconv.FormatInt(version, 10)+`"`) }
}

// IfNoneMatch makes a PUT create-only.
func IfNoneMatch() WriteOption { return func(h http.Header) { h.Set("If-None-Match", "*") } }

// Response metadata the caller may want besides the body.
type Response struct {
	Status     int
	Revision   int64
	ETag       string
	Dataplanes int
	// DeltaBase is, on a poll answered with a delta, the delta's base
	// revision (0 otherwise).
	DeltaBase int64
	// ticketKeys is a sync answer's apiv1.HeaderTicketKeys (a secret:
	// unexported, so that printing a Response never shows it).
	ticketKeys string
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any, hdr http.Header) (*Response, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", bearer.Authorization(c.token))
	}
	if c.actor != "" {
		req.Header.Set(apiv1.HeaderActor, c.actor)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	r := &Response{Status: resp.StatusCode, ETag: resp.Header.Get("ETag")}
	r.Revision, _ = strconv.ParseInt(resp.Header.Get(apiv1.HeaderRevision), 10, 64)
	r.Dataplanes, _ = strconv.Atoi(resp.Header.Get(apiv1.HeaderDataplanes))
	r.DeltaBase, _ = strconv.ParseInt(resp.Header.Get(apiv1.HeaderDelta), 10, 64)
	r.ticketKeys = resp.Header.Get(apiv1.HeaderTicketKeys)
	var rd io.Reader = io.LimitReader(resp.Body, maxResponse)
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return r, fmt.Errorf("%s %s: gzip: %w", method, path, err)
		}
		defer zr.Close()
		rd = io.LimitReader(zr, maxResponse)
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return r, fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		return r, decodeProblem(resp, data)
	}
	if resp.StatusCode == http.StatusNotModified || resp.StatusCode == http.StatusNoContent || out == nil {
		return r, nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return r, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return r, fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return r, nil
}

func decodeProblem(resp *http.Response, data []byte) error {
	p := &problem.Problem{}
	if err := json.Unmarshal(data, p); err != nil || p.Status == 0 {
		return &problem.Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode), Detail: strings.TrimSpace(string(data[:min(len(data), 512)]))}
	}
	return p
}

// StatusOf returns the HTTP status of an error returned by the client, or 0.
func StatusOf(err error) int {
	var p *problem.Problem
	if errors.As(err, &p) {
		return p.Status
	}
	return 0
}

func headers(opts []WriteOption) http.Header {
	h := http.Header{}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Objects is the typed CRUD API of one collection.
type Objects[T any] struct {
	c    *Client
	path string
}

// Services, Routes and Consumers return the typed API of each collection.
func (c *Client) Services() Objects[config.Service] {
	return Objects[config.Service]{c, "/v1/services"}
}
func (c *Client) Routes() Objects[config.Route] { return Objects[config.Route]{c, "/v1/routes"} }
func (c *Client) Consumers() Objects[config.Consumer] {
	return Objects[config.Consumer]{c, "/v1/consumers"}
}

// Certificates is the certificates collection; what it returns never
// carries a key (Put without one keeps the stored key).
func (c *Client) Certificates() Objects[config.Certificate] {
	return Objects[config.Certificate]{c, "/v1/certificates"}
}

// List returns every object and the revision they were read at.
func (o Objects[T]) List(ctx context.Context) ([]T, int64, error) {
	var l apiv1.List[T]
	_, err := o.c.do(ctx, http.MethodGet, o.path, nil, nil, &l, nil)
	return l.Items, l.Revision, err
}

// Get reads one object.
func (o Objects[T]) Get(ctx context.Context, name string) (*T, error) {
	var v T
	if _, err := o.c.do(ctx, http.MethodGet, o.path+"/"+url.PathEscape(name), nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// Create creates an object (POST); it fails with 409 if the name exists.
func (o Objects[T]) Create(ctx context.Context, obj T) (*T, *Response, error) {
	var v T
	r, err := o.c.do(ctx, http.MethodPost, o.path, nil, obj, &v, nil)
	if err != nil {
		return nil, r, err
	}
	return &v, r, nil
}

// Put creates or replaces the named object.
func (o Objects[T]) Put(ctx context.Context, name string, obj T, opts ...WriteOption) (*T, *Response, error) {
	var v T
	r, err := o.c.do(ctx, http.MethodPut, o.path+"/"+url.PathEscape(name), nil, obj, &v, headers(opts))
	if err != nil {
		return nil, r, err
	}
	return &v, r, nil
}

// Delete removes the named object.
func (o Objects[T]) Delete(ctx context.Context, name string, opts ...WriteOption) (*Response, error) {
	return o.c.do(ctx, http.MethodDelete, o.path+"/"+url.PathEscape(name), nil, nil, nil, headers(opts))
}

// PurgeRouteCache empties the route's response cache on every data plane
// and in Redis; it returns the route at its new version.
func (c *Client) PurgeRouteCache(ctx context.Context, route string, opts ...WriteOption) (*config.Route, *Response, error) {
	var r config.Route
	resp, err := c.do(ctx, http.MethodPost, "/v1/routes/"+url.PathEscape(route)+"/cache/purge", nil, nil, &r, headers(opts))
	if err != nil {
		return nil, resp, err
	}
	return &r, resp, nil
}

// ExportConfig returns the whole configuration.
func (c *Client) ExportConfig(ctx context.Context) (*apiv1.Export, error) {
	var e apiv1.Export
	_, err := c.do(ctx, http.MethodGet, "/v1/config", nil, nil, &e, nil)
	return &e, err
}

// ImportConfig replaces the whole configuration; with dryRun it only
// returns the diff. IfMatch takes a revision here.
func (c *Client) ImportConfig(ctx context.Context, cfg *config.Config, dryRun bool, opts ...WriteOption) (*apiv1.ImportResult, error) {
	var res apiv1.ImportResult
	q := url.Values{}
	if dryRun {
		q.Set("dry_run", "true")
	}
	_, err := c.do(ctx, http.MethodPut, "/v1/config", q, cfg, &res, headers(opts))
	return &res, err
}

// Audit lists audit entries after a revision, oldest first.
func (c *Client) Audit(ctx context.Context, after int64, limit int) (*apiv1.AuditPage, error) {
	var p apiv1.AuditPage
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {strconv.Itoa(limit)}}
	_, err := c.do(ctx, http.MethodGet, "/v1/audit", q, nil, &p, nil)
	return &p, err
}

// Dataplanes lists the data planes and whether they converged.
func (c *Client) Dataplanes(ctx context.Context) (*apiv1.Dataplanes, error) {
	var d apiv1.Dataplanes
	_, err := c.do(ctx, http.MethodGet, "/v1/dataplanes", nil, nil, &d, nil)
	return &d, err
}

// PollRequest is one long poll of the sync API.
type PollRequest struct {
	After           int64
	Wait            time.Duration
	NodeID          string
	NodeVersion     string
	AppliedRevision int64
	// AppliedEpoch is the epoch of the applied snapshot ("" before any): a
	// control plane in another epoch answers at once.
	AppliedEpoch string
	// Rejected lists the objects of the applied revision this data plane
	// could not apply (at most config.MaxRejectedObjects are sent).
	Rejected []config.Rejected
	// TLS is what the data plane's TLS listener serves; nil: none.
	TLS *apiv1.DataplaneTLS
	// Deltas asks for a snapshot.Delta from AppliedRevision (of
	// AppliedEpoch) when the control plane still has one; the data plane
	// must then hold that revision's whole configuration to apply it to.
	Deltas bool
}

// Poll is the answer to one long poll.
type Poll struct {
	// Snapshot is the encoded snapshot (verify it with snapshot.Decode), or
	// nil when the wait ran out with nothing new or a delta came instead.
	Snapshot []byte
	// Delta is the encoded delta (snapshot.DecodeDelta) when the control
	// plane answered with one.
	Delta []byte
	// Dataplanes is the number of data planes connected to the control
	// plane, 0 if it did not say.
	Dataplanes int
	// TicketKeys are the cluster's TLS session-ticket keys, the encrypting
	// one first (apiv1.HeaderTicketKeys); nil when the control plane sent
	// none. TicketKeysErr says why a value sent could not be read.
	TicketKeys    apiv1.TicketKeys
	TicketKeysErr error
}

// PollSnapshot long-polls for a snapshot newer than req.After.
func (c *Client) PollSnapshot(ctx context.Context, req PollRequest) (*Poll, error) {
	q := url.Values{"after": {strconv.FormatInt(req.After, 10)}, "wait": {req.Wait.String()}}
	if req.Deltas {
		q.Set("delta", "1")
	}
	h := http.Header{}
	h.Set(apiv1.HeaderNodeID, req.NodeID)
	h.Set(apiv1.HeaderNodeVersion, req.NodeVersion)
	h.Set(apiv1.HeaderAppliedRevision, strconv.FormatInt(req.AppliedRevision, 10))
	if v := apiv1.EncodeRejected(req.Rejected); v != "" {
		h.Set(apiv1.HeaderRejected, v)
	}
	if v := apiv1.EncodeNodeTLS(req.TLS); v != "" {
		h.Set(apiv1.HeaderNodeTLS, v)
		if req.TLS.TicketKey != "" {
			h.Set(apiv1.HeaderNodeTicketKey, req.TLS.TicketKey)
		}
	}
	if req.AppliedEpoch != "" {
		h.Set(apiv1.HeaderEpoch, req.AppliedEpoch)
	}
	// Asking explicitly turns off the transport's transparent gzip, so the
	// client does the decompression (and bounds it) itself.
	h.Set("Accept-Encoding", "gzip")
	var raw []byte
	r, err := c.do(ctx, http.MethodGet, "/v1/snapshot", q, nil, &raw, h)
	if err != nil {
		return nil, err
	}
	p := &Poll{Dataplanes: r.Dataplanes}
	p.TicketKeys, p.TicketKeysErr = apiv1.DecodeTicketKeys(r.ticketKeys)
	switch {
	case r.Status == http.StatusNotModified:
	case r.DeltaBase > 0:
		p.Delta = raw
	default:
		p.Snapshot = raw
	}
	return p, nil
}

// Report sends a data plane's traffic counters (the analytics heartbeat).
func (c *Client) Report(ctx context.Context, rep apiv1.Report) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/report", nil, rep, nil, nil)
	return err
}

// Analytics returns cluster-wide traffic per route and per data plane over
// the last window (1m to 1h).
func (c *Client) Analytics(ctx context.Context, window time.Duration) (*apiv1.Analytics, error) {
	var a apiv1.Analytics
	_, err := c.do(ctx, http.MethodGet, "/v1/analytics", url.Values{"window": {window.String()}}, nil, &a, nil)
	return &a, err
}
