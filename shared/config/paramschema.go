package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Query and header parameters (issue 16) are validated as one JSON object
// each: {"limit": 10, "tags": ["a","b"]} built from the request. A
// parameter arrives as text, so it is first coerced to the type its
// property declares, the way OpenAPI reads parameters: integer and number
// from their decimal form, boolean from true/false, array from repeated
// query parameters (form, explode) or a header's comma-separated list
// (simple), each item coerced to the items' type; anything that does not
// read as the declared type stays a string and the schema reports it.

// ParamKind is how a parameter's text is read: the scalar type its
// property declares, and whether it is a list of them.
type ParamKind struct {
	Array bool `json:"array,omitempty"`
	// Scalar is "integer", "number", "boolean" or "string" (also for a
	// property that declares no type or several others).
	Scalar string `json:"type"`
	// Comma: a query array sent as one comma-separated value (an OpenAPI
	// parameter with explode false) rather than repeated.
	Comma bool `json:"comma,omitempty"`
}

// ParamSchema is a compiled query or header schema.
type ParamSchema struct {
	Schema *jsonschema.Schema
	// Kinds holds the declared properties, by name (header names in lower
	// case); a parameter not declared is read as a string.
	Kinds map[string]ParamKind
}

// CompileParamSchema compiles a route's query or header schema (header
// true: property names must be written in lower case, since header names
// are matched without regard to case and the request's are lowered). It
// is the one function the control plane validates with and the data
// plane compiles with.
func CompileParamSchema(raw json.RawMessage, header bool) (*ParamSchema, error) {
	s, err := CompileBodySchema(raw)
	if err != nil {
		return nil, err
	}
	return paramSchemaOf(s, header)
}

func paramSchemaOf(s *jsonschema.Schema, header bool) (*ParamSchema, error) {
	root := deref(s)
	if root.Types == nil || strings.Join(root.Types.ToStrings(), ",") != "object" {
		return nil, fmt.Errorf(`the schema must declare "type": "object" (the parameters as one object)`)
	}
	p := &ParamSchema{Schema: s, Kinds: map[string]ParamKind{}}
	names := make([]string, 0, len(root.Properties))
	for name := range root.Properties {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if header && name != strings.ToLower(name) {
			return nil, fmt.Errorf("header %q: write header names in lower case", name)
		}
		prop := deref(root.Properties[name])
		k := ParamKind{Scalar: scalarOf(prop)}
		if hasType(prop, "array") {
			k.Array = true
			k.Scalar = "string"
			if it := itemsOf(prop); it != nil {
				k.Scalar = scalarOf(deref(it))
			}
		} else if hasType(prop, "object") {
			return nil, fmt.Errorf("parameter %q: objects are not read from parameters", name)
		}
		p.Kinds[name] = k
	}
	if header {
		for _, name := range requiredOf(root) {
			if name != strings.ToLower(name) {
				return nil, fmt.Errorf("required header %q: write header names in lower case", name)
			}
		}
	}
	return p, nil
}

// deref follows a schema's $ref while it declares nothing itself.
func deref(s *jsonschema.Schema) *jsonschema.Schema {
	for i := 0; s != nil && s.Types == nil && s.Ref != nil && i < 32; i++ {
		s = s.Ref
	}
	return s
}

func hasType(s *jsonschema.Schema, t string) bool {
	if s == nil || s.Types == nil {
		return false
	}
	for _, x := range s.Types.ToStrings() {
		if x == t {
			return true
		}
	}
	return false
}

// scalarOf picks how to read a value: the first of integer, number,
// boolean the schema allows, else a string.
func scalarOf(s *jsonschema.Schema) string {
	for _, t := range []string{"integer", "number", "boolean"} {
		if hasType(s, t) {
			return t
		}
	}
	return "string"
}

func itemsOf(s *jsonschema.Schema) *jsonschema.Schema {
	if s.Items2020 != nil {
		return s.Items2020
	}
	if it, ok := s.Items.(*jsonschema.Schema); ok {
		return it
	}
	return nil
}

func requiredOf(s *jsonschema.Schema) []string { return s.Required }
