package api

import (
	"strings"
	"testing"
)

// TestExtAuthzAPI: a route's ext_authz block is checked by the shared
// validation (422 with field paths, nothing stored) and read back as
// written.
func TestExtAuthzAPI(t *testing.T) {
	s := newTestServer(t, false)
	s.mustStatus(t, 201, "PUT", "/v1/services/orders", `{"targets":[{"url":"http://127.0.0.1:9"}]}`)
	_, body := s.mustStatus(t, 422, "PUT", "/v1/routes/orders", `{"paths":["/orders/*"],"service":"orders",
		"ext_authz":{"grpc":{"address":"opa"},"failure_mode":"open","upstream_headers":["X-Consumer-Name"]}}`)
	for _, field := range []string{"ext_authz.grpc.address", "ext_authz.failure_mode", "ext_authz.upstream_headers[0]"} {
		if !strings.Contains(string(body), field) {
			t.Fatalf("%s missing from %s", field, body)
		}
	}
	if !strings.Contains(string(body), "application/problem+json") && !strings.Contains(string(body), `"status":422`) {
		t.Fatalf("not a problem: %s", body)
	}
	s.mustStatus(t, 404, "GET", "/v1/routes/orders", "")
	s.mustStatus(t, 201, "PUT", "/v1/routes/orders", `{"paths":["/orders/*"],"service":"orders",
		"ext_authz":{"http":{"url":"http://127.0.0.1:8181/health"},"timeout":"300ms","upstream_headers":["X-User-Id"],"cache":{"ttl":"5s"}}}`)
	_, body = s.mustStatus(t, 200, "GET", "/v1/routes/orders", "")
	if !strings.Contains(string(body), `"ext_authz":{"http":{"url":"http://127.0.0.1:8181/health"},"timeout":"300ms","upstream_headers":["X-User-Id"],"cache":{"ttl":"5s"}}`) {
		t.Fatal(string(body))
	}
}
