package api

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestRouteValidateAPI: request validation written through the admin API —
// query/header schemas and an OpenAPI operation are accepted and read back
// unchanged; broken ones are refused 422 with their field paths (an unknown
// operationId at validate.operation, an external $ref at validate.openapi,
// nothing fetched).
func TestRouteValidateAPI(t *testing.T) {
	doc, err := os.ReadFile("../../../shared/config/testdata/openapi/petstore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, true)
	s.mustStatus(t, 201, "PUT", "/v1/services/pets", `{"targets":[{"url":"http://127.0.0.1:9001"}]}`)
	s.mustStatus(t, 201, "PUT", "/v1/routes/list", `{"paths":["/pets"],"methods":["GET"],"service":"pets",
		"validate":{"query":{"type":"object","properties":{"limit":{"type":"integer"}}},"headers":{"type":"object","required":["x-tenant"]}}}`)
	route := func(op, document string) string {
		b, _ := json.Marshal(map[string]any{"paths": []string{"/v1/pets"}, "methods": []string{"POST"}, "service": "pets",
			"validate": map[string]string{"openapi": document, "operation": op}})
		return string(b)
	}
	_, body := s.mustStatus(t, 201, "PUT", "/v1/routes/create", route("createPet", string(doc)))
	var r struct {
		Validate struct{ OpenAPI, Operation string } `json:"validate"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Validate.OpenAPI != string(doc) || r.Validate.Operation != "createPet" {
		t.Fatalf("read back %s: %v", body, err)
	}
	refused := []struct{ body, field string }{
		{route("deletePet", string(doc)), "validate.operation"},
		{route("showPetById", string(doc)), "validate.operation"}, // a GET operation on a POST route
		{route("createPet", strings.Replace(string(doc), "'#/components/schemas/Owner'", "'http://169.254.169.254/x.json'", 1)), "validate.openapi"},
		{route("createPet", "openapi: 3.0.3\ninfo: {title: x}\npaths: {}\n"), "validate.openapi"},
		{`{"paths":["/x"],"service":"pets","validate":{"query":{"type":"object","properties":{"o":{"type":"object"}}}}}`, "validate.query"},
		{`{"paths":["/x"],"service":"pets","validate":{"headers":{"type":"object","properties":{"X-Tenant":{}}}}}`, "validate.headers"},
	}
	for _, c := range refused {
		_, prob := s.mustStatus(t, 422, "PUT", "/v1/routes/bad", c.body)
		if !strings.Contains(string(prob), `"field":"`+c.field+`"`) {
			t.Fatalf("problem without field %s: %s", c.field, prob)
		}
	}
}
