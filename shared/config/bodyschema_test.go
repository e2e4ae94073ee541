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
