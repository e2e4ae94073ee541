package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portico-gw/portico/dataplane/internal/soap/soaptest"
	"github.com/portico-gw/portico/shared/config"
)

// BenchmarkSOAPOverhead is the cost of the SOAP translation per call: the
// same client request (a JSON order of 20 lines) through a SOAP route
// (JSON → rpc/literal envelope, the service's envelope → JSON) and through
// a plain proxied route whose service answers with the JSON the SOAP route
// produces, both against an in-process service answering canned bytes
// over loopback. The difference of the two is the translation.
func BenchmarkSOAPOverhead(b *testing.B) {
	dir := soaptest.OrdersWSDL()
	read := func(name string) string {
		s, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		return string(s)
	}
	var lines, outLines strings.Builder
	for i := range 20 {
		if i > 0 {
			lines.WriteByte(',')
			outLines.WriteByte(',')
		}
		fmt.Fprintf(&lines, `{"sku":"sku-%d","qty":%d,"price":%d.25}`, i, i+1, i)
		fmt.Fprintf(&outLines, `<line><sku>sku-%d</sku><qty>%d</qty><price>%d.25</price></line>`, i, i+1, i)
	}
	reqJSON := `{"order":{"customer":"ada","line":[` + lines.String() + `],"card":"x"},"priority":"high"}`
	envelope := `<?xml version="1.0" encoding="UTF-8"?><e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><m:PlaceOrderResponse xmlns:m="urn:example:orders"><id>42</id><lines>` + outLines.String() + `</lines></m:PlaceOrderResponse></e:Body></e:Envelope>`
	var answerJSON []byte // what the SOAP route answers, served by the plain route
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/plain" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(answerJSON)
			return
		}
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		_, _ = io.WriteString(w, envelope)
	}))
	b.Cleanup(svc.Close)
	cfg := &config.Config{
		Services: []config.Service{
			{Name: "orders", Protocol: config.ProtocolSOAP, Targets: []config.Target{{URL: svc.URL}},
				SOAP: &config.ServiceSOAP{WSDL: read("orders.wsdl"), Documents: map[string]string{
					"orders-types.xsd": read("orders-types.xsd"), "orders-common.xsd": read("orders-common.xsd")}}},
			{Name: "plain", Targets: []config.Target{{URL: svc.URL}}},
		},
		Routes: []*config.Route{
			{Name: "plain", Paths: []string{"/plain"}, Service: "plain"},
			{Name: "soap", Paths: []string{"/soap"}, Service: "orders", SOAP: &config.RouteSOAP{Operation: "PlaceOrder"}},
		},
	}
	_, gw := newGateway(b, cfg)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	call := func(path string) []byte {
		resp, err := client.Post(gw+path, "application/json", strings.NewReader(reqJSON))
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		return body
	}
	answerJSON = call("/soap")
	for _, path := range []string{"/plain", "/soap"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(reqJSON) + len(answerJSON)))
			for b.Loop() {
				call(path)
			}
		})
	}
}
