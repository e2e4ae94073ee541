package soap

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // the algorithm PasswordDigest is defined with
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/wsdl"
)

// Faults of both versions as services send them: spyne's SOAP 1.1 fault
// (prefixed faultcode, empty faultactor, untyped detail) and the SOAP 1.2
// specification's example with a subcode (Part 1, §5.4.9).
func TestReadFault(t *testing.T) {
	for _, c := range []struct {
		name, version, xml string
		code, reason       string
		client             bool
		detail             string
	}{
		{"spyne 1.1 client", wsdl.SOAP11, `<?xml version='1.0' encoding='UTF-8'?>
<soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/"><soap11env:Body><soap11env:Fault><faultcode>soap11env:Client.UnknownSymbol</faultcode><faultstring>no such symbol: NOPE</faultstring><faultactor></faultactor><detail><symbol>NOPE</symbol><hint>try ACME</hint></detail></soap11env:Fault></soap11env:Body></soap11env:Envelope>`,
			"Client.UnknownSymbol", "no such symbol: NOPE", true, `{"symbol":"NOPE","hint":"try ACME"}`},
		{"1.1 server", wsdl.SOAP11, `<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault><faultcode>e:Server</faultcode><faultstring>down</faultstring></e:Fault></e:Body></e:Envelope>`,
			"Server", "down", false, ``},
		{"1.2 sender with subcode", wsdl.SOAP12, `<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:m="http://www.example.org/timeouts"><env:Body><env:Fault><env:Code><env:Value>env:Sender</env:Value><env:Subcode><env:Value>m:MessageTimeout</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">Sender Timeout</env:Text></env:Reason><env:Detail><m:MaxTime>P5M</m:MaxTime></env:Detail></env:Fault></env:Body></env:Envelope>`,
			"Sender.MessageTimeout", "Sender Timeout", true, `{"MaxTime":"P5M"}`},
		{"1.2 receiver", wsdl.SOAP12, `<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault><env:Code><env:Value>env:Receiver</env:Value></env:Code><env:Reason><env:Text>boom</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>`,
			"Receiver", "boom", false, ``},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := parseAnswer([]byte(c.xml), c.version)
			if err != nil {
				t.Fatal(err)
			}
			f := a.fault
			if f == nil || f.code != c.code || f.reason != c.reason || f.client != c.client {
				t.Fatalf("%+v", f)
			}
			if got := string(detailJSON(f.detail, nil)); got != c.detail {
				t.Errorf("detail %s, want %s", got, c.detail)
			}
		})
	}
}

func TestNotSOAP(t *testing.T) {
	for _, s := range []string{"<html><body>x</body></html>", "not xml", `<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"/>`,
		`<!DOCTYPE e [<!ENTITY x "y">]><e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>&x;</e:Body></e:Envelope>`} {
		if _, err := parseAnswer([]byte(s), wsdl.SOAP11); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if _, err := parseAnswer([]byte(`<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>`), wsdl.SOAP11); err == nil {
		t.Error("a SOAP 1.2 answer to a SOAP 1.1 request accepted")
	}
}

func TestWriteString(t *testing.T) {
	for _, s := range []string{"plain", "", "quote\"back\\slash", "<tag>&", "\x01ctl", "é ü 日本", "line\u2028sep", "\xff\xfe"} {
		var b bytes.Buffer
		writeString(&b, s)
		want, _ := json.Marshal(s)
		if b.String() != string(want) {
			t.Errorf("%q: %s, want %s", s, b.String(), want)
		}
	}
}

// TestUsernameTokenDigest: PasswordDigest is Base64(SHA-1(nonce + created
// + password)) over the nonce and timestamp the header carries (WSS
// UsernameToken Profile 1.1 §3.1), and neither form leaks into Describe.
func TestUsernameTokenDigest(t *testing.T) {
	s := &wsSecurity{username: "gw", password: "pw", digest: true}
	root, err := wsdl.ParseXML(s.header(time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)), responseLimits)
	if err != nil {
		t.Fatal(err)
	}
	tok := root.Element(nsWSSE, "UsernameToken")
	nonce, _ := base64.StdEncoding.DecodeString(tok.Element(nsWSSE, "Nonce").Text)
	created := tok.Element(nsWSU, "Created").Text
	h := sha1.New()
	h.Write(nonce)
	h.Write([]byte(created + "pw"))
	if got := tok.Element(nsWSSE, "Password").Text; got != base64.StdEncoding.EncodeToString(h.Sum(nil)) || len(nonce) != 16 || created != "2026-12-03T06:00:00.000Z" {
		t.Errorf("digest %s nonce %x created %s", got, nonce, created)
	}
	g := &Route{op: &wsdl.Operation{}, security: s}
	if b, _ := json.Marshal(g.Describe()); bytes.Contains(b, []byte("pw")) {
		t.Errorf("Describe shows the password: %s", b)
	}
}
