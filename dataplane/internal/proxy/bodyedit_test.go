package proxy

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestBodyEditsThroughGateway: request and response bodies edited by JSON
// pointer through the real handler and a real service; the cache stores
// the edited answer; what is not JSON passes untouched.
func TestBodyEditsThroughGateway(t *testing.T) {
	var got atomic.Pointer[string]
	var calls atomic.Int32
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		s := string(b) + " len=" + r.Header.Get("Content-Length")
		got.Store(&s)
		switch r.URL.Path {
		case "/text":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, `{"internal":1}`)
		default:
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Cache-Control", "max-age=60")
			_, _ = io.WriteString(w, `{"id":7,"usr":{"name":"ada","password_hash":"x"},"internal":{"node":"n1"}}`)
		}
	}))
	t.Cleanup(svc.Close)
	body := &config.RouteBody{
		Request: []config.BodyEdit{
			{Op: "rename", Path: "/user", To: "usr"},
			{Op: "set", Path: "/meta/via", Value: []byte(`"portico"`)},
			{Op: "remove", Path: "/debug"},
		},
		Response: []config.BodyEdit{
			{Op: "remove", Path: "/internal"},
			{Op: "remove", Path: "/usr/password_hash"},
			{Op: "rename", Path: "/usr", To: "user"},
			{Op: "move", Path: "/id", To: "/user/id"},
		},
	}
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: svc.URL}}}},
		Routes: []*config.Route{
			{Name: "users", Paths: []string{"/users"}, Service: "s", Body: body},
			{Name: "cached", Paths: []string{"/cached"}, Service: "s", Body: body, Cache: &config.RouteCache{TTL: config.Duration(60e9)}},
			{Name: "text", Paths: []string{"/text"}, Service: "s", Body: body},
		},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, gw := newGateway(t, cfg)

	status, hdr, out := do(t, "POST", gw+"/users", strings.NewReader(`{"user":{"name":"ada"},"debug":true,"n":1}`))
	wantOut := `{"user":{"name":"ada","id":7}}`
	if status != 200 || out != wantOut || hdr.Get("Content-Length") != "30" || hdr.Get("ETag") != "" {
		t.Fatalf("%d %q %v", status, out, hdr)
	}
	if s := *got.Load(); s != `{"usr":{"name":"ada"},"n":1,"meta":{"via":"portico"}} len=53` {
		t.Errorf("the service got %s", s)
	}
	status, _, out = do(t, "POST", gw+"/users", strings.NewReader(`not json`))
	if status != 400 || !strings.Contains(out, "bad-json") {
		t.Errorf("non-JSON request body: %d %s", status, out)
	}
	status, _, _ = do(t, "GET", gw+"/users", nil)
	if status != 200 {
		t.Errorf("no body: %d", status)
	}
	// Not JSON: passes as it came.
	_, _, out = do(t, "GET", gw+"/text", nil)
	if out != `{"internal":1}` {
		t.Errorf("text answer edited: %s", out)
	}
	// The cache keeps the edited answer; a hit is served edited without a call.
	before := calls.Load()
	for i := range 2 {
		_, hdr, out = do(t, "GET", gw+"/cached", nil)
		if out != wantOut {
			t.Fatalf("cached %d: %s", i, out)
		}
	}
	if n := calls.Load() - before; n != 1 || hdr.Get("X-Cache-Status") != "HIT" {
		t.Errorf("%d calls for two requests, last %s", n, hdr.Get("X-Cache-Status"))
	}
}

// TestXMLServiceThroughGateway: a route to a plain-XML service: the
// client's JSON arrives as an XML document the service's encoding/xml
// decoder reads, and the service's XML answer comes back as JSON, edited.
func TestXMLServiceThroughGateway(t *testing.T) {
	type item struct {
		SKU string `xml:"sku,attr"`
		Qty int    `xml:",chardata"`
	}
	type order struct {
		XMLName  xml.Name `xml:"order"`
		Customer string   `xml:"customer"`
		Items    []item   `xml:"item"`
	}
	var ctype atomic.Pointer[string]
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Get("Content-Type")
		ctype.Store(&ct)
		var o order
		if err := xml.NewDecoder(r.Body).Decode(&o); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		total := 0
		for _, it := range o.Items {
			total += it.Qty
		}
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0"?><receipt id="r-1"><customer>%s</customer><lines>%d</lines><total>%d</total><secret>s</secret></receipt>`, o.Customer, len(o.Items), total)
	}))
	t.Cleanup(svc.Close)
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: svc.URL}}}},
		Routes: []*config.Route{{Name: "orders", Paths: []string{"/orders"}, Service: "s", Body: &config.RouteBody{
			XML:      true,
			Response: []config.BodyEdit{{Op: "remove", Path: "/receipt/secret"}},
		}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, gw := newGateway(t, cfg)
	status, hdr, out := do(t, "POST", gw+"/orders", strings.NewReader(`{"order":{"customer":"ada","item":[{"@sku":"a","#text":2},{"@sku":"b","#text":3}]}}`))
	if status != 200 || out != `{"receipt":{"@id":"r-1","customer":"ada","lines":"2","total":"5"}}` || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s %v", status, out, hdr)
	}
	if ct := *ctype.Load(); !strings.HasPrefix(ct, "application/xml") {
		t.Errorf("the service got Content-Type %q", ct)
	}
	status, _, out = do(t, "POST", gw+"/orders", strings.NewReader(`{"a":1,"b":2}`))
	if status != 400 || !strings.Contains(out, "one member") {
		t.Errorf("two roots: %d %s", status, out)
	}
}
