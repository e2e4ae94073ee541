package proxy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/problem"
)

// maxAggregatePart caps what one backend may contribute to an aggregated
// response: the whole merge is held in memory.
const maxAggregatePart = 8 << 20

// aggregate is a route's compiled fan-out.
type aggregate struct {
	backends   []aggBackend
	requireAll bool
}

type aggBackend struct {
	up       *upstream.Upstream
	method   string
	path     tmpl // expanded into the decoded path
	query    tmpl // expanded with query escaping; empty when the template has no '?'
	key      string
	timeout  time.Duration
	required bool
}

func compileAggregate(r *config.Route, ups map[string]*upstream.Upstream, routeTimeout time.Duration) *aggregate {
	if len(r.Aggregate) == 0 {
		return nil
	}
	a := &aggregate{requireAll: r.AggregateRequireAll}
	for _, b := range r.Aggregate {
		path, query, _ := strings.Cut(b.Path, "?")
		a.backends = append(a.backends, aggBackend{
			up:       ups[b.Service],
			method:   cmp.Or(b.Method, http.MethodGet),
			path:     compileTmpl(path),
			query:    compileTmpl(query),
			key:      b.Key,
			timeout:  cmp.Or(b.Timeout.Std(), routeTimeout),
			required: b.Required,
		})
	}
	return a
}

// aggResult is one backend's contribution.
type aggResult struct {
	body   json.RawMessage
	status int
	err    error
}

// aggError is a failed backend, as reported in the "errors" member.
type aggError struct {
	Service string `json:"service"`
	Key     string `json:"key,omitempty"`
	Status  int    `json:"status,omitempty"`
	Error   string `json:"error"`
}

