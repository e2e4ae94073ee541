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
package bodyschema

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
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

// Route is a route's compiled body schema. It is immutable.
type Route struct {
	schema *jsonschema.Schema
	raw    []byte
}

// Compile returns r's validation stage, nil without one, or the error of
// a schema that does not compile (the route is then rejected).
func Compile(r *config.Route) (stage.Stage, error) {
	if r.Schemas == nil || len(r.Schemas.Body) == 0 {
		return nil, nil
	}
	s, err := config.CompileBodySchema(r.Schemas.Body)
	if err != nil {
		return nil, err
	}
	return &Route{schema: s, raw: r.Schemas.Body}, nil
}

// Failure is one place where a body does not conform.
type Failure struct {
	Pointer string `json:"pointer"`
	Message string `json:"message"`
}

// Serve validates the body, then hands on.
func (v *Route) Serve(req *stage.Request) {
	r := req.R
	if r.Body == nil || r.Body == http.NoBody {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions:
			req.Next()
		default:
			v.refuse(req, []Failure{{Pointer: "", Message: "a JSON body is required"}})
		}
		return
	}
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
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		v.refuse(req, []Failure{{Pointer: "", Message: "the body is not JSON"}})
		return
	}
	if err := v.schema.Validate(doc); err != nil {
		v.refuse(req, failures(err))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.Header.Del("Content-Length")
	req.Next()
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
		SchemaBytes int `json:"schema_bytes"`
	}{len(v.raw)}
}
