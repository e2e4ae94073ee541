package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Validation by an OpenAPI operation (issue 16): a route may name an
// OpenAPI 3 document (inline, JSON or YAML) and one of its operations; the
// operation's parameters and JSON request body become the same schemas a
// route can state by hand (path, query and header objects, a body), so
// one stage checks both. The document is loaded and validated when the
// route is written and again, with CompileOpenAPIOperation, by the data
// plane for each snapshot that changes the route; nothing outside the
// document is ever loaded (external $refs are refused). OpenAPI 3.0
// schemas are compiled as JSON Schema draft 4 (their boolean
// exclusiveMinimum/Maximum) with "nullable" read as a null type; 3.1
// schemas as draft 2020-12. References into components resolve because
// each compiled schema carries the document's components beside it.

// MaxOpenAPIBytes bounds a route's OpenAPI document.
const MaxOpenAPIBytes = 1 << 20

// OpenAPIOperation is an operation compiled for request validation. A nil
// schema means nothing of that kind is declared.
type OpenAPIOperation struct {
	Method string // upper case
	Path   string // the operation's path template, /pets/{petId}
	// PathParams, Query and Headers are objects of the parameters of each
	// location (header names in lower case).
	PathParams, Query, Headers *ParamSchema
	Body                       *jsonschema.Schema
	BodyRequired               bool
	// Responses holds the schemas of the JSON answers, by the key the
	// document gives them: a status ("200"), a range ("2XX") or "default".
	Responses map[string]*jsonschema.Schema
}

