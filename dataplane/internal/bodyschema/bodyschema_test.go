package bodyschema

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/portico-gw/portico/shared/config"
)

const benchSchema = `{"type":"object","required":["name","email"],"additionalProperties":false,
 "properties":{"name":{"type":"string","minLength":1,"maxLength":100},"email":{"type":"string","pattern":"^[^@]+@[^@]+$"},
  "age":{"type":"integer","minimum":0},"tags":{"type":"array","maxItems":10,"items":{"type":"string"}},
  "address":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string","pattern":"^[0-9]{5}$"}}}}}`

// BenchmarkValidate: decoding and validating a typical 150-byte JSON body
// against a 10-rule schema, the work the stage adds per request.
func BenchmarkValidate(b *testing.B) {
	s, err := config.CompileBodySchema(json.RawMessage(benchSchema))
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"name":"Ada Lovelace","email":"ada@example.com","age":36,"tags":["math","poetry"],"address":{"city":"London","zip":"12345"}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Validate(doc); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPointer(t *testing.T) {
	if got := pointer([]string{"a/b", "m~n", "0"}); got != "/a~1b/m~0n/0" {
		t.Fatalf("pointer = %q", got)
	}
}

// BenchmarkValidateOperation: the parameters and body of a request checked
// against an OpenAPI operation (the petstore's updatePet: a path
// parameter, a header, a 4-member body with a $ref), the work the stage
// adds per request on such a route.
func BenchmarkValidateOperation(b *testing.B) {
	doc, err := os.ReadFile("../../../shared/config/testdata/openapi/petstore.yaml")
	if err != nil {
		b.Fatal(err)
	}
	st, err := Compile(&config.Route{Schemas: &config.RouteValidate{OpenAPI: string(doc), Operation: "updatePet"}})
	if err != nil {
		b.Fatal(err)
	}
	v := st.(*Route)
	r := httptest.NewRequest("PUT", "/v1/pets/42?verbose=true", nil)
	r.Header.Set("X-Tenant", "acme")
	body := []byte(`{"name":"rex","tag":"good","age":3,"owner":{"email":"ada@example.com"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if f := v.checkParams(r); len(f) > 0 {
			b.Fatal(f)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		if err := v.schema.Validate(doc); err != nil {
			b.Fatal(err)
		}
	}
}
