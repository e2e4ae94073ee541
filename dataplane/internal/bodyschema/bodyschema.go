// Package bodyschema is the request-validation stage (issue 16): a route's
// JSON Schema for the request body, compiled with the table
// (config.CompileBodySchema, the function the control plane validated it
// with), applied before the cache and the transforms.
//
// A request with a body is read whole (under the route's body limit,
// which the limits stage installed: over it, 413), decoded as JSON and
// validated; a body that is not JSON, or does not conform, is answered 400
// ("invalid-request") with every failure in "errors" ({"field": its JSON
// pointer, "message"}), and the service is never called. A
// conforming body is handed on as the bytes read. A request without a
// body is validated as an absent body only if the schema is given: it is
// refused unless the method carries no body by convention (GET, HEAD,
// DELETE, OPTIONS), which pass untouched.
//
// Query and header parameters (validate.query, validate.headers) are
// checked first, each as one JSON object built from the request: the
// query's parameters all (so "additionalProperties": false refuses unknown
// ones), the headers only those the schema declares (clients and proxies
// add many others), names lowered. Each value is coerced to its property's
// declared type as OpenAPI reads parameters (config.ParamKind): a repeated
// query parameter or a header's comma-separated list for an array, a
// decimal for integer/number, true/false for boolean; text that does not
// read as the type stays a string and the schema says so. Failures are
// listed under /query/<name> and /headers/<name>; when the parameters do
// not conform the body is not read (the answer lists their failures only).
// A missing required member is reported at its own pointer
// (/headers/x-tenant, /name), not at the object holding it.
//
// A route may instead name an OpenAPI operation (validate.openapi and
// validate.operation, openapi.go): its path, query and header parameters
// become the same parameter objects (path parameters read by matching the
// operation's template against the end of the request path, failures at
// /path/<name>) and its JSON request body the body schema; only requests
// of the operation's method are checked, and a missing body is refused
// only when the operation requires one.
//
// Answers may be checked too, report only (response.go): against
// validate.response, or the operation's response schemas with
// report_responses; an answer is never held back or changed.
package bodyschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/problem"
)

// MaxFailures bounds the failures listed in one answer.
const MaxFailures = 32

// printer renders the validator's messages (in English).
var printer = message.NewPrinter(language.English)

// Route is a route's compiled request schemas. It is immutable.
type Route struct {
	schema  *jsonschema.Schema // the body's; nil: the body is not checked
	raw     []byte
	query   *config.ParamSchema
	headers *config.ParamSchema

	// From an OpenAPI operation (openapi.go): only requests of its method
	// are checked; path parameters are read by matching the template's
	// segments against the end of the request path; a body is refused
	// when absent only if the operation requires one.
	operation    string
	method       string
	template     []string
	path         *config.ParamSchema
	bodyOptional bool

	// resp checks answers, report only (response.go); nil: not checked.
	resp *responses
}

// Compile returns r's validation stage, nil without one, or the error of
// a schema that does not compile (the route is then rejected), prefixed
// with its field path.
func Compile(r *config.Route) (stage.Stage, error) {
	v := r.Schemas
	if v != nil && v.OpenAPI != "" {
		return compileOperation(r.Name, v)
	}
	if v == nil || len(v.Body) == 0 && len(v.Query) == 0 && len(v.Headers) == 0 && len(v.Response) == 0 {
		return nil, nil
	}
	out := &Route{raw: v.Body}
	var err error
	if len(v.Response) > 0 {
		s, err := config.CompileBodySchema(v.Response)
		if err != nil {
			return nil, fmt.Errorf("validate.response: %w", err)
		}
		out.resp = newResponses(r.Name, func(status int) *jsonschema.Schema {
			if status >= 200 && status < 300 {
				return s
			}
			return nil
		})
	}
	if len(v.Body) > 0 {
		if out.schema, err = config.CompileBodySchema(v.Body); err != nil {
			return nil, fmt.Errorf("validate.body: %w", err)
		}
	}
	if len(v.Query) > 0 {
		if out.query, err = config.CompileParamSchema(v.Query, false); err != nil {
			return nil, fmt.Errorf("validate.query: %w", err)
		}
	}
	if len(v.Headers) > 0 {
		if out.headers, err = config.CompileParamSchema(v.Headers, true); err != nil {
			return nil, fmt.Errorf("validate.headers: %w", err)
		}
	}
	return out, nil
}