// CompileOpenAPIOperation loads and validates an OpenAPI document and
// compiles the operation with the given operationId. Errors say which
// field is at fault: errors.Is(err, ErrOperation) for the operation, the
// document otherwise.
func CompileOpenAPIOperation(document, operationID string) (*OpenAPIOperation, error) {
	if len(document) > MaxOpenAPIBytes {
		return nil, fmt.Errorf("document larger than %d bytes", MaxOpenAPIBytes)
	}
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false // and ReadFromURIFunc stays nil, so the loader enforces it
	doc, err := loader.LoadFromData([]byte(document))
	if err != nil {
		return nil, fmt.Errorf("not an OpenAPI document: %w", err)
	}
	if doc.OpenAPI == "" || !strings.HasPrefix(doc.OpenAPI, "3.") {
		return nil, fmt.Errorf("not an OpenAPI 3 document (openapi %q)", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("invalid OpenAPI document: %w", err)
	}
	var (
		item   *openapi3.PathItem
		op     *openapi3.Operation
		method string
		path   string
	)
	if doc.Paths != nil {
		paths := doc.Paths.Map()
		keys := make([]string, 0, len(paths))
		for k := range paths {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for m, o := range paths[k].Operations() {
				if o != nil && o.OperationID == operationID {
					item, op, method, path = paths[k], o, strings.ToUpper(m), k
				}
			}
		}
	}
	if op == nil {
		return nil, fmt.Errorf("%w: no operation %q in the document", ErrOperation, operationID)
	}
	comps, draft, err := components(doc)
	if err != nil {
		return nil, err
	}
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		if strings.Contains(seg, "{") && !(strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") && strings.Count(seg, "{") == 1) {
			return nil, fmt.Errorf("path %s: a parameter must be a whole segment to be checked", path)
		}
	}
	out := &OpenAPIOperation{Method: method, Path: path}

	// Parameters: the path item's, overridden by the operation's of the
	// same name and location.
	type key struct{ in, name string }
	params := map[key]*openapi3.Parameter{}
	for _, list := range []openapi3.Parameters{item.Parameters, op.Parameters} {
		for _, pr := range list {
			if pr == nil || pr.Value == nil {
				continue
			}
			params[key{pr.Value.In, pr.Value.Name}] = pr.Value
		}
	}
	byIn := map[string][]*openapi3.Parameter{}
	for k, p := range params {
		byIn[k.in] = append(byIn[k.in], p)
	}
	for in, list := range byIn {
		slices.SortFunc(list, func(a, b *openapi3.Parameter) int { return strings.Compare(a.Name, b.Name) })
		var target **ParamSchema
		switch in {
		case openapi3.ParameterInPath:
			target = &out.PathParams
		case openapi3.ParameterInQuery:
			target = &out.Query
		case openapi3.ParameterInHeader:
			target = &out.Headers
		default: // cookie: not checked
			continue
		}
		ps, err := paramObject(in, list, comps, draft)
		if err != nil {
			return nil, err
		}
		*target = ps
	}
	if rb := op.RequestBody; rb != nil && rb.Value != nil {
		for _, ct := range sortedKeys(rb.Value.Content) {
			mt := rb.Value.Content[ct]
			if !isJSON(ct) || mt == nil || mt.Schema == nil {
				continue
			}
			body, err := toTree(mt.Schema, draft == draft4)
			if err != nil {
				return nil, err
			}
			s, err := compileSchemaDoc(wrap(map[string]any{"allOf": []any{body}}, comps, draft), "urn:portico:openapi-body.json")
			if err != nil {
				return nil, fmt.Errorf("request body of %s: %w", operationID, err)
			}
			out.Body, out.BodyRequired = s, rb.Value.Required
			break
		}
	}
	if op.Responses != nil {
		for status, rr := range op.Responses.Map() {
			if rr == nil || rr.Value == nil {
				continue
			}
			for _, ct := range sortedKeys(rr.Value.Content) {
				mt := rr.Value.Content[ct]
				if !isJSON(ct) || mt == nil || mt.Schema == nil {
					continue
				}
				t, err := toTree(mt.Schema, draft == draft4)
				if err != nil {
					return nil, err
				}
				s, err := compileSchemaDoc(wrap(map[string]any{"allOf": []any{t}}, comps, draft), "urn:portico:openapi-response-"+status+".json")
				if err != nil {
					return nil, fmt.Errorf("response %s of %s: %w", status, operationID, err)
				}
				if out.Responses == nil {
					out.Responses = map[string]*jsonschema.Schema{}
				}
				out.Responses[strings.ToUpper(status)] = s
				break
			}
		}
	}
	return out, nil
}

// ResponseSchema picks the schema an answer of the given status is checked
// against: the status's own, else its range's (2XX), else "default"; nil
// when the operation declares none.
func (o *OpenAPIOperation) ResponseSchema(status int) *jsonschema.Schema {
	code := fmt.Sprint(status)
	for _, k := range []string{code, code[:1] + "XX", "DEFAULT"} {
		if s := o.Responses[k]; s != nil {
			return s
		}
	}
	return nil
}

// ErrOperation marks an operationId the document does not have.
var ErrOperation = errors.New("unknown operation")

const (
	draft4    = "http://json-schema.org/draft-04/schema#"
	draft2020 = "https://json-schema.org/draft/2020-12/schema"
)

// headersIgnored are header parameters OpenAPI says are ignored.
var headersIgnored = map[string]bool{"accept": true, "content-type": true, "authorization": true}

func paramObject(in string, list []*openapi3.Parameter, comps any, draft string) (*ParamSchema, error) {
	props := map[string]any{}
	var required []any
	comma := map[string]bool{}
	for _, p := range list {
		name := p.Name
		if in == openapi3.ParameterInHeader {
			name = strings.ToLower(name)
			if headersIgnored[name] {
				continue
			}
		}
		if p.Schema == nil {
			return nil, fmt.Errorf("parameter %s %q: only parameters with a schema are supported (not content)", in, p.Name)
		}
		style := p.Style
		switch {
		case style == "":
		case in == openapi3.ParameterInQuery && style == openapi3.SerializationForm:
		case in != openapi3.ParameterInQuery && style == openapi3.SerializationSimple:
		default:
			return nil, fmt.Errorf("parameter %s %q: style %q is not supported (form for query, simple for path and header)", in, p.Name, style)
		}
		if in == openapi3.ParameterInQuery && p.Explode != nil && !*p.Explode {
			comma[name] = true
		}
		t, err := toTree(p.Schema, draft == draft4)
		if err != nil {
			return nil, err
		}
		props[name] = t
		if p.Required || in == openapi3.ParameterInPath {
			required = append(required, name)
		}
	}
	if len(props) == 0 {
		return nil, nil
	}
	obj := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		obj["required"] = required
	}
	s, err := compileSchemaDoc(wrap(obj, comps, draft), "urn:portico:openapi-"+in+".json")
	if err != nil {
		return nil, fmt.Errorf("%s parameters: %w", in, err)
	}
	ps, err := paramSchemaOf(s, in == openapi3.ParameterInHeader)
	if err != nil {
		return nil, fmt.Errorf("%s parameters: %w", in, err)
	}
	for name := range comma {
		if k, ok := ps.Kinds[name]; ok && k.Array {
			k.Comma = true
			ps.Kinds[name] = k
		}
	}
	return ps, nil
}

