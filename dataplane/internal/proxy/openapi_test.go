package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestOpenAPIOperation through the real handler and a real upstream: routes
// validated by the operations of a petstore document (OpenAPI 3.0, YAML,
// shared/config/testdata) check path, query and header parameters and the
// JSON body; each failure is listed with its JSON pointer, and a refused
// request is never sent to the service.
func TestOpenAPIOperation(t *testing.T) {
	doc, err := os.ReadFile("../../../shared/config/testdata/openapi/petstore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	var got atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		got.Store(r.Method + " " + r.URL.RequestURI() + " " + string(b))
	}))
	t.Cleanup(up.Close)
	route := func(name, path, method, op string) config.Route {
		return config.Route{Name: name, Paths: []string{path}, Methods: []string{method}, Service: "pets",
			Schemas: &config.RouteValidate{OpenAPI: string(doc), Operation: op}}
	}
	cfg := &config.Config{
		Services: []config.Service{{Name: "pets", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{
			new(route("list", "/v1/pets", "GET", "listPets")),
			new(route("create", "/v1/pets", "POST", "createPet")),
			new(route("show", "/v1/pets/{id}", "GET", "showPetById")),
			new(route("update", "/v1/pets/{id}", "PUT", "updatePet")),
		},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, gw := newGateway(t, cfg)
	send := func(method, target, body string, h map[string]string) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, gw+target, rd)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tenant := map[string]string{"X-Tenant": "acme", "Content-Type": "application/json"}
	ok := []struct{ method, target, body, want string }{
		{"GET", "/v1/pets?limit=10&tags=ab,cd&sort=age", "", "GET /v1/pets?limit=10&tags=ab,cd&sort=age "},
		{"POST", "/v1/pets", `{"name":"rex","tag":null,"age":3,"owner":{"email":"a@example.com"}}`, `POST /v1/pets {"name":"rex","tag":null,"age":3,"owner":{"email":"a@example.com"}}`},
		{"GET", "/v1/pets/42", "", "GET /v1/pets/42 "},
		{"PUT", "/v1/pets/42", "", "PUT /v1/pets/42 "}, // the body of updatePet is optional
	}
	for _, c := range ok {
		if code, body := send(c.method, c.target, c.body, tenant); code != 200 {
			t.Fatalf("%s %s: %d %s", c.method, c.target, code, body)
		}
		if s, _ := got.Load().(string); s != c.want {
			t.Fatalf("the service got %q, want %q", s, c.want)
		}
	}
	before := calls.Load()
	cases := []struct {
		name, method, target, body string
		headers                    map[string]string
		pointers                   []string
	}{
		{"query types and bounds", "GET", "/v1/pets?limit=0&tags=a,bc,de,fg&sort=size", "", tenant, []string{"/query/limit", "/query/sort", "/query/tags", "/query/tags/0"}},
		{"required query and header", "GET", "/v1/pets", "", map[string]string{"X-Trace": "maybe"}, []string{"/query/limit", "/headers/x-tenant", "/headers/x-trace"}},
		{"header pattern", "GET", "/v1/pets?limit=5", "", map[string]string{"X-Tenant": "ACME"}, []string{"/headers/x-tenant"}},
		{"path parameter", "GET", "/v1/pets/rex", "", tenant, []string{"/path/petId"}},
		{"path parameter range", "GET", "/v1/pets/0", "", tenant, []string{"/path/petId"}},
		{"body members", "POST", "/v1/pets", `{"name":"","age":40,"owner":{"email":"nope"},"color":"red"}`, tenant, []string{"", "/age", "/name", "/owner/email"}},
		{"body required", "POST", "/v1/pets", "", tenant, []string{""}},
		{"body missing member", "POST", "/v1/pets", `{"tag":"x"}`, tenant, []string{"/name"}},
		{"body not JSON", "POST", "/v1/pets", `{"name":`, tenant, []string{""}},
		{"path and header before body", "PUT", "/v1/pets/x", `{"name":""}`, map[string]string{}, []string{"/path/petId", "/headers/x-tenant"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := send(c.method, c.target, c.body, c.headers)
			if code != 400 {
				t.Fatalf("%d %s", code, body)
			}
			checkInvalidRequest(t, body, c.pointers)
		})
	}
	if n := calls.Load() - before; n != 0 {
		t.Fatalf("refused requests reached the service: %d calls", n)
	}
}
