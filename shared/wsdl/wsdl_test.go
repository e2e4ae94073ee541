package wsdl

import (
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadTestdata(t testing.TB) (*Definitions, error) {
	t.Helper()
	doc, err := os.ReadFile("testdata/orders.wsdl")
	if err != nil {
		t.Fatal(err)
	}
	return Parse(doc, "", func(loc string) ([]byte, error) {
		return os.ReadFile(filepath.Join("testdata", filepath.Base(loc)))
	})
}

func names(es []*Element) string {
	var out []string
	for _, e := range es {
		s := e.Name.Local
		if e.Name.Space != "" {
			s = "{" + e.Name.Space + "}" + s
		}
		if e.Min == 0 {
			s += "?"
		}
		if e.Many() {
			s += "*"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// TestRPCLiteralWithImports: rpc/literal parts, types from an imported
// schema that includes a chameleon schema, extension, choice, bounded
// arrays, enumerations, both SOAP versions, a declared fault.
func TestRPCLiteralWithImports(t *testing.T) {
	d, err := loadTestdata(t)
	if err != nil {
		t.Fatal(err)
	}
	op, err := d.Operation("", "PlaceOrder", SOAP11)
	if err != nil {
		t.Fatal(err)
	}
	if op.Style != "rpc" || op.Action != "urn:example:orders#PlaceOrder" || op.Port != "Orders" || op.Address != "http://orders.example/soap/orders" {
		t.Errorf("%+v", op)
	}
	if op.Input.Wrapper != (xml.Name{Space: "urn:example:orders", Local: "PlaceOrder"}) || op.Output.Wrapper.Local != "PlaceOrderResponse" {
		t.Errorf("wrappers %v %v", op.Input.Wrapper, op.Output.Wrapper)
	}
	if got := names(op.Input.Content.Fields); got != "order priority" {
		t.Errorf("input parts %q", got)
	}
	order := op.Input.Content.Fields[0].Type
	if got := names(order.Fields); got != "ref? customer placed? line* card? invoice?" {
		t.Errorf("Order fields %q", got)
	}
	if line := order.Field("line"); line.Max != 50 || line.Type.Field("qty").Type.Check("70000") == nil || line.Type.Field("sku").Type.Builtin != String {
		t.Errorf("line %+v", line)
	}
	if p := op.Input.Content.Fields[1].Type; p.Check("high") != nil || p.Check("urgent") == nil {
		t.Error("enumeration not checked")
	}
	if _, ok := op.Faults[xml.Name{Space: "urn:example:orders:types", Local: "OrderRejected"}]; !ok {
		t.Errorf("faults %v", op.Faults)
	}
	op12, err := d.Operation("", "PlaceOrder", SOAP12)
	if err != nil || op12.Port != "Orders12" || op12.Action != "urn:example:orders#PlaceOrder12" {
		t.Fatalf("%v %+v", err, op12)
	}
	for _, c := range []struct{ port, op, version, want string }{
		{"", "Nope", SOAP11, `operation "Nope": not found (the port's operations: PlaceOrder)`},
		{"Gone", "PlaceOrder", SOAP11, `port "Gone": not found`},
		{"Orders12", "PlaceOrder", SOAP11, "speaks SOAP 1.2"},
	} {
		_, err := d.Operation(c.port, c.op, c.version)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c, err, c.want)
		}
	}
	if _, err := d.Operation("", "Nope", SOAP11); !errors.Is(err, ErrNotFound) {
		t.Errorf("%v does not wrap ErrNotFound", err)
	}
}

func TestMissingImport(t *testing.T) {
	doc, _ := os.ReadFile("testdata/orders.wsdl")
	_, err := Parse(doc, "", nil)
	if err == nil || !strings.Contains(err.Error(), "orders-types.xsd") {
		t.Errorf("%v", err)
	}
}

// TestHostileXML: the parser refuses what could make it expand, fetch or
// hold unbounded input.
func TestHostileXML(t *testing.T) {
	lim := Limits{MaxBytes: 1 << 10, MaxDepth: 8, MaxNodes: 50}
	for _, c := range []struct{ name, doc, want string }{
		{"xxe", `<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>`, "document type"},
		{"billion laughs", `<!DOCTYPE a [<!ENTITY l "lol"><!ENTITY l2 "&l;&l;">]><a>&l2;</a>`, "document type"},
		{"undeclared entity", `<a>&x;</a>`, "not well-formed"},
		{"depth", strings.Repeat("<a>", 9) + strings.Repeat("</a>", 9), "deeper"},
		{"nodes", "<a>" + strings.Repeat("<b/>", 60) + "</a>", "more than 50"},
		{"size", "<a>" + strings.Repeat("x", 2000) + "</a>", "bytes"},
		{"encoding", `<?xml version="1.0" encoding="ISO-8859-1"?><a/>`, "encoding"},
		{"prefix", `<p:a/>`, "undeclared prefix"},
		{"mismatch", `<a></b>`, "not well-formed"},
		{"two roots", `<a/><b/>`, "more than one root"},
	} {
		_, err := ParseXML([]byte(c.doc), lim)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		typ, v string
		ok     bool
	}{
		{"int", "2147483647", true}, {"int", "2147483648", false}, {"byte", "-129", false},
		{"unsignedLong", "18446744073709551615", true}, {"unsignedInt", "-1", false},
		{"boolean", "1", true}, {"boolean", "yes", false},
		{"decimal", "-1.50", true}, {"decimal", "1e3", false}, {"double", "1e3", true}, {"double", "INF", true},
		{"date", "2024-02-29", true}, {"date", "2023-02-29", false}, {"date", "2024-13-01", false},
		{"dateTime", "2026-01-02T15:04:05Z", true}, {"dateTime", "2026-01-02 15:04:05", false},
		{"time", "23:59:60", false}, {"duration", "P1DT2H", true}, {"duration", "P", false},
		{"base64Binary", "aGk=", true}, {"hexBinary", "0g", false},
	} {
		err := builtinType(c.typ).Check(c.v)
		if (err == nil) != c.ok {
			t.Errorf("%s %q: %v", c.typ, c.v, err)
		}
	}
}