// wrap adds the dialect and the document's components to a schema, so
// "#/components/schemas/Pet" resolves inside it.
func wrap(obj map[string]any, comps any, draft string) map[string]any {
	obj["$schema"] = draft
	if comps != nil {
		obj["components"] = comps
	}
	return obj
}

// components returns the document's components as a JSON tree (3.0:
// nullable rewritten) and the schema dialect of its version.
func components(doc *openapi3.T) (any, string, error) {
	draft := draft4
	if doc.IsOpenAPI31OrLater() {
		draft = draft2020
	}
	if doc.Components == nil || len(doc.Components.Schemas) == 0 {
		return nil, draft, nil
	}
	schemas, err := toTree(doc.Components.Schemas, draft == draft4)
	if err != nil {
		return nil, "", err
	}
	return map[string]any{"schemas": schemas}, draft, nil
}

// toTree turns a part of the document into a JSON tree with json.Number
// numbers, as the schema compiler takes it.
func toTree(v any, nullable bool) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var t any
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	if nullable {
		rewriteNullable(t)
	}
	return t, nil
}

// rewriteNullable reads OpenAPI 3.0's "nullable": true as JSON Schema's
// null type, everywhere in a tree.
func rewriteNullable(t any) {
	switch v := t.(type) {
	case map[string]any:
		if n, ok := v["nullable"].(bool); ok && n {
			if ty, ok := v["type"].(string); ok {
				v["type"] = []any{ty, "null"}
			}
		}
		for _, c := range v {
			rewriteNullable(c)
		}
	case []any:
		for _, c := range v {
			rewriteNullable(c)
		}
	}
}

func isJSON(contentType string) bool {
	ct := strings.ToLower(strings.TrimSpace(strings.Split(contentType, ";")[0]))
	return ct == "application/json" || strings.HasSuffix(ct, "+json")
}

func sortedKeys(c openapi3.Content) []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validateOpenAPI checks a route's openapi and operation fields.
func (v *RouteValidate) validateOpenAPI(l *errorList, p string, methods []string) {
	if v.Operation == "" {
		l.add(join(p, "operation"), "needs the operationId of an operation in the document")
		return
	}
	if len(v.Body) > 0 || len(v.Query) > 0 || len(v.Headers) > 0 || len(v.Response) > 0 {
		l.add(p, "either an OpenAPI operation or body/query/headers/response schemas, not both")
		return
	}
	op, err := CompileOpenAPIOperation(v.OpenAPI, v.Operation)
	switch {
	case errors.Is(err, ErrOperation):
		l.add(join(p, "operation"), "%v", err)
	case err != nil:
		l.add(join(p, "openapi"), "%v", err)
	case len(methods) > 0 && !slices.ContainsFunc(methods, func(m string) bool { return strings.EqualFold(m, op.Method) }):
		l.add(join(p, "operation"), "operation %q is %s, which the route's methods do not include", v.Operation, op.Method)
	}
}
