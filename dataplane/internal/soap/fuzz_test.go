package soap

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/portico-gw/portico/shared/wsdl"
)

func ordersOperation(t testing.TB) *wsdl.Operation {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "wsdl", "testdata")
	doc, err := os.ReadFile(filepath.Join(dir, "orders.wsdl"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := wsdl.Parse(doc, "", func(loc string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, loc)) })
	if err != nil {
		t.Fatal(err)
	}
	op, err := d.Operation("", "PlaceOrder", wsdl.SOAP11)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// FuzzAnswerJSON: whatever a service answers, the XML→JSON converter
// either refuses it or writes valid JSON (faults included).
func FuzzAnswerJSON(f *testing.F) {
	op := ordersOperation(f)
	f.Add([]byte(`<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><m:PlaceOrderResponse xmlns:m="urn:example:orders"><id>+007</id><lines><line><sku>a</sku><qty>1</qty><price>.5</price></line></lines></m:PlaceOrderResponse></e:Body></e:Envelope>`))
	f.Add([]byte(`<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault><faultcode>e:Client</faultcode><detail><t:OrderRejected xmlns:t="urn:example:orders:types"><reason>x</reason><retryable>1</retryable></t:OrderRejected></detail></e:Fault></e:Body></e:Envelope>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := parseAnswer(data, wsdl.SOAP11)
		if err != nil {
			return
		}
		if a.fault != nil {
			if d := detailJSON(a.fault.detail, op.Faults); d != nil && !json.Valid(d) {
				t.Fatalf("invalid detail JSON %s", d)
			}
			return
		}
		out, err := messageJSON(a.body, op.Output)
		if err == nil && !json.Valid(out) {
			t.Fatalf("invalid JSON %s", out)
		}
	})
}

// FuzzRequestXML: whatever JSON a client sends, the request is refused or
// written as well-formed XML that the gateway's own parser reads back.
func FuzzRequestXML(f *testing.F) {
	op := ordersOperation(f)
	f.Add([]byte(`{"order":{"customer":"c","line":[{"sku":"a","qty":1,"price":2.5}],"card":"x"},"priority":"high"}`))
	f.Add([]byte(`{"order":{"customer":"<&>\u0000","line":[]},"priority":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		obj, err := input(body, nil, nil, op.Input.Content)
		if err != nil {
			return
		}
		env, err := envelope(op.Version, nil, op.Input, obj)
		if err != nil {
			return
		}
		if _, err := wsdl.ParseXML(env, responseLimits); err != nil {
			t.Fatalf("the gateway wrote XML it cannot read: %v\n%s", err, env)
		}
	})
}
