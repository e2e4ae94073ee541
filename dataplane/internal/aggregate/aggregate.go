// Package aggregate is the fan-out stage: a route that answers with the
// merged JSON of several services' answers.
//
// Compile turns a route's aggregate section into a Route: each backend's
// service, method, path and query templates (placeholders are the route's
// {params}, then the client's query parameters) and timeout. Serve calls
// every backend in parallel, each through its service's Upstream (balancer,
// retries, outlier detection, breaker) under its own timeout, and merges
// their JSON in backend order: under its key, or into the top level when it
// has none. Bodies are capped (8 MiB each) and must be JSON.
//
// Failed backends are listed in "errors" and flagged with
// X-Portico-Completed: false (and Cache-Control: no-store: a partial answer
// must not be cached for a whole TTL); the answer still carries what
// arrived, unless a required backend (or, with aggregate_require_all, any
// backend) failed, which is a 502 problem.
package aggregate

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

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/transform"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/problem"
)

// maxPart caps what one backend may contribute to an aggregated response:
// the whole merge is held in memory.
const maxPart = 8 << 20

// Route is a route's compiled fan-out, the terminal stage of its chain.
type Route struct {
	backends   []backend
	requireAll bool
}

type backend struct {
	up       *upstream.Upstream
	method   string
	path     transform.Template // expanded into the decoded path
	query    transform.Template // expanded with query escaping; empty when the template has no '?'
	key      string
	timeout  time.Duration
	required bool
}

// Compile compiles r's aggregate section (nil when it has none). ups are
// the table's Upstreams by service name; a backend's timeout defaults to
// the route's.
func Compile(r *config.Route, ups map[string]*upstream.Upstream, routeTimeout time.Duration) stage.Stage {
	if len(r.Aggregate) == 0 {
		return nil
	}
	a := &Route{requireAll: r.AggregateRequireAll}
	for _, b := range r.Aggregate {
		path, query, _ := strings.Cut(b.Path, "?")
		a.backends = append(a.backends, backend{
			up:       ups[b.Service],
			method:   cmp.Or(b.Method, http.MethodGet),
			path:     transform.CompileTemplate(path),
			query:    transform.CompileTemplate(query),
			key:      b.Key,
			timeout:  cmp.Or(b.Timeout.Std(), routeTimeout),
			required: b.Required,
		})
	}
	return a
}

// Describe renders the backends, for golden files.
func (a *Route) Describe() any {
	type desc struct {
		Service  string `json:"service"`
		Method   string `json:"method"`
		Path     string `json:"path"`
		Query    string `json:"query,omitempty"`
		Key      string `json:"key,omitempty"`
		Timeout  string `json:"timeout"`
		Required bool   `json:"required,omitempty"`
	}
	out := struct {
		Backends   []desc `json:"backends"`
		RequireAll bool   `json:"require_all,omitempty"`
	}{RequireAll: a.requireAll}
	for _, b := range a.backends {
		out.Backends = append(out.Backends, desc{b.up.Name, b.method, b.path.String(), b.query.String(), b.key, b.timeout.String(), b.required})
	}
	return out
}

// result is one backend's contribution.
type result struct {
	body   json.RawMessage
	status int
	err    error
}

// failure is a failed backend, as reported in the "errors" member.
type failure struct {
	Service string `json:"service"`
	Key     string `json:"key,omitempty"`
	Status  int    `json:"status,omitempty"`
	Error   string `json:"error"`
}

// params resolves a backend template's placeholders: the route's {params},
// then the client's query parameters (parsed on first use). It is not safe
// for concurrent use.
type params struct {
	req   *stage.Request
	query url.Values
	// missing is the first path placeholder without a value, bad the
	// first value unfit for a path segment (checking: the path template
	// is being expanded).
	checking     bool
	missing, bad string
}

func (p *params) Param(name string) string {
	v := p.req.Param(name)
	if v == "" && name != "*" {
		if _, ok := p.req.Match.Params.Get(name); !ok {
			if p.query == nil {
				p.query = p.req.R.URL.Query()
			}
			v = p.query.Get(name)
		}
	}
	if p.checking {
		// A path parameter without a value would collapse "/prefs/{id}"
		// into "/prefs/": a call to the collection, which is not what the
		// route describes. {*} may be empty: it is the rest of a prefix
		// route's path.
		if v == "" && name != "*" && p.missing == "" {
			p.missing = name
		}
		// A value taken from the client's query goes into a backend path
		// as one segment's worth of text: a "/" or a dot segment in it
		// would let the client choose another endpoint of the backend.
		if strings.Contains(v, "/") || v == "." || v == ".." {
			p.bad = v
		}
	}
	return v
}

