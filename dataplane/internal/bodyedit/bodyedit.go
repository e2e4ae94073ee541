// Package bodyedit is the body-edit stage: a route's JSON request and
// response bodies edited by JSON pointer (set, remove, move, rename),
// compiled when the table is compiled from the rules in shared/config
// (config.ParsePointer, the control plane's validation).
//
// # Rules
//
//   - Edits apply in order; an edit whose path (or, for move, source) is
//     absent does nothing. set creates the objects missing on its way; in
//     an array it replaces an existing index, and "-" appends. rename keeps
//     the member's place in its object; member order is otherwise kept as
//     received, so an edited body differs only where the edits say.
//   - Request: a non-empty body is read whole (under the route's body limit
//     and the proxy's body deadlines), must be JSON (400 bad-json
//     otherwise: the edits could not be honoured), is edited and sent on
//     with its new length. An empty body is left alone.
//   - Response: an answer whose Content-Type is JSON (application/json or
//     +json) is buffered (up to 8 MiB), edited and written with its new
//     length; the cache stores the edited answer, so hits need no edit.
//     Other answers, upgrades, 204/304, HEAD and answers announced over the
//     bound pass through unedited; an answer that turns out larger while
//     buffering, or is not valid JSON, is written as received.
//   - With "xml": true the service speaks plain XML (xml.go): the JSON
//     request body (edited first) is sent as an XML document, and an XML
//     answer (application/xml, text/xml, +xml) comes back as JSON (then
//     edited); the client's Accept-Encoding is dropped so that the answer
//     arrives uncompressed.
package bodyedit

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// maxResponse bounds the answer the stage buffers to edit.
const maxResponse = 8 << 20

// edit is one compiled edit.
type edit struct {
	op    string
	path  []string
	to    []string // move
	name  string   // rename
	value any      // set (decoded once; encoded per use, never shared)
	spec  config.BodyEdit
}

// Route is a route's body-edit stage.
type Route struct {
	request, response []edit
	xml               bool // the service speaks plain XML (xml.go)
}

// Compile compiles route r's body edits (nil without any).
func Compile(r *config.Route) stage.Stage {
	if r.Body == nil || len(r.Body.Request) == 0 && len(r.Body.Response) == 0 && !r.Body.XML {
		return nil
	}
	return &Route{request: compileEdits(r.Body.Request), response: compileEdits(r.Body.Response), xml: r.Body.XML}
}

// compileEdits compiles validated edits; an edit that does not parse (only
// an unvalidated configuration has one) is left out.
func compileEdits(specs []config.BodyEdit) []edit {
	out := make([]edit, 0, len(specs))
	for _, s := range specs {
		p, err := config.ParsePointer(s.Path)
		if err != nil || len(p) == 0 {
			continue
		}
		e := edit{op: s.Op, path: p, spec: s}
		switch s.Op {
		case config.BodySet:
			v, err := decode(s.Value)
			if err != nil {
				continue
			}
			e.value = v
		case config.BodyMove:
			if e.to, err = config.ParsePointer(s.To); err != nil || len(e.to) == 0 {
				continue
			}
		case config.BodyRename:
			e.name = s.To
		}
		out = append(out, e)
	}
	return out
}

// Describe renders the edits, for golden files.
func (b *Route) Describe() any {
	specs := func(es []edit) []config.BodyEdit {
		out := make([]config.BodyEdit, len(es))
		for i, e := range es {
			out[i] = e.spec
		}
		return out
	}
	return struct {
		Request  []config.BodyEdit `json:"request,omitempty"`
		Response []config.BodyEdit `json:"response,omitempty"`
		XML      bool              `json:"xml,omitempty"`
	}{specs(b.request), specs(b.response), b.xml}
}

