// Package transform holds a route's transformations: the request stage
// (path rewrite or stripped prefix, query and header edits on the request
// the reverse proxy sends) and the response stage (header edits and CORS on
// every answer, preflights answered at the gateway).
//
// Values are templates (template.go) split into literal and {param} parts
// at compile time; expanding one reads the route match through
// stage.Request, so a route whose templates have no placeholders never
// looks at it.
package transform

import (
	"maps"
	"net/http"
	"net/url"
	"slices"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// Request is a route's compiled request transformations: what the service
// receives instead of what the client sent.
type Request struct {
	rewrite     *Template
	stripPrefix bool
	query       *edits
	header      *edits
}

// CompileRequest compiles r's rewrite (or strip_prefix), query and request
// header edits (nil when it has none).
func CompileRequest(r *config.Route) stage.Stage {
	t := &Request{
		stripPrefix: r.StripPrefix,
		query:       compileEdits(r.Query, func(s string) string { return s }),
		header:      compileEdits(r.RequestHeaders, http.CanonicalHeaderKey),
	}
	if r.Rewrite != "" {
		tp := CompileTemplate(r.Rewrite)
		t.rewrite = &tp
	}
	if t.rewrite == nil && !t.stripPrefix && t.query == nil && t.header == nil {
		return nil
	}
	return t
}

// Serve sets the path the service receives: the rewrite, or the path
// without the matched prefix.
func (t *Request) Serve(req *stage.Request) {
	switch {
	case t.rewrite != nil:
		req.UpstreamPath = t.rewrite.Expand(req, nil)
	case t.stripPrefix:
		p := req.Path[req.Match.PrefixLen:]
		if p == "" || p[0] != '/' {
			p = "/" + p
		}
		req.UpstreamPath = p
	}
	req.Next()
}

// Outbound edits the request the reverse proxy sends: headers, then the
// query.
func (t *Request) Outbound(req *stage.Request, out *http.Request) {
	if t.header != nil {
		t.header.applyHeaders(out.Header, req)
	}
	if t.query != nil {
		out.URL.RawQuery = t.query.applyQuery(out.URL.RawQuery, req)
	}
}

// Describe renders the transformations, for golden files.
func (t *Request) Describe() any {
	d := struct {
		Rewrite     string `json:"rewrite,omitempty"`
		StripPrefix bool   `json:"strip_prefix,omitempty"`
		Query       any    `json:"query,omitempty"`
		Headers     any    `json:"headers,omitempty"`
	}{StripPrefix: t.stripPrefix, Query: t.query.describe(), Headers: t.header.describe()}
	if t.rewrite != nil {
		d.Rewrite = t.rewrite.String()
	}
	return d
}

// edits are compiled header or query edits.
type edits struct {
	remove []string
	set    []kv
	add    []kv
}

type kv struct {
	name string
	val  Template
}

func compileEdits(e *config.Edits, canon func(string) string) *edits {
	if e == nil {
		return nil
	}
	out := &edits{}
	for _, name := range e.Remove {
		out.remove = append(out.remove, canon(name))
	}
	pairs := func(m map[string]string) []kv {
		var l []kv
		for _, k := range slices.Sorted(maps.Keys(m)) {
			l = append(l, kv{name: canon(k), val: CompileTemplate(m[k])})
		}
		return l
	}
	out.set, out.add = pairs(e.Set), pairs(e.Add)
	return out
}

// applyHeaders edits h: remove, then set, then add.
func (e *edits) applyHeaders(h http.Header, p Params) {
	for _, name := range e.remove {
		h.Del(name)
	}
	for _, kv := range e.set {
		h[kv.name] = []string{kv.val.Expand(p, nil)}
	}
	for _, kv := range e.add {
		h[kv.name] = append(h[kv.name], kv.val.Expand(p, nil))
	}
}

// applyQuery edits a raw query string.
func (e *edits) applyQuery(raw string, p Params) string {
	if len(e.remove) == 0 && len(e.set) == 0 {
		// Additions only: the client's query goes through byte for byte.
		add := url.Values{}
		for _, kv := range e.add {
			add[kv.name] = append(add[kv.name], kv.val.Expand(p, nil))
		}
		if raw == "" {
			return add.Encode()
		}
		return raw + "&" + add.Encode()
	}
	q, _ := url.ParseQuery(raw) // keeps every pair it could parse
	for _, name := range e.remove {
		delete(q, name)
	}
	for _, kv := range e.set {
		q[kv.name] = []string{kv.val.Expand(p, nil)}
	}
	for _, kv := range e.add {
		q[kv.name] = append(q[kv.name], kv.val.Expand(p, nil))
	}
	return q.Encode()
}

// describe renders the edits as data (nil for none).
func (e *edits) describe() any {
	if e == nil {
		return nil
	}
	pairs := func(l []kv) [][2]string {
		var out [][2]string
		for _, kv := range l {
			out = append(out, [2]string{kv.name, kv.val.String()})
		}
		return out
	}
	return struct {
		Remove []string    `json:"remove,omitempty"`
		Set    [][2]string `json:"set,omitempty"`
		Add    [][2]string `json:"add,omitempty"`
	}{e.remove, pairs(e.set), pairs(e.add)}
}