// Failure is one place where a body does not conform.
type Failure struct {
	Pointer string `json:"pointer"`
	Message string `json:"message"`
}

// Serve validates the parameters and the body, then hands on.
func (v *Route) Serve(req *stage.Request) {
	r := req.R
	if v.method != "" && r.Method != v.method {
		req.Next()
		return
	}
	if v.resp != nil {
		v.resp.serve(req, v.serveRequest)
		return
	}
	v.serveRequest(req)
}

// serveRequest checks the request, then hands on; false when it refused
// the request (its own answer is not the service's, so not checked).
func (v *Route) serveRequest(req *stage.Request) bool {
	r := req.R
	if f := v.checkParams(r); len(f) > 0 {
		v.refuseParams(req, f)
		return false
	}
	if v.schema == nil {
		req.Next()
		return true
	}
	if r.Body == nil || r.Body == http.NoBody {
		switch {
		case v.method != "" && v.bodyOptional:
			req.Next()
			return true
		case v.method == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodDelete || r.Method == http.MethodOptions):
			req.Next()
			return true
		}
		v.refuse(req, []Failure{{Pointer: "", Message: "a JSON body is required"}})
		return false
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			stage.WriteProblem(req.W, r, http.StatusRequestEntityTooLarge, "too-large", "request body exceeds "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
			return false
		}
		stage.WriteProblem(req.W, r, http.StatusBadRequest, "bad-body", "the request body could not be read")
		return false
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		v.refuse(req, []Failure{{Pointer: "", Message: "the body is not JSON"}})
		return false
	}
	if err := v.schema.Validate(doc); err != nil {
		v.refuse(req, failures(err))
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.Header.Del("Content-Length")
	req.Next()
	return true
}

// failures flattens a validation error into its leaves: the innermost
// causes say what is wrong where.
func failures(err error) []Failure {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []Failure{{Message: err.Error()}}
	}
	var out []Failure
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			if req, ok := e.ErrorKind.(*kind.Required); ok {
				// Each missing member at its own pointer, which is
				// where a client looks for it.
				for _, m := range req.Missing {
					out = append(out, Failure{Pointer: pointer(append(slices.Clip(e.InstanceLocation), m)), Message: "required, missing"})
				}
				return
			}
			out = append(out, Failure{Pointer: pointer(e.InstanceLocation), Message: e.ErrorKind.LocalizedString(printer)})
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	slices.SortStableFunc(out, func(a, b Failure) int { return strings.Compare(a.Pointer, b.Pointer) })
	if len(out) > MaxFailures {
		out = out[:MaxFailures]
	}
	return out
}

// pointer writes an instance location as an RFC 6901 JSON pointer.
func pointer(loc []string) string {
	var b strings.Builder
	for _, p := range loc {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(p))
	}
	return b.String()
}

func (v *Route) refuse(req *stage.Request, f []Failure) {
	p := problem.New(http.StatusBadRequest, "invalid-request", "the request body does not conform to the route's schema")
	// The one errors member of Portico's problems: here each field is a
	// JSON pointer into the body ("" for the body as a whole).
	for _, e := range f {
		p.Errors = append(p.Errors, config.FieldError{Field: e.Pointer, Message: e.Message})
	}
	problem.Write(req.W, p)
}

// Describe shows the stage for the stages golden file.
func (v *Route) Describe() any {
	return struct {
		Operation   string                      `json:"operation,omitempty"`
		Method      string                      `json:"method,omitempty"`
		Template    string                      `json:"template,omitempty"`
		SchemaBytes int                         `json:"schema_bytes,omitempty"`
		Body        bool                        `json:"body,omitempty"`
		Path        map[string]config.ParamKind `json:"path,omitempty"`
		Query       map[string]config.ParamKind `json:"query,omitempty"`
		Headers     map[string]config.ParamKind `json:"headers,omitempty"`
		Responses   bool                        `json:"responses_reported,omitempty"`
	}{v.operation, v.method, strings.Join(v.template, "/"), len(v.raw), v.schema != nil, kindsOf(v.path), kindsOf(v.query), kindsOf(v.headers), v.resp != nil}
}

func kindsOf(p *config.ParamSchema) map[string]config.ParamKind {
	if p == nil {
		return nil
	}
	return p.Kinds
}

