package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestBodySchema through the real handler: a conforming body reaches the
// service unchanged; a body that does not conform, is not JSON or is
// missing is answered 400 with each failure's JSON pointer and never
// reaches the service; a bodiless GET passes; the body limit still holds.
func TestBodySchema(t *testing.T) {
	var calls atomic.Int64
	var got atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var b strings.Builder
		buf := make([]byte, 512)
		for {
			n, err := r.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got.Store(b.String())
	}))
	t.Cleanup(up.Close)
	schema := `{"type":"object","required":["name"],"properties":{"name":{"type":"string","minLength":1},
		"age":{"type":"integer","minimum":0},"tags":{"type":"array","items":{"type":"string"}}},"additionalProperties":false}`
	cfg := &config.Config{
		Services: []config.Service{{Name: "users", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []config.Route{{Name: "users", Paths: []string{"/users"}, Service: "users", MaxBodyBytes: 256,
			Schemas: &config.RouteValidate{Body: json.RawMessage(schema)}}},
	}
	_, gw := newGateway(t, cfg)

	if code, _, body := do(t, "POST", gw+"/users", strings.NewReader(`{"name":"ada","age":36,"tags":["x"]}`)); code != 200 {
		t.Fatalf("a conforming body: %d %s", code, body)
	}
	if s, _ := got.Load().(string); s != `{"name":"ada","age":36,"tags":["x"]}` || calls.Load() != 1 {
		t.Fatalf("the service got %q (%d calls)", s, calls.Load())
	}
	cases := []struct {
		name, body string
		pointers   []string
	}{
		{"wrong types and extra member", `{"name":"","age":-1,"tags":["x",2],"admin":true}`, []string{"", "/age", "/name", "/tags/1"}},
		{"missing member", `{"age":3}`, []string{""}},
		{"not JSON", `{"name":`, []string{""}},
		{"no body", ``, []string{""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, h, body := do(t, "POST", gw+"/users", strings.NewReader(c.body))
			if code != 400 || h.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %v %s", code, h, body)
			}
			var p struct {
				Type   string `json:"type"`
				Errors []struct {
					Pointer string `json:"field"`
					Message string `json:"message"`
				} `json:"errors"`
			}
			if err := json.Unmarshal([]byte(body), &p); err != nil || !strings.HasSuffix(p.Type, "invalid-request") {
				t.Fatalf("problem %s: %v", body, err)
			}
			var pointers []string
			for _, e := range p.Errors {
				if e.Message == "" {
					t.Fatalf("failure without a message: %s", body)
				}
				pointers = append(pointers, e.Pointer)
			}
			if strings.Join(pointers, " ") != strings.Join(c.pointers, " ") {
				t.Fatalf("pointers %q, want %q: %s", pointers, c.pointers, body)
			}
		})
	}
	if calls.Load() != 1 {
		t.Fatalf("refused requests reached the service: %d calls", calls.Load())
	}
	if code, _, body := do(t, "GET", gw+"/users", nil); code != 200 {
		t.Fatalf("a bodiless GET: %d %s", code, body)
	}
	if code, _, _ := do(t, "POST", gw+"/users", strings.NewReader(`{"name":"`+strings.Repeat("a", 300)+`"}`)); code != 413 {
		t.Fatalf("over the body limit: %d", code)
	}
}
