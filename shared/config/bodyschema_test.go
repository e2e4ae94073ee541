package config

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestBodySchemaValidate: a route's schema is compiled when it is written;
// one that is not JSON, not a schema, reaches outside itself or is too
// large is refused with the field path validate.body.
func TestBodySchemaValidate(t *testing.T) {
	tests := []struct {
		name, schema, msg string // msg "" = valid
	}{
		{"valid", `{"type":"object","properties":{"id":{"$ref":"#/$defs/id"}},"$defs":{"id":{"type":"integer"}}}`, ""},
		{"not JSON", `{"type":`, "not JSON"},
		{"not a schema", `{"type":"banana"}`, "not a valid JSON Schema"},
		{"remote ref", `{"$ref":"https://example.com/s.json"}`, "not loaded"},
		{"too large", `{"description":"` + strings.Repeat("x", MaxSchemaBytes) + `"}`, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Route{Name: "r", Paths: []string{"/"}, Service: "s", Schemas: &RouteValidate{Body: json.RawMessage(tc.schema)}}
			err := r.Validate()
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v", err)
			}
			for _, f := range FieldErrors(err) {
				if f.Field == "validate.body" && strings.Contains(f.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("error %v, want validate.body: ...%s...", err, tc.msg)
		})
	}
	r := Route{Name: "r", Paths: []string{"/"}, Service: "s", Schemas: &RouteValidate{}}
	if err := r.Validate(); err == nil || FieldErrors(err)[0].Field != "validate" {
		t.Fatalf("an empty validate: %v", err)
	}
}

// TestParamSchemaValidate: query and header schemas are compiled when the
// route is written, refused at validate.query / validate.headers; the
// declared types decide how each parameter's text will be read.
func TestParamSchemaValidate(t *testing.T) {
	tests := []struct {
		name, field, schema, msg string // msg "" = valid
	}{
		{"query", "query", `{"type":"object","properties":{"limit":{"type":"integer"},"tag":{"type":"array","items":{"$ref":"#/$defs/t"}}},"$defs":{"t":{"type":"string"}}}`, ""},
		{"headers", "headers", `{"type":"object","required":["x-tenant"],"properties":{"x-tenant":{"type":"string"}}}`, ""},
		{"not an object", "query", `{"type":"array"}`, `"type": "object"`},
		{"no type", "query", `{"properties":{"a":{"type":"string"}}}`, `"type": "object"`},
		{"object parameter", "query", `{"type":"object","properties":{"a":{"type":"object"}}}`, "objects are not read"},
		{"upper-case header", "headers", `{"type":"object","properties":{"X-Tenant":{"type":"string"}}}`, "lower case"},
		{"upper-case required header", "headers", `{"type":"object","required":["X-Tenant"]}`, "lower case"},
		{"broken", "headers", `{"type":"object","properties":{"a":{"type":"banana"}}}`, "not a valid JSON Schema"},
		{"remote ref", "query", `{"type":"object","properties":{"a":{"$ref":"https://example.com/a.json"}}}`, "not loaded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := &RouteValidate{}
			if tc.field == "query" {
				v.Query = json.RawMessage(tc.schema)
			} else {
				v.Headers = json.RawMessage(tc.schema)
			}
			r := Route{Name: "r", Paths: []string{"/"}, Service: "s", Schemas: v}
			err := r.Validate()
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			for _, f := range FieldErrors(err) {
				if f.Field == "validate."+tc.field && strings.Contains(f.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("error %v, want validate.%s: ...%s...", err, tc.field, tc.msg)
		})
	}
	p, err := CompileParamSchema(json.RawMessage(`{"type":"object","properties":{"n":{"type":["integer","null"]},"f":{"type":"number"},"b":{"type":"boolean"},
		"s":{"type":"string"},"any":{},"ids":{"type":"array","items":{"type":"integer"}},"l":{"type":"array"}}}`), false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]ParamKind{"n": {Scalar: "integer"}, "f": {Scalar: "number"}, "b": {Scalar: "boolean"}, "s": {Scalar: "string"},
		"any": {Scalar: "string"}, "ids": {Array: true, Scalar: "integer"}, "l": {Array: true, Scalar: "string"}}
	for k, w := range want {
		if p.Kinds[k] != w {
			t.Errorf("kind of %s = %+v, want %+v", k, p.Kinds[k], w)
		}
	}
}