// Serve edits the request's body, runs the rest of the chain, and edits
// its answer.
func (b *Route) Serve(req *stage.Request) {
	r := req.R
	if (len(b.request) > 0 || b.xml) && r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				stage.WriteProblem(req.W, r, http.StatusRequestEntityTooLarge, "too-large", "request body exceeds "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
				return
			}
			stage.WriteProblem(req.W, r, http.StatusBadRequest, "bad-body", "the request body could not be read")
			return
		}
		if len(bytes.TrimSpace(body)) > 0 {
			v, err := decode(body)
			if err != nil {
				stage.WriteProblem(req.W, r, http.StatusBadRequest, "bad-json", "the route edits or converts the request body, which must be JSON: "+err.Error())
				return
			}
			v = applyAll(v, b.request)
			var out []byte
			if b.xml {
				if out, err = jsonToXML(v); err != nil {
					stage.WriteProblem(req.W, r, http.StatusBadRequest, "bad-json", "the service takes XML; the body "+err.Error())
					return
				}
				r.Header.Set("Content-Type", "application/xml; charset=utf-8")
			} else {
				var buf bytes.Buffer
				_ = encode(&buf, v)
				out = buf.Bytes()
			}
			body = out
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.TransferEncoding = nil
		r.Header.Del("Content-Length")
	}
	if len(b.response) == 0 && !b.xml || r.Method == http.MethodHead {
		req.Next()
		return
	}
	if b.xml {
		// The answer is converted whole: it must not arrive compressed.
		r.Header.Del("Accept-Encoding")
	}
	w := &writer{w: req.W, edits: b.response, xml: b.xml}
	req.ServeHTTP(w, r)
	w.finish()
}

// applyAll applies the edits to the document v and returns it.
func applyAll(v any, edits []edit) any {
	for i := range edits {
		v = edits[i].apply(v)
	}
	return v
}

