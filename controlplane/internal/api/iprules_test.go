package api

import (
	"strings"
	"testing"
)

// TestIPRulesAPI: ip rules in PUT /v1/global and on a route, checked by
// the shared validation with field paths.
func TestIPRulesAPI(t *testing.T) {
	s := newTestServer(t, false)
	s.mustStatus(t, 200, "PUT", "/v1/global", `{"ip":{"deny":["203.0.113.0/24","2001:db8:bad::/48"]}}`)
	_, body := s.mustStatus(t, 200, "GET", "/v1/global", "")
	if !strings.Contains(string(body), `"deny":["203.0.113.0/24","2001:db8:bad::/48"]`) {
		t.Fatal(string(body))
	}
	_, body = s.mustStatus(t, 422, "PUT", "/v1/global", `{"ip":{"allow":["10.0.0.0/8","10.0.0.0/99"]}}`)
	if !strings.Contains(string(body), "global.ip.allow[1]") {
		t.Fatal(string(body))
	}
	s.mustStatus(t, 201, "PUT", "/v1/services/users", `{"targets":[{"url":"http://127.0.0.1:9"}]}`)
	_, body = s.mustStatus(t, 422, "PUT", "/v1/routes/office", `{"paths":["/office/*"],"service":"users","ip":{"allow":["192.0.2.0/24"],"deny":["nope"]}}`)
	if !strings.Contains(string(body), "ip.deny[0]") {
		t.Fatal(string(body))
	}
	s.mustStatus(t, 201, "PUT", "/v1/routes/office", `{"paths":["/office/*"],"service":"users","ip":{"allow":["192.0.2.0/24"],"deny":["192.0.2.66"]}}`)
}
