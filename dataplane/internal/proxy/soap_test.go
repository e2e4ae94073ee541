package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portico-gw/portico/dataplane/internal/soap/soaptest"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/wsdl"
)

// soapService is a soap service for the spyne service at base, its WSDL
// fetched the way the control plane fetches it at write time.
func soapService(t *testing.T, name, base, path, version string) config.Service {
	t.Helper()
	loc := base + path + "?wsdl"
	docs, err := wsdl.Fetch(context.Background(), nil, loc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return config.Service{Name: name, Protocol: config.ProtocolSOAP, Targets: []config.Target{{URL: base}},
		SOAP: &config.ServiceSOAP{WSDL: loc, Version: version, Documents: docs}}
}

func decodeJSON(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	return m
}

// TestSOAPThroughDataPlane calls a real SOAP stack (spyne, document/literal,
// SOAP 1.1 and 1.2) through the data plane's handler: typed JSON in and
// out, arrays, nested types, enumerations, dates, faults, schema errors
// caught before any call, a non-SOAP answer, WS-Security.
func TestSOAPThroughDataPlane(t *testing.T) {
	base := soaptest.StartSpyne(t)
	s11 := soapService(t, "quotes", base, "/soap11", "")
	s11.SOAP.WSSecurity = &config.WSSecurity{Username: "gw", Password: "s3cret<&>"}
	s12 := soapService(t, "quotes12", base, "/soap12", "1.2")
	plain := soapService(t, "plain", base, "/soap11", "")
	plain.SOAP.Endpoint = "/plain"
	cfg := &config.Config{
		Services: []config.Service{plain, s11, s12},
		Routes: []*config.Route{
			{Name: "add", Paths: []string{"/add/{a}"}, Service: "quotes", SOAP: &config.RouteSOAP{Operation: "Add"}},
			{Name: "echo", Paths: []string{"/echo"}, Service: "quotes", SOAP: &config.RouteSOAP{Operation: "Echo"}},
			{Name: "plain", Paths: []string{"/plain"}, Service: "plain", SOAP: &config.RouteSOAP{Operation: "Add"}},
			{Name: "quote", Paths: []string{"/quotes/{symbol}"}, Service: "quotes", SOAP: &config.RouteSOAP{Operation: "GetQuote"}},
			{Name: "quote12", Paths: []string{"/v12/quotes/{symbol}"}, Service: "quotes12", SOAP: &config.RouteSOAP{Operation: "GetQuote"}},
			{Name: "quotes", Paths: []string{"/quotes"}, Service: "quotes", SOAP: &config.RouteSOAP{Operation: "GetQuotes"}},
		},
	}
	h, gw := newGateway(t, cfg)
	if rej := h.table.Load().Rejected(); len(rej) > 0 {
		t.Fatalf("rejected: %+v", rej)
	}

	t.Run("typed answer", func(t *testing.T) {
		status, hdr, body := do(t, "GET", gw+"/quotes/ACME?side=sell&day=2026-03-04", nil)
		if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Fatalf("%d %s", status, body)
		}
		want := `{"GetQuoteResult":{"symbol":"ACME","price":12.5,"volume":1000,"side":"sell","day":"2026-03-04","at":"2026-01-02T15:04:05","open":true}}`
		if body != want {
			t.Errorf("got  %s\nwant %s", body, want)
		}
		_, _, last := do(t, "GET", base+"/last", nil)
		for _, s := range []string{"<wsse:Username>gw</wsse:Username>", "s3cret&lt;&amp;&gt;", `<GetQuote xmlns="urn:portico:quotes"><symbol>ACME</symbol><side>sell</side><day>2026-03-04</day></GetQuote>`} {
			if !strings.Contains(last, s) {
				t.Errorf("the request lacks %s:\n%s", s, last)
			}
		}
	})
	t.Run("SOAP 1.2", func(t *testing.T) {
		status, _, body := do(t, "GET", gw+"/v12/quotes/ACME", nil)
		if status != 200 || !strings.Contains(body, `"side":"buy"`) {
			t.Fatalf("%d %s", status, body)
		}
		_, _, last := do(t, "GET", base+"/last", nil)
		if !strings.Contains(last, "http://www.w3.org/2003/05/soap-envelope") {
			t.Errorf("not a SOAP 1.2 envelope: %s", last)
		}
	})
	t.Run("arrays", func(t *testing.T) {
		status, _, body := do(t, "POST", gw+"/quotes", strings.NewReader(`{"symbols":["A","B"]}`))
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		m := decodeJSON(t, body)
		qs := m["GetQuotesResult"].(map[string]any)["Quote"].([]any)
		if len(qs) != 2 || qs[1].(map[string]any)["price"] != 3.0 || qs[1].(map[string]any)["symbol"] != "B" {
			t.Errorf("%s", body)
		}
		// One item is still an array: the schema says maxOccurs unbounded.
		_, _, body = do(t, "GET", gw+"/quotes?symbols=ONLY", nil)
		if !strings.Contains(body, `"Quote":[{"symbol":"ONLY"`) {
			t.Errorf("one item: %s", body)
		}
	})
	t.Run("nested types round trip", func(t *testing.T) {
		in := `{"customer":{"name":"Ada","address":{"street":"1 Main","city":"Paris"},"tags":["x","y"],"since":"2020-02-29"}}`
		status, _, body := do(t, "POST", gw+"/echo", strings.NewReader(in))
		want := `{"EchoResult":{"name":"Ada","address":{"street":"1 Main","city":"Paris"},"tags":["x","y"],"since":"2020-02-29"}}`
		if status != 200 || body != want {
			t.Errorf("%d\ngot  %s\nwant %s", status, body, want)
		}
	})
	t.Run("path and body params with integers", func(t *testing.T) {
		status, _, body := do(t, "POST", gw+"/add/40", strings.NewReader(`{"b":2}`))
		if status != 200 || body != `{"AddResult":42}` {
			t.Errorf("%d %s", status, body)
		}
	})
	for _, c := range []struct {
		name, method, path, body, pointer, param string
	}{
		{"enumeration", "GET", "/quotes/ACME?side=hold", "", "", `query parameter "side"`},
		{"date", "POST", "/echo", `{"customer":{"name":"Ada","since":"2021-02-29"}}`, "/customer/since", ""},
		{"number type", "POST", "/add/1", `{"b":"2"}`, "/b", ""},
		{"integer", "POST", "/add/1", `{"b":2.5}`, "/b", ""},
		{"required", "POST", "/echo", `{"customer":{"address":{"city":"x"}}}`, "/customer/name", ""},
		{"nested required", "POST", "/echo", `{"customer":{"name":"a","address":{"street":"x"}}}`, "/customer/address/city", ""},
		{"unknown member", "POST", "/echo", `{"customer":{"name":"a","nick":"b"}}`, "/customer/nick", ""},
		{"array wanted", "POST", "/echo", `{"customer":{"name":"a","tags":"x"}}`, "/customer/tags", ""},
		{"array item", "POST", "/echo", `{"customer":{"name":"a","tags":["x",1]}}`, "/customer/tags/1", ""},
		{"path parameter", "GET", "/add/x", "", "", `path parameter "a"`},
	} {
		t.Run("400 "+c.name, func(t *testing.T) {
			_, _, before := do(t, "GET", base+"/last", nil)
			var rd io.Reader
			if c.body != "" {
				rd = strings.NewReader(c.body)
			}
			status, hdr, body := do(t, c.method, gw+c.path, rd)
			if status != 400 || hdr.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %s", status, body)
			}
			m := decodeJSON(t, body)
			if c.pointer != "" && m["pointer"] != c.pointer || c.param != "" && m["parameter"] != c.param {
				t.Errorf("want pointer %q parameter %q: %s", c.pointer, c.param, body)
			}
			if _, _, after := do(t, "GET", base+"/last", nil); after != before {
				t.Error("a call was made")
			}
		})
	}
	t.Run("client fault is 422", func(t *testing.T) {
		status, _, body := do(t, "GET", gw+"/quotes/NOPE", nil)
		m := decodeJSON(t, body)
		if status != 422 || m["faultcode"] != "Client.UnknownSymbol" || m["faultstring"] != "no such symbol: NOPE" {
			t.Fatalf("%d %s", status, body)
		}
		if d, _ := m["faultdetail"].(map[string]any); d["symbol"] != "NOPE" || d["hint"] != "try ACME" {
			t.Errorf("detail: %s", body)
		}
	})
	t.Run("server fault is 502", func(t *testing.T) {
		status, _, body := do(t, "GET", gw+"/quotes/BOOM", nil)
		m := decodeJSON(t, body)
		if status != 502 || m["faultcode"] != "Server" || m["type"] == nil {
			t.Fatalf("%d %s", status, body)
		}
		// (spyne 2.14's SOAP 1.2 fault serializer breaks and answers a plain
		// text 500, which is a non-SOAP answer: 502 too. SOAP 1.2 faults are
		// read in the soap package's TestReadFault.)
		status, _, body = do(t, "GET", gw+"/v12/quotes/NOPE", nil)
		if status != 502 {
			t.Errorf("SOAP 1.2 broken fault: %d %s", status, body)
		}
	})
	t.Run("non-SOAP answer is 502", func(t *testing.T) {
		status, _, body := do(t, "GET", gw+"/plain?a=1&b=2", nil)
		if m := decodeJSON(t, body); status != http.StatusBadGateway || !strings.HasSuffix(m["type"].(string), "soap-bad-response") {
			t.Errorf("%d %s", status, body)
		}
	})
}

