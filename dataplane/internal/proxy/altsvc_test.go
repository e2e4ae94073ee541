package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestServiceAltSvcDropped: a service's Alt-Svc (alternatives for the
// service's origin, which clients never reach) does not reach clients;
// its other headers do.
func TestServiceAltSvcDropped(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Alt-Svc", `h3=":9999"; ma=60`)
		w.Header().Set("X-Kept", "yes")
	}))
	t.Cleanup(up.Close)
	_, url := newGateway(t, &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}}},
		Routes:   []*config.Route{{Name: "r", Paths: []string{"/*"}, Service: "s"}},
	})
	status, hdr, _ := do(t, "GET", url+"/x", nil)
	if status != 200 || hdr.Get("X-Kept") != "yes" || len(hdr.Values("Alt-Svc")) != 0 {
		t.Fatalf("status %d, X-Kept %q, Alt-Svc %q", status, hdr.Get("X-Kept"), hdr.Values("Alt-Svc"))
	}
}