// apply decodes body, applies the edits and encodes it.
func apply(body []byte, edits []edit) ([]byte, error) {
	v, err := decode(body)
	if err != nil {
		return nil, err
	}
	v = applyAll(v, edits)
	var out bytes.Buffer
	out.Grow(len(body))
	if err := encode(&out, v); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// apply applies e to the document root and returns the root.
func (e *edit) apply(root any) any {
	switch e.op {
	case config.BodySet:
		v, _ := decode(mustEncode(e.value)) // a fresh copy: documents never share values
		root = set(root, e.path, v)
	case config.BodyRemove:
		root, _, _ = take(root, e.path)
	case config.BodyMove:
		var v any
		var ok bool
		if root, v, ok = take(root, e.path); ok {
			root = set(root, e.to, v)
		}
	case config.BodyRename:
		if parent, ok := lookup(root, e.path[:len(e.path)-1]); ok {
			if o, ok := parent.(*object); ok {
				o.rename(e.path[len(e.path)-1], e.name)
			}
		}
	}
	return root
}

func mustEncode(v any) []byte {
	var b bytes.Buffer
	_ = encode(&b, v)
	return b.Bytes()
}

// lookup follows path from v.
func lookup(v any, path []string) (any, bool) {
	for _, tok := range path {
		switch c := v.(type) {
		case *object:
			next, ok := c.get(tok)
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, ok := index(tok, len(c))
			if !ok {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// index reads an array index token that names an existing element.
func index(tok string, n int) (int, bool) {
	if tok == "" || len(tok) > 1 && tok[0] == '0' {
		return 0, false
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i < 0 || i >= n {
		return 0, false
	}
	return i, true
}

// set puts v at path, creating missing objects on the way, and returns
// the root (a new slice when an array it appended to was the root). It
// does nothing where the path runs through a scalar or a missing array
// index.
func set(root any, path []string, v any) any {
	if len(path) == 1 {
		return setIn(root, path[0], v)
	}
	parent := root
	for _, tok := range path[:len(path)-2] {
		next, ok := child(parent, tok, true)
		if !ok {
			return root
		}
		parent = next
	}
	tok := path[len(path)-2]
	c, ok := child(parent, tok, true)
	if !ok {
		return root
	}
	if updated := setIn(c, path[len(path)-1], v); !same(updated, c) {
		setIn(parent, tok, updated) // an array grew: put it back
	}
	return root
}

// child returns container c's member or element tok; with create, a
// missing (or null) object member becomes an empty object.
func child(c any, tok string, create bool) (any, bool) {
	switch c := c.(type) {
	case *object:
		next, ok := c.get(tok)
		if (!ok || next == nil) && create {
			next = &object{vals: map[string]any{}}
			c.set(tok, next)
			ok = true
		}
		return next, ok
	case []any:
		i, ok := index(tok, len(c))
		if !ok {
			return nil, false
		}
		return c[i], true
	}
	return nil, false
}

// setIn sets member or element tok of container c to v and returns the
// container (a new slice when "-" appended to an array).
func setIn(c any, tok string, v any) any {
	switch c := c.(type) {
	case *object:
		c.set(tok, v)
	case []any:
		if tok == "-" {
			return append(c, v)
		}
		if i, ok := index(tok, len(c)); ok {
			c[i] = v
		}
	}
	return c
}

// same tells whether two containers are the same one (for slices: the
// same backing array and length).
func same(a, b any) bool {
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok || bok {
		return aok && bok && len(as) == len(bs) && (len(as) == 0 || &as[0] == &bs[0])
	}
	return a == b
}

// take removes the value at path and returns the root (a new slice when
// the root array shrank), the value and whether it was there.
func take(root any, path []string) (any, any, bool) {
	var parent, grand any = root, nil
	for _, tok := range path[:len(path)-1] {
		next, ok := child(parent, tok, false)
		if !ok {
			return root, nil, false
		}
		grand, parent = parent, next
	}
	last := path[len(path)-1]
	switch c := parent.(type) {
	case *object:
		v, ok := c.get(last)
		if ok {
			c.remove(last)
		}
		return root, v, ok
	case []any:
		i, ok := index(last, len(c))
		if !ok {
			return root, nil, false
		}
		v := c[i]
		shrunk := append(c[:i:i], c[i+1:]...)
		if len(path) == 1 {
			return shrunk, v, true
		}
		setIn(grand, path[len(path)-2], shrunk)
		return root, v, true
	}
	return root, nil, false
}

// writer buffers a JSON answer to edit it; anything else passes through.
type writer struct {
	w       http.ResponseWriter
	edits   []edit
	xml     bool // the answer is XML, written as JSON
	status  int
	buf     *bytes.Buffer // nil: passing through
	wrote   bool
	through bool
}

func (w *writer) Header() http.Header { return w.w.Header() }

// Unwrap lets http.ResponseController reach the connection.
func (w *writer) Unwrap() http.ResponseWriter { return w.w }

func (w *writer) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.status = code
	if editable(code, w.w.Header(), w.xml) {
		w.buf = &bytes.Buffer{}
		return
	}
	w.through = true
	w.w.WriteHeader(code)
}

func (w *writer) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.through {
		return w.w.Write(p)
	}
	if w.buf.Len()+len(p) > maxResponse {
		// Too large to hold: what was held goes out as received.
		w.passThrough()
		return w.w.Write(p)
	}
	return w.buf.Write(p)
}

// Flush is held back while buffering: the answer is not final.
func (w *writer) Flush() {
	if w.through {
		if f, ok := w.w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// Hijack passes through (a stage after this one may take the connection).
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.w.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, http.ErrNotSupported
}

func (w *writer) passThrough() {
	w.through = true
	w.w.WriteHeader(w.status)
	if w.buf.Len() > 0 {
		_, _ = w.w.Write(w.buf.Bytes())
	}
	w.buf = nil
}

// finish edits and writes a buffered answer.
func (w *writer) finish() {
	if !w.wrote || w.through {
		return
	}
	var out []byte
	var err error
	if w.xml {
		var v any
		if v, err = xmlToJSON(w.buf.Bytes()); err == nil {
			var buf bytes.Buffer
			_ = encode(&buf, applyAll(v, w.edits))
			out = buf.Bytes()
		}
	} else {
		out, err = apply(w.buf.Bytes(), w.edits)
	}
	if err != nil {
		w.passThrough() // not what the Content-Type said: as received
		return
	}
	h := w.w.Header()
	if w.xml {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Length", strconv.Itoa(len(out)))
	// The representation changed: validators and digests of the
	// original no longer describe it.
	h.Del("ETag")
	h.Del("Content-MD5")
	h.Del("Digest")
	h.Del("Repr-Digest")
	h.Del("Content-Digest")
	w.w.WriteHeader(w.status)
	_, _ = w.w.Write(out)
}

// editable tells whether an answer with this status and header is a JSON
// body (with xml, an XML body) the stage may hold.
func editable(code int, h http.Header, xml bool) bool {
	switch {
	case code < 200, code == http.StatusNoContent, code == http.StatusNotModified:
		return false
	case h.Get("Content-Encoding") != "" && !strings.EqualFold(h.Get("Content-Encoding"), "identity"):
		return false
	}
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err != nil || n > maxResponse {
			return false
		}
	}
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return false
	}
	if xml {
		return mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml")
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
