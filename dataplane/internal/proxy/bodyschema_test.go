package proxy

import (
	"encoding/json"
	"io"
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
		Routes: []*config.Route{{Name: "users", Paths: []string{"/users"}, Service: "users", MaxBodyBytes: 256,
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
		{"missing member", `{"age":3}`, []string{"/name"}},
		{"not JSON", `{"name":`, []string{""}},
		{"no body", ``, []string{""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, h, body := do(t, "POST", gw+"/users", strings.NewReader(c.body))
			if code != 400 || h.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %v %s", code, h, body)
			}
			checkInvalidRequest(t, body, c.pointers)
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

// TestParamSchema through the real handler: query parameters and headers
// are coerced to their declared types and validated; each failure is
// listed at /query/<name> or /headers/<name>, and a refused request never
// reaches the service (nor is its body read).
func TestParamSchema(t *testing.T) {
	var calls atomic.Int64
	var seen atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		seen.Store(r.URL.RawQuery + " " + r.Header.Get("X-Tenant"))
	}))
	t.Cleanup(up.Close)
	query := `{"type":"object","additionalProperties":false,"required":["limit"],"properties":{
		"limit":{"type":"integer","minimum":1,"maximum":100},"ratio":{"type":"number"},"draft":{"type":"boolean"},
		"tag":{"type":"array","maxItems":3,"items":{"type":"string","minLength":2}},"id":{"type":"array","items":{"type":"integer"}},"q":{"type":"string"}}}`
	headers := `{"type":"object","required":["x-tenant"],"properties":{"x-tenant":{"type":"string","pattern":"^[a-z]+$"},
		"x-page":{"type":"integer"},"x-flags":{"type":"array","items":{"type":"boolean"}}}}`
	cfg := &config.Config{
		Services: []config.Service{{Name: "items", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{{Name: "items", Paths: []string{"/items"}, Service: "items",
			Schemas: &config.RouteValidate{Query: json.RawMessage(query), Headers: json.RawMessage(headers)}}},
	}
	_, gw := newGateway(t, cfg)
	send := func(query string, h map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", gw+"/items?"+query, nil)
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
	good := map[string]string{"X-Tenant": "acme", "X-Page": "2", "X-Flags": "true, false"}
	if code, body := send("limit=10&ratio=0.5&draft=true&tag=ab&tag=cd&id=1&id=2&q=x", good); code != 200 {
		t.Fatalf("conforming parameters: %d %s", code, body)
	}
	if s, _ := seen.Load().(string); s != "limit=10&ratio=0.5&draft=true&tag=ab&tag=cd&id=1&id=2&q=x acme" {
		t.Fatalf("the service saw %q", s)
	}
	cases := []struct {
		name, query string
		headers     map[string]string
		pointers    []string
	}{
		{"integer not a number", "limit=ten", good, []string{"/query/limit"}},
		{"integer out of range", "limit=500", good, []string{"/query/limit"}},
		{"integer with a fraction", "limit=1.5", good, []string{"/query/limit"}},
		{"missing required", "q=x", good, []string{"/query/limit"}},
		{"boolean and number", "limit=1&draft=yes&ratio=x", good, []string{"/query/draft", "/query/ratio"}},
		{"array items", "limit=1&tag=a&tag=bb&id=1&id=z", good, []string{"/query/id/1", "/query/tag/0"}},
		{"unknown parameter", "limit=1&debug=1", good, []string{"/query"}},
		{"malformed query", "limit=1&x=%zz", good, []string{"/query"}},
		{"missing header", "limit=1", map[string]string{}, []string{"/headers/x-tenant"}},
		{"bad headers", "limit=1", map[string]string{"X-Tenant": "ACME", "X-Page": "two", "X-Flags": "true, maybe"},
			[]string{"/headers/x-flags/1", "/headers/x-page", "/headers/x-tenant"}},
		{"query and headers", "limit=0", map[string]string{}, []string{"/query/limit", "/headers/x-tenant"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := send(c.query, c.headers)
			if code != 400 {
				t.Fatalf("%d %s", code, body)
			}
			checkInvalidRequest(t, body, c.pointers)
		})
	}
	if calls.Load() != 1 {
		t.Fatalf("refused requests reached the service: %d calls", calls.Load())
	}
}

// checkInvalidRequest asserts that body is an invalid-request problem whose
// failures, each with a message, name exactly want's pointers in order.
func checkInvalidRequest(t *testing.T, body string, want []string) {
	t.Helper()
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
	if strings.Join(pointers, " ") != strings.Join(want, " ") {
		t.Fatalf("pointers %q, want %q: %s", pointers, want, body)
	}
}
