package wsdl

import (
	"os"
	"testing"
)

// FuzzParseXML: any input is parsed or refused, never a panic, and a tree
// it returns respects the limits.
func FuzzParseXML(f *testing.F) {
	for _, s := range []string{`<a xmlns:p="u"><p:b x="1">t</p:b></a>`, `<!DOCTYPE a><a/>`, `<a>&amp;&#65;</a>`, `<?xml version="1.0" encoding="utf-8"?><a/>`} {
		f.Add([]byte(s))
	}
	lim := Limits{MaxBytes: 1 << 16, MaxDepth: 16, MaxNodes: 1000}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseXML(data, lim)
		if err != nil {
			return
		}
		var walk func(*Node, int) int
		walk = func(n *Node, d int) int {
			if d > lim.MaxDepth {
				t.Fatalf("depth %d over the limit", d)
			}
			c := 1
			for _, k := range n.Children {
				c += walk(k, d+1)
			}
			return c
		}
		if c := walk(n, 1); c > lim.MaxNodes {
			t.Fatalf("%d nodes over the limit", c)
		}
	})
}

// FuzzParseWSDL: any WSDL (and the schema it imports) is parsed or refused
// and any operation compiled or refused, never a panic or a hang.
func FuzzParseWSDL(f *testing.F) {
	wsdlDoc, _ := os.ReadFile("testdata/orders.wsdl")
	xsd, _ := os.ReadFile("testdata/orders-types.xsd")
	f.Add(wsdlDoc, xsd, "PlaceOrder")
	f.Add([]byte(`<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"/>`), []byte(`<x/>`), "x")
	f.Fuzz(func(t *testing.T, doc, imported []byte, op string) {
		d, err := Parse(doc, "", func(string) ([]byte, error) { return imported, nil })
		if err != nil {
			return
		}
		for _, v := range []string{SOAP11, SOAP12} {
			_, _ = d.Operation("", op, v)
			_, _ = d.Operation("", "PlaceOrder", v)
		}
	})
}
