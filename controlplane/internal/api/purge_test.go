package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

func TestPurgeRouteCache(t *testing.T) {
	s := newTestServer(t, false)
	s.mustStatus(t, 201, "POST", "/v1/services", `{"name":"users","targets":[{"url":"http://127.0.0.1:9001"}]}`)
	s.mustStatus(t, 201, "PUT", "/v1/routes/plain", `{"paths":["/plain"],"service":"users"}`)
	s.mustStatus(t, 201, "PUT", "/v1/routes/cached", `{"paths":["/users/{id}"],"service":"users","cache":{"ttl":"60s"}}`)

	s.mustStatus(t, 404, "POST", "/v1/routes/ghost/cache/purge", "")
	_, body := s.mustStatus(t, 409, "POST", "/v1/routes/plain/cache/purge", "")
	if !strings.Contains(string(body), "has no cache") {
		t.Errorf("purge without cache: %s", body)
	}
	s.mustStatus(t, 412, "POST", "/v1/routes/cached/cache/purge", "", "If-Match", `"9"`)

	h, body := s.mustStatus(t, 200, "POST", "/v1/routes/cached/cache/purge", "", "If-Match", `"1"`)
	var r config.Route
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	// The revision is what data planes key cache entries by: it must move.
	if r.Version != 2 || r.Revision != 4 || h.Get("ETag") != `"2"` || h.Get(apiv1.HeaderRevision) != "4" {
		t.Fatalf("after purge: version %d revision %d, headers %v", r.Version, r.Revision, h)
	}
	_, body = s.mustStatus(t, 200, "GET", "/v1/audit", "")
	if !strings.Contains(string(body), `"action":"purge-cache"`) {
		t.Errorf("purge not in the audit log: %s", body)
	}
	if status, _, _ := s.call(t, "POST", "/v1/routes/cached/cache/purge", "", ""); status != 401 {
		t.Errorf("purge without a token = %d, want 401", status)
	}
}
