package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// wsdlServer serves shared/wsdl's test WSDL (rpc/literal, importing a
// schema that includes another) and a hostile document.
func wsdlServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/wsdl/", http.StripPrefix("/wsdl/", http.FileServer(http.Dir(filepath.Join("..", "..", "..", "shared", "wsdl", "testdata")))))
	mux.HandleFunc("/xxe.wsdl", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><definitions xmlns="http://schemas.xmlsoap.org/wsdl/">&x;</definitions>`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestSOAPServiceWrite: the control plane fetches a WSDL given by URL, and
// what it imports, when the service is written, and stores them so that
// data planes never fetch; routes are checked against the WSDL (unknown
// operation or port: 422 with the field path); the WS-Security password is
// a secret (never answered, kept when a write leaves it out, never logged).
func TestSOAPServiceWrite(t *testing.T) {
	s, logs := newLoggedServer(t)
	srv := wsdlServer(t)
	svc := func(wsdlURL, password string) string {
		ws := map[string]any{"username": "gw"}
		if password != "" {
			ws["password"] = password
		}
		b, _ := json.Marshal(map[string]any{"protocol": "soap", "targets": []map[string]any{{"url": "http://127.0.0.1:9"}},
			"soap": map[string]any{"wsdl": wsdlURL, "ws_security": ws}})
		return string(b)
	}
	h, body := s.mustStatus(t, 201, "PUT", "/v1/services/orders", svc(srv.URL+"/wsdl/orders.wsdl", "hunter2-secret"))
	var got config.Service
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if h.Get("ETag") != `"1"` || got.SOAP == nil || len(got.SOAP.Documents) != 3 || strings.Contains(string(body), "hunter2") {
		t.Fatalf("create: %s", body)
	}
	for _, loc := range []string{"/wsdl/orders.wsdl", "/wsdl/orders-types.xsd", "/wsdl/orders-common.xsd"} {
		if _, ok := got.SOAP.Documents[srv.URL+loc]; !ok {
			t.Errorf("%s was not fetched: %v", loc, got.SOAP.Documents)
		}
	}
	// GET output PUT back: nothing changes, the password is kept.
	_, body = s.mustStatus(t, 200, "GET", "/v1/services/orders", "")
	h, _ = s.mustStatus(t, 200, "PUT", "/v1/services/orders", string(body), "If-Match", `"1"`)
	if h.Get("ETag") != `"1"` {
		t.Errorf("GET output PUT back changed the service: ETag %s", h.Get("ETag"))
	}
	if stored, _ := s.cat.Current().State.Config.Service("orders"); stored == nil || stored.SOAP.WSSecurity.Password != "hunter2-secret" {
		t.Fatal("the stored password was not kept")
	}
	for _, c := range []struct{ route, field string }{
		{`{"paths":["/o"],"service":"orders","soap":{"operation":"Nope"}}`, "soap.operation"},
		{`{"paths":["/o"],"service":"orders","soap":{"operation":"PlaceOrder","port":"Gone"}}`, "soap.port"},
		{`{"paths":["/o"],"service":"orders"}`, "soap"},
		// A SOAP 1.2 port named on a SOAP 1.1 service.
		{`{"paths":["/o"],"service":"orders","soap":{"operation":"PlaceOrder","port":"Orders12"}}`, "soap.port"},
	} {
		_, body := s.mustStatus(t, 422, "PUT", "/v1/routes/o", c.route)
		if !strings.Contains(string(body), `"field":"`+c.field+`"`) {
			t.Errorf("%s: %s", c.route, body)
		}
	}
	s.mustStatus(t, 201, "PUT", "/v1/routes/o", `{"paths":["/o"],"service":"orders","soap":{"operation":"PlaceOrder","port":"Orders"}}`)
	s.mustStatus(t, 201, "PUT", "/v1/routes/p", `{"paths":["/p"],"service":"orders","soap":{"operation":"PlaceOrder"}}`)

	for _, c := range []struct{ url, want string }{
		{srv.URL + "/wsdl/missing.wsdl", "HTTP 404"},
		{srv.URL + "/xxe.wsdl", "document type declarations"},
	} {
		_, body := s.mustStatus(t, 422, "PUT", "/v1/services/bad", svc(c.url, "x"))
		if !strings.Contains(string(body), `"field":"soap.wsdl"`) || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %s", c.url, body)
		}
	}
	// The export carries the documents, not the password; importing it
	// back keeps the password.
	_, export := s.mustStatus(t, 200, "GET", "/v1/config", "")
	if strings.Contains(string(export), "hunter2") || !strings.Contains(string(export), "orders-types.xsd") {
		t.Fatalf("export: %.300s", export)
	}
	s.mustStatus(t, 200, "PUT", "/v1/config", string(export))
	if stored, _ := s.cat.Current().State.Config.Service("orders"); stored == nil || stored.SOAP.WSSecurity.Password != "hunter2-secret" {
		t.Fatal("the import lost the password")
	}
	if strings.Contains(logs.String(), "hunter2") {
		t.Error("the password reached the logs")
	}
}
