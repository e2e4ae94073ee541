package config

import (
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func petstore(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/openapi/petstore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOpenAPIValidate: a route's OpenAPI document is loaded and validated
// when the route is written; an unknown operation, a broken document, an
// external reference (nothing is fetched) or a mix with hand-written
// schemas is refused with its field path.
func TestOpenAPIValidate(t *testing.T) {
	doc := petstore(t)
	const jsonDoc = `{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{"/a":{"post":{"operationId":"a",
		"requestBody":{"content":{"application/json":{"schema":{"type":["object","null"]}}}},"responses":{"200":{"description":"ok"}}}}}}`
	tests := []struct {
		name    string
		v       RouteValidate
		methods []string
		field   string // "" = valid
		msg     string
	}{
		{"yaml 3.0", RouteValidate{OpenAPI: doc, Operation: "createPet"}, []string{"POST"}, "", ""},
		{"json 3.1", RouteValidate{OpenAPI: jsonDoc, Operation: "a"}, nil, "", ""},
		{"unknown operation", RouteValidate{OpenAPI: doc, Operation: "deletePet"}, nil, "validate.operation", `no operation "deletePet"`},
		{"operation without document", RouteValidate{Operation: "x"}, nil, "validate.openapi", "needs the OpenAPI document"},
		{"document without operation", RouteValidate{OpenAPI: doc}, nil, "validate.operation", "needs the operationId"},
		{"method the route lacks", RouteValidate{OpenAPI: doc, Operation: "createPet"}, []string{"GET"}, "validate.operation", "is POST"},
		{"not a document", RouteValidate{OpenAPI: "{", Operation: "a"}, nil, "validate.openapi", "not an OpenAPI document"},
		{"swagger 2", RouteValidate{OpenAPI: `{"swagger":"2.0","info":{"title":"t","version":"1"},"paths":{}}`, Operation: "a"}, nil, "validate.openapi", "OpenAPI 3"},
		{"invalid document", RouteValidate{OpenAPI: strings.Replace(doc, "type: integer, minimum: 1}", "type: banana}", 1), Operation: "showPetById"}, nil, "validate.openapi", "invalid OpenAPI document"},
		{"external ref", RouteValidate{OpenAPI: strings.Replace(doc, "'#/components/schemas/Owner'", "'https://example.com/owner.json'", 1), Operation: "createPet"}, nil, "validate.openapi", "disallowed external reference"},
		{"external file ref", RouteValidate{OpenAPI: strings.Replace(doc, "'#/components/schemas/Owner'", "'/etc/passwd'", 1), Operation: "createPet"}, nil, "validate.openapi", "external"},
		{"mixed with body", RouteValidate{OpenAPI: doc, Operation: "createPet", Body: []byte(`{}`)}, nil, "validate", "not both"},
		{"unsupported style", RouteValidate{OpenAPI: strings.Replace(doc, "explode: false", "style: deepObject", 1), Operation: "listPets"}, nil, "validate.openapi", "not supported"},
		{"report responses", RouteValidate{OpenAPI: doc, Operation: "showPetById", ReportResponses: true}, nil, "", ""},
		{"report responses without openapi", RouteValidate{Query: []byte(`{"type":"object"}`), ReportResponses: true}, nil, "validate.report_responses", "needs openapi"},
		{"response schema", RouteValidate{Response: []byte(`{"type":"object"}`)}, nil, "", ""},
		{"broken response schema", RouteValidate{Response: []byte(`{"type":7}`)}, nil, "validate.response", "not a valid JSON Schema"},
		{"response schema with openapi", RouteValidate{OpenAPI: doc, Operation: "createPet", Response: []byte(`{}`)}, nil, "validate", "not both"},
		{"too large", RouteValidate{OpenAPI: doc + "#" + strings.Repeat("x", MaxOpenAPIBytes), Operation: "createPet"}, nil, "validate.openapi", "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.v
			r := Route{Name: "r", Paths: []string{"/"}, Methods: tc.methods, Service: "s", Schemas: &v}
			err := r.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			for _, f := range FieldErrors(err) {
				if f.Field == tc.field && strings.Contains(f.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("error %v, want %s: ...%s...", err, tc.field, tc.msg)
		})
	}
}

// TestOpenAPIOperation: what an operation compiles to — parameters by
// location (path-level ones included, header names lowered, explode false
// read as a comma list), the body and whether it is required.
func TestOpenAPIOperation(t *testing.T) {
	doc := petstore(t)
	op, err := CompileOpenAPIOperation(doc, "listPets")
	if err != nil {
		t.Fatal(err)
	}
	if op.Method != "GET" || op.Path != "/pets" || op.PathParams != nil || op.Body != nil {
		t.Fatalf("listPets: %+v", op)
	}
	if k := op.Query.Kinds["tags"]; k != (ParamKind{Array: true, Scalar: "string", Comma: true}) {
		t.Fatalf("tags: %+v", k)
	}
	if k := op.Query.Kinds["limit"]; k != (ParamKind{Scalar: "integer"}) {
		t.Fatalf("limit: %+v", k)
	}
	if _, ok := op.Headers.Kinds["x-tenant"]; !ok || op.Headers.Kinds["x-trace"].Scalar != "boolean" {
		t.Fatalf("headers: %+v", op.Headers.Kinds)
	}
	op, err = CompileOpenAPIOperation(doc, "showPetById")
	if err != nil {
		t.Fatal(err)
	}
	if op.ResponseSchema(200) == nil || op.ResponseSchema(200) == op.Responses["DEFAULT"] || op.ResponseSchema(404) != op.Responses["DEFAULT"] {
		t.Fatalf("showPetById responses: %v", op.Responses)
	}
	op, err = CompileOpenAPIOperation(doc, "updatePet")
	if err != nil {
		t.Fatal(err)
	}
	if op.Method != "PUT" || op.PathParams.Kinds["petId"].Scalar != "integer" || op.Body == nil || op.BodyRequired {
		t.Fatalf("updatePet: %+v", op)
	}
	op, err = CompileOpenAPIOperation(doc, "createPet")
	if err != nil {
		t.Fatal(err)
	}
	if !op.BodyRequired {
		t.Fatal("createPet's body is required")
	}
	// nullable (3.0) is a null type; exclusiveMaximum (3.0) a boolean.
	for body, ok := range map[string]bool{`{"name":"rex","tag":null}`: true, `{"name":"rex","age":40}`: false, `{"name":"rex","age":39}`: true} {
		doc, _ := unmarshalForTest(body)
		if err := op.Body.Validate(doc); (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%v", body, err, ok)
		}
	}
}

func unmarshalForTest(s string) (any, error) {
	return jsonschema.UnmarshalJSON(strings.NewReader(s))
}