// Serve calls every backend in parallel and merges their answers.
func (a *Route) Serve(req *stage.Request) {
	w, r := req.W, req.R
	// Expand every backend's URL before starting: params is not safe for
	// concurrent use.
	p := &params{req: req}
	paths := make([]string, len(a.backends))
	queries := make([]string, len(a.backends))
	for i := range a.backends {
		b := &a.backends[i]
		p.checking = true
		paths[i] = b.path.Expand(p, nil)
		p.checking = false
		queries[i] = b.query.Expand(p, url.QueryEscape)
	}
	if p.missing != "" {
		pr := problem.New(http.StatusBadRequest, "missing-parameter",
			"a backend path needs a value for "+strconv.Quote(p.missing)+" (a path or query parameter of that name)")
		pr.Instance = r.URL.Path
		pr.Extensions = map[string]any{"parameter": p.missing}
		problem.Write(w, pr)
		return
	}
	if p.bad != "" {
		stage.WriteProblem(w, r, http.StatusBadRequest, "bad-parameter", "a value for a backend path may not contain '/' or be a dot segment: "+strconv.Quote(p.bad))
		return
	}
	header := outboundHeader(req)
	results := make([]result, len(a.backends))
	var wg sync.WaitGroup
	for i := range a.backends {
		wg.Go(func() {
			results[i] = call(r.Context(), req.Env, &a.backends[i], paths[i], queries[i], header)
		})
	}
	wg.Wait()

	var errs []failure
	failedRequired := false
	for i, res := range results {
		if res.err == nil {
			continue
		}
		b := &a.backends[i]
		errs = append(errs, failure{Service: b.up.Name, Key: b.key, Status: res.status, Error: res.err.Error()})
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
		pr := problem.New(http.StatusBadGateway, "aggregate-failed", "a backend the route requires failed")
		if len(errs) == len(a.backends) {
			pr.Detail = "every backend failed"
		}
		pr.Instance = r.URL.Path
		pr.Extensions = map[string]any{"failed_backends": errs}
		problem.Write(w, pr)
		return
	}
	body, err := merge(a.backends, results, errs)
	if err != nil {
		stage.WriteProblem(w, r, http.StatusBadGateway, "aggregate-failed", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// outboundHeader is what every backend call carries: the client's
// end-to-end headers minus its body's framing, the forwarding headers, and
// the authenticated identity.
func outboundHeader(req *stage.Request) http.Header {
	r := req.R
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
	req.WriteIdentity(out)
	req.Env.ClientIP.SetForwarded(out, r)
	return out
}

// exchange carries a backend call's upstream.Exchange to the transport.
type exchange struct{ upstream.Exchange }

func (x *exchange) UpstreamExchange() *upstream.Exchange { return &x.Exchange }

// call makes one backend call through the service's Upstream (its
// balancer, retries, outlier detection and breaker), in a span of its own.
func call(ctx context.Context, env *stage.Env, b *backend, path, query string, header http.Header) (res result) {
	ctx, span := env.Tracer.Start(ctx, "aggregate "+b.up.Name, trace.WithSpanKind(trace.SpanKindInternal))
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
	// The call path is the reverse proxy's (upstream.Call with the HTTP
	// attempt of upstream.Transport); only the body is read here, and a
	// body that breaks off counts against the service like a failed answer.
	ex := &exchange{upstream.Exchange{Call: upstream.Call{Upstream: b.up}, Path: path}}
	if err := ex.Admit(); err != nil {
		return result{err: errors.New("circuit breaker open")}
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(context.WithValue(ctx, upstream.ExchangeKey{}, ex), b.method, "http://upstream.invalid/", nil)
	if err != nil {
		ex.End(false, false)
		return result{err: err}
	}
	req.URL.RawQuery = query
	// Each attempt sends its instance's host, as the reverse proxy does.
	req.Host = ""
	req.Header = header.Clone()
	resp, err := env.Transport.RoundTrip(req)
	if err != nil {
		ex.End(ex.Failed, ex.ClientFault)
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return result{status: http.StatusGatewayTimeout, err: fmt.Errorf("no answer within %s", b.timeout)}
		case errors.Is(err, upstream.ErrNoEndpoints):
			return result{status: http.StatusServiceUnavailable, err: errors.New("no healthy instance")}
		}
		return result{status: http.StatusBadGateway, err: errors.New("the upstream failed")}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPart+1))
	ex.End(ex.Failed || err != nil, false)
	switch {
	case err != nil:
		return result{status: http.StatusBadGateway, err: errors.New("reading the answer failed")}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return result{status: resp.StatusCode, err: fmt.Errorf("answered %d", resp.StatusCode)}
	case len(body) > maxPart:
		return result{status: resp.StatusCode, err: fmt.Errorf("answer larger than %d bytes", maxPart)}
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("null")
	}
	if !json.Valid(body) {
		return result{status: resp.StatusCode, err: errors.New("answer is not JSON")}
	}
	if b.key == "" && body[0] != '{' {
		return result{status: resp.StatusCode, err: errors.New("answer is not a JSON object, so it cannot be merged without a key")}
	}
	return result{status: resp.StatusCode, body: body}
}

// merge builds the merged object. Keyed results appear in backend order;
// members of unkeyed (flattened) objects are merged in backend order, a
// later backend's member replacing an earlier one of the same name.
func merge(backends []backend, results []result, errs []failure) ([]byte, error) {
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