// TestSOAPRouteRejected: a route naming an operation the WSDL lacks is
// refused by validation with its field path (the control plane's 422) and,
// in a snapshot, answers 503 config-rejected.
func TestSOAPRouteRejected(t *testing.T) {
	base := soaptest.StartSpyne(t)
	cfg := &config.Config{
		Services: []config.Service{soapService(t, "quotes", base, "/soap11", "")},
		Routes:   []*config.Route{{Name: "nope", Paths: []string{"/nope"}, Service: "quotes", SOAP: &config.RouteSOAP{Operation: "Nope"}}},
	}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "routes[0].soap.operation") || !strings.Contains(err.Error(), "GetQuote") {
		t.Fatalf("validate: %v", err)
	}
	cfg.Services[0].SOAP.Version = "1.2"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "soap.version") {
		t.Errorf("a SOAP 1.1-only WSDL as 1.2: %v", err)
	}
}

// TestSOAPRPCLiteralThroughDataPlane: an rpc/literal operation (an inline
// WSDL whose schema imports and includes other documents, given with it)
// called through the data plane on a service whose messages zeep reads and
// writes: part accessors unqualified in the operation's wrapper, extension
// fields first, a bounded array, an enumeration, a long, a fault whose
// detail the WSDL declares.
func TestSOAPRPCLiteralThroughDataPlane(t *testing.T) {
	base := soaptest.StartZeepRPC(t)
	dir := soaptest.OrdersWSDL()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cfg := &config.Config{
		Services: []config.Service{{Name: "orders", Protocol: config.ProtocolSOAP, Targets: []config.Target{{URL: base}},
			SOAP: &config.ServiceSOAP{WSDL: read("orders.wsdl"), Documents: map[string]string{
				"orders-types.xsd": read("orders-types.xsd"), "orders-common.xsd": read("orders-common.xsd")}}}},
		Routes: []*config.Route{{Name: "place", Paths: []string{"/orders"}, Methods: []string{"POST"}, Service: "orders",
			SOAP: &config.RouteSOAP{Operation: "PlaceOrder"}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, gw := newGateway(t, cfg)
	in := `{"order":{"ref":"r1","customer":"ada","placed":"2026-12-03T10:00:00Z","line":[{"sku":"a-1","qty":2,"price":1.5},{"sku":"b","qty":1,"price":10}],"invoice":true},"priority":"high"}`
	status, _, body := do(t, "POST", gw+"/orders", strings.NewReader(in))
	want := `{"id":9000000002,"lines":{"line":[{"sku":"a-1","qty":4,"price":1.5},{"sku":"b","qty":2,"price":10}]}}`
	if status != 200 || body != want {
		t.Fatalf("%d\ngot  %s\nwant %s", status, body, want)
	}
	_, _, last := do(t, "GET", base+"/last", nil)
	if !strings.Contains(last, `<PlaceOrder xmlns="urn:example:orders"><order xmlns=""><ref>r1</ref><customer>ada</customer>`) {
		t.Errorf("request: %s", last)
	}

	status, _, body = do(t, "POST", gw+"/orders", strings.NewReader(`{"order":{"customer":"reject","line":[{"sku":"a","qty":1,"price":1}],"card":"x"},"priority":"low"}`))
	if status != 422 || !strings.Contains(body, `"faultdetail":{"OrderRejected":{"reason":"blocked customer","retryable":false}}`) {
		t.Errorf("typed fault detail: %d %s", status, body)
	}
	for _, c := range []struct{ in, pointer string }{
		{`{"order":{"customer":"c","line":[{"sku":"a","qty":70000,"price":1}],"card":"x"},"priority":"low"}`, "/order/line/0/qty"},
		{`{"order":{"customer":"c","line":[],"card":"x"},"priority":"low"}`, "/order/line"},
		{`{"order":{"customer":"c","line":[{"sku":"a","qty":1,"price":1}]},"priority":"urgent"}`, "/priority"},
	} {
		status, _, body := do(t, "POST", gw+"/orders", strings.NewReader(c.in))
		if m := decodeJSON(t, body); status != 400 || m["pointer"] != c.pointer {
			t.Errorf("%s: %d %s", c.in, status, body)
		}
	}
}
