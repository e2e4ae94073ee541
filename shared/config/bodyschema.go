package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Validation at the edge (issue 16): a route may carry a JSON Schema for
// its request body. The schema is compiled when the route is written (a
// broken schema is refused with its field path) and again by the data
// plane, with this one function; requests whose JSON body does not conform
// are answered 400 with every failure and its JSON pointer, and never
// reach the service.

// MaxSchemaBytes bounds a route's schema.
const MaxSchemaBytes = 64 << 10

// RouteValidate holds a route's request schemas.
type RouteValidate struct {
	// Body is a JSON Schema (draft 2020-12 unless "$schema" says
	// otherwise) the request body must conform to. References resolve
	// within the schema only.
	Body json.RawMessage `json:"body,omitempty"`
	// Query is a JSON Schema for the query parameters as one object,
	// each coerced to its property's declared type (paramschema.go).
	Query json.RawMessage `json:"query,omitempty"`
	// Headers is the same for request headers; property names in lower
	// case, and only the headers it declares are validated.
	Headers json.RawMessage `json:"headers,omitempty"`
	// OpenAPI is an OpenAPI 3 document (JSON or YAML text), Operation the
	// operationId whose parameters and JSON request body requests are
	// checked against (openapi.go); instead of Body, Query and Headers.
	OpenAPI   string `json:"openapi,omitempty"`
	Operation string `json:"operation,omitempty"`
	// Response is a JSON Schema the service's 2xx JSON answers are checked
	// against, after they were sent: report only (a metric and a log
	// line), an answer is never held back or changed.
	Response json.RawMessage `json:"response,omitempty"`
	// ReportResponses checks the answers against the operation's response
	// schemas the same way (with OpenAPI and Operation).
	ReportResponses bool `json:"report_responses,omitempty"`
}

func (v *RouteValidate) validate(l *errorList, p string, methods []string) {
	if v.OpenAPI != "" {
		v.validateOpenAPI(l, p, methods)
		return
	}
	if v.Operation != "" {
		l.add(join(p, "openapi"), "needs the OpenAPI document the operation is in")
		return
	}
	if v.ReportResponses {
		l.add(join(p, "report_responses"), "needs openapi and operation (the response schemas); use response for a schema of your own")
	}
	if len(v.Body) == 0 && len(v.Query) == 0 && len(v.Headers) == 0 && len(v.Response) == 0 {
		l.add(p, "needs body, query, headers, response (JSON Schemas) or openapi and operation")
		return
	}
	if len(v.Response) > 0 {
		if _, err := CompileBodySchema(v.Response); err != nil {
			l.add(join(p, "response"), "%v", err)
		}
	}
	if len(v.Body) > 0 {
		if _, err := CompileBodySchema(v.Body); err != nil {
			l.add(join(p, "body"), "%v", err)
		}
	}
	if len(v.Query) > 0 {
		if _, err := CompileParamSchema(v.Query, false); err != nil {
			l.add(join(p, "query"), "%v", err)
		}
	}
	if len(v.Headers) > 0 {
		if _, err := CompileParamSchema(v.Headers, true); err != nil {
			l.add(join(p, "headers"), "%v", err)
		}
	}
}

// noLoader refuses every reference outside the schema: a data plane never
// fetches anything at request or compile time.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s: references outside the schema are not loaded", url)
}

// CompileBodySchema compiles a route's body schema.
func CompileBodySchema(raw json.RawMessage) (*jsonschema.Schema, error) {
	if len(raw) > MaxSchemaBytes {
		return nil, fmt.Errorf("schema larger than %d bytes", MaxSchemaBytes)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	return compileSchemaDoc(doc, "urn:portico:route-body.json")
}

// compileSchemaDoc compiles a decoded schema (numbers as json.Number)
// with nothing loaded from outside it.
func compileSchemaDoc(doc any, url string) (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("not a JSON Schema: %w", err)
	}
	s, err := c.Compile(url)
	if err != nil {
		var se *jsonschema.SchemaValidationError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("not a valid JSON Schema: %v", se.Err)
		}
		return nil, fmt.Errorf("not a usable JSON Schema: %w", err)
	}
	return s, nil
}