// serveAggregate calls every backend in parallel, each under its own
// timeout, and merges their JSON: under its key, or into the top level when
// it has none. Failed backends are listed in "errors" and flagged with
// X-Portico-Completed: false; the response still carries what arrived,
// unless a required backend (or, with aggregate_require_all, any backend)
// failed.
func (h *Handler) serveAggregate(w http.ResponseWriter, r *http.Request, route *Route, m *router.Match, params func(string) string, id *auth.Identity) {
	a := route.aggregate
	var clientQuery url.Values
	lookup := func(name string) string {
		if v := params(name); v != "" || name == "*" {
			return v
		}
		if _, ok := m.Params.Get(name); ok {
			return ""
		}
		if clientQuery == nil {
			clientQuery = r.URL.Query()
		}
		return clientQuery.Get(name)
	}
	// A value taken from the client's query goes into a backend path as one
	// segment's worth of text: a "/" or a dot segment in it would let the
	// client choose another endpoint of the backend.
	badValue := ""
	inPath := func(v string) string {
		if strings.Contains(v, "/") || v == "." || v == ".." {
			badValue = v
		}
		return v
	}
	// Expand every backend's URL before starting: lookup is not safe for
	// concurrent use.
	paths := make([]string, len(a.backends))
	queries := make([]string, len(a.backends))
	// A path parameter without a value would collapse "/prefs/{id}" into
	// "/prefs/": a call to the collection, which is not what the route
	// describes. {*} may be empty: it is the rest of a prefix route's path.
	missing := ""
	pathLookup := func(name string) string {
		v := lookup(name)
		if v == "" && name != "*" && missing == "" {
			missing = name
		}
		return v
	}
	for i := range a.backends {
		b := &a.backends[i]
		paths[i] = b.path.expand(pathLookup, inPath)
		queries[i] = b.query.expand(lookup, url.QueryEscape)
	}
	if missing != "" {
		p := problem.New(http.StatusBadRequest, "missing-parameter",
			"a backend path needs a value for "+strconv.Quote(missing)+" (a path or query parameter of that name)")
		p.Instance = r.URL.Path
		p.Extensions = map[string]any{"parameter": missing}
		problem.Write(w, p)
		return
	}
	if badValue != "" {
		writeProblem(w, r, http.StatusBadRequest, "bad-parameter", "a value for a backend path may not contain '/' or be a dot segment: "+strconv.Quote(badValue))
		return
	}
	header := h.aggregateHeader(r, route, id)
	results := make([]aggResult, len(a.backends))
	var wg sync.WaitGroup
	for i := range a.backends {
		wg.Go(func() {
			results[i] = h.callBackend(r.Context(), route, &a.backends[i], paths[i], queries[i], header)
		})
	}
	wg.Wait()

	var errs []aggError
	failedRequired := false
	for i, res := range results {
		if res.err == nil {
			continue
		}
		b := &a.backends[i]
		errs = append(errs, aggError{Service: b.up.Name, Key: b.key, Status: res.status, Error: res.err.Error()})
		if b.required || a.requireAll {
			failedRequired = true
		}
	}
	w.Header().Set("X-Portico-Completed", strconv.FormatBool(len(errs) == 0))
	if len(errs) > 0 {
		// A partial answer must not be cached and served for a whole TTL.
		w.Header().Set("Cache-Control", "no-store")
	}
	if failedRequired || len(errs) == len(a.backends) {
		p := problem.New(http.StatusBadGateway, "aggregate-failed", "a backend the route requires failed")
		if len(errs) == len(a.backends) {
			p.Detail = "every backend failed"
		}
		p.Instance = r.URL.Path
		p.Extensions = map[string]any{"failed_backends": errs}
		problem.Write(w, p)
		return
	}
	body, err := mergeJSON(a.backends, results, errs)
	if err != nil {
		writeProblem(w, r, http.StatusBadGateway, "aggregate-failed", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// aggregateHeader is what every backend call carries: the client's
// end-to-end headers minus its body and credentials' hop-specific framing,
// the forwarding headers, and the authenticated identity.
func (h *Handler) aggregateHeader(r *http.Request, route *Route, id *auth.Identity) http.Header {
	out := make(http.Header, len(r.Header)+4)
	for k, v := range r.Header {
		switch k {
		case "Content-Length", "Content-Type", "Content-Encoding", "Expect", "Forwarded",
			"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		}
		if config.IsHopByHop(k) {
			continue
		}
		out[k] = v
	}
	// The same request may not arrive with an Accept-Encoding we cannot
	// merge: bodies are decoded as JSON here.
	out.Del("Accept-Encoding")
	setOutboundIdentity(out, route.auth, id)
	h.ips.SetForwarded(out, r)
	return out
}

// callBackend makes one backend call through the service's Upstream (its
// balancer, retries, outlier detection and breaker), in a span of its own.
func (h *Handler) callBackend(ctx context.Context, route *Route, b *aggBackend, path, query string, header http.Header) (res aggResult) {
	ctx, span := h.obs.tracer.Start(ctx, "aggregate "+b.up.Name, trace.WithSpanKind(trace.SpanKindInternal))
	defer func() {
		if span.IsRecording() {
			span.SetAttributes(attribute.String("portico.service", b.up.Name), attribute.String("portico.aggregate.key", b.key),
				attribute.String("url.path", path))
			if res.status != 0 {
				span.SetAttributes(attribute.Int("http.response.status_code", res.status))
			}
			if res.err != nil {
				span.SetStatus(codes.Error, res.err.Error())
			}
		}
		span.End()
	}()
	done, err := b.up.Admit()
	if err != nil {
		return aggResult{err: errors.New("circuit breaker open")}
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	ex := &exchange{route: route, Exchange: upstream.Exchange{Upstream: b.up, Path: path}}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, upstream.ExchangeKey{}, ex), b.method, "http://upstream.invalid/", nil)
	if err != nil {
		done(false, false)
		return aggResult{err: err}
	}
	req.URL.RawQuery = query
	// Each attempt sends its instance's host, as the reverse proxy does.
	req.Host = ""
	req.Header = header.Clone()
	resp, err := h.proxy.Transport.RoundTrip(req)
	if err != nil {
		gone := errors.Is(err, context.Canceled) && ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled)
		done(!gone, gone)
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return aggResult{status: http.StatusGatewayTimeout, err: fmt.Errorf("no answer within %s", b.timeout)}
		case errors.Is(err, upstream.ErrNoEndpoints):
			return aggResult{status: http.StatusServiceUnavailable, err: errors.New("no healthy instance")}
		}
		return aggResult{status: http.StatusBadGateway, err: errors.New("the upstream failed")}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAggregatePart+1))
	done(ex.Failed || err != nil, false)
	switch {
	case err != nil:
		return aggResult{status: http.StatusBadGateway, err: errors.New("reading the answer failed")}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return aggResult{status: resp.StatusCode, err: fmt.Errorf("answered %d", resp.StatusCode)}
	case len(body) > maxAggregatePart:
		return aggResult{status: resp.StatusCode, err: fmt.Errorf("answer larger than %d bytes", maxAggregatePart)}
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("null")
	}
	if !json.Valid(body) {
		return aggResult{status: resp.StatusCode, err: errors.New("answer is not JSON")}
	}
	if b.key == "" && body[0] != '{' {
		return aggResult{status: resp.StatusCode, err: errors.New("answer is not a JSON object, so it cannot be merged without a key")}
	}
	return aggResult{status: resp.StatusCode, body: body}
}

// mergeJSON builds the merged object. Keyed results appear in backend
// order; members of unkeyed (flattened) objects are merged in backend
// order, a later backend's member replacing an earlier one of the same name.
func mergeJSON(backends []aggBackend, results []aggResult, errs []aggError) ([]byte, error) {
	var keys []string
	members := map[string]json.RawMessage{}
	put := func(k string, v json.RawMessage) {
		if _, ok := members[k]; !ok {
			keys = append(keys, k)
		}
		members[k] = v
	}
	for i, res := range results {
		if res.err != nil {
			continue
		}
		if k := backends[i].key; k != "" {
			put(k, res.body)
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(res.body))
		if _, err := dec.Token(); err != nil { // '{'
			return nil, fmt.Errorf("merge %s: %w", backends[i].up.Name, err)
		}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("merge %s: %w", backends[i].up.Name, err)
			}
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return nil, fmt.Errorf("merge %s: %w", backends[i].up.Name, err)
			}
			name, _ := t.(string)
			put(name, v)
		}
	}
	if len(errs) > 0 {
		e, err := json.Marshal(errs)
		if err != nil {
			return nil, err
		}
		put("errors", e)
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(members[k])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