// checkParams validates the query and the headers; nil when they conform
// (or the route has no schema for them).
func (v *Route) checkParams(r *http.Request) []Failure {
	var out []Failure
	if v.path != nil {
		obj, ok := pathObject(v.path, v.template, r.URL.EscapedPath())
		if !ok {
			out = append(out, Failure{Pointer: "/path", Message: "the path does not match the operation's /" + strings.Join(v.template, "/")})
		} else {
			out = append(out, validateParams(v.path, "/path", obj)...)
		}
	}
	if v.query != nil {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			out = append(out, Failure{Pointer: "/query", Message: "the query string is malformed"})
		} else {
			out = append(out, validateParams(v.query, "/query", queryObject(v.query, q))...)
		}
	}
	if v.headers != nil {
		out = append(out, validateParams(v.headers, "/headers", headerObject(v.headers, r.Header))...)
	}
	if len(out) > MaxFailures {
		out = out[:MaxFailures]
	}
	return out
}

func validateParams(p *config.ParamSchema, prefix string, obj map[string]any) []Failure {
	err := p.Schema.Validate(obj)
	if err == nil {
		return nil
	}
	f := failures(err)
	for i := range f {
		f[i].Pointer = prefix + f[i].Pointer
	}
	return f
}

// queryObject builds the query's object: every parameter, coerced.
func queryObject(p *config.ParamSchema, q url.Values) map[string]any {
	obj := make(map[string]any, len(q))
	for name, vals := range q {
		k := p.Kinds[name]
		if k.Array && k.Comma {
			obj[name] = list(strings.Join(vals, ","), k.Scalar)
			continue
		}
		if k.Array {
			items := make([]any, len(vals))
			for i, s := range vals {
				items[i] = Coerce(s, k.Scalar)
			}
			obj[name] = items
			continue
		}
		obj[name] = Coerce(vals[0], k.Scalar)
	}
	return obj
}

// headerObject builds the headers' object: the declared headers present,
// lines of one header joined as HTTP joins them, a list split at commas.
func headerObject(p *config.ParamSchema, h http.Header) map[string]any {
	obj := make(map[string]any, len(p.Kinds))
	for name, k := range p.Kinds {
		vals := h.Values(name)
		if len(vals) == 0 {
			continue
		}
		joined := strings.Join(vals, ", ")
		if k.Array {
			obj[name] = list(joined, k.Scalar)
			continue
		}
		obj[name] = Coerce(joined, k.Scalar)
	}
	return obj
}

// list reads a comma-separated list, each item coerced.
func list(s, scalar string) []any {
	parts := strings.Split(s, ",")
	items := make([]any, len(parts))
	for i, p := range parts {
		items[i] = Coerce(strings.TrimSpace(p), scalar)
	}
	return items
}

// pathObject reads the path parameters: the template's segments matched
// against the last segments of the request path (a route may serve the
// operation under a prefix, as an OpenAPI server URL adds one); false
// when the path is shorter or a fixed segment differs.
func pathObject(p *config.ParamSchema, template []string, escaped string) (map[string]any, bool) {
	segs := strings.Split(strings.Trim(escaped, "/"), "/")
	if len(segs) < len(template) {
		return nil, false
	}
	segs = segs[len(segs)-len(template):]
	obj := make(map[string]any, len(p.Kinds))
	for i, t := range template {
		seg, err := url.PathUnescape(segs[i])
		if err != nil {
			return nil, false
		}
		if !strings.HasPrefix(t, "{") {
			if seg != t {
				return nil, false
			}
			continue
		}
		name := t[1 : len(t)-1]
		k := p.Kinds[name]
		if k.Array {
			obj[name] = list(seg, k.Scalar)
			continue
		}
		obj[name] = Coerce(seg, k.Scalar)
	}
	return obj, true
}

// Coerce reads a parameter's text as the scalar type declared for it; text
// that is not of that type stays a string, so the schema reports it as
// the wrong type.
func Coerce(s, scalar string) any {
	switch scalar {
	case "integer", "number":
		if s != "" && (s[0] == '-' || s[0] >= '0' && s[0] <= '9') && json.Valid([]byte(s)) {
			return json.Number(s)
		}
	case "boolean":
		switch s {
		case "true":
			return true
		case "false":
			return false
		}
	}
	return s
}

func (v *Route) refuseParams(req *stage.Request, f []Failure) {
	p := problem.New(http.StatusBadRequest, "invalid-request", "the request's parameters do not conform to the route's schema")
	for _, e := range f {
		p.Errors = append(p.Errors, config.FieldError{Field: e.Pointer, Message: e.Message})
	}
	problem.Write(req.W, p)
}
