package config

import (
	"strings"
	"testing"
)

const inlineWSDL = `<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
  xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:t" targetNamespace="urn:t">
  <types><xs:schema targetNamespace="urn:t" elementFormDefault="qualified">
    <xs:element name="Ping"><xs:complexType><xs:sequence><xs:element name="n" type="xs:int"/></xs:sequence></xs:complexType></xs:element>
    <xs:element name="PingResponse"><xs:complexType><xs:sequence><xs:element name="n" type="xs:int"/></xs:sequence></xs:complexType></xs:element>
  </xs:schema></types>
  <message name="In"><part name="p" element="tns:Ping"/></message>
  <message name="Out"><part name="p" element="tns:PingResponse"/></message>
  <portType name="PT"><operation name="Ping"><input message="tns:In"/><output message="tns:Out"/></operation></portType>
  <binding name="B" type="tns:PT"><soap:binding transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="Ping"><soap:operation soapAction="ping"/><input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation></binding>
  <service name="S"><port name="P" binding="tns:B"><soap:address location="http://x/ping"/></port></service>
</definitions>`

// TestSOAPValidate: the soap sections' rules, with field paths.
func TestSOAPValidate(t *testing.T) {
	svc := func(mod func(*Service)) Service {
		s := Service{Name: "s", Protocol: ProtocolSOAP, Targets: []Target{{URL: "http://127.0.0.1:1"}}, SOAP: &ServiceSOAP{WSDL: inlineWSDL}}
		mod(&s)
		return s
	}
	for _, c := range []struct {
		name  string
		svc   Service
		route *RouteSOAP
		field string // "" for valid
	}{
		{"valid", svc(func(*Service) {}), &RouteSOAP{Operation: "Ping"}, ""},
		{"missing soap", svc(func(s *Service) { s.SOAP = nil }), nil, "services[0].soap"},
		{"soap on http", svc(func(s *Service) { s.Protocol = "" }), nil, "services[0].soap"},
		{"version", svc(func(s *Service) { s.SOAP.Version = "2.0" }), nil, "services[0].soap.version"},
		{"no 1.2 port", svc(func(s *Service) { s.SOAP.Version = "1.2" }), nil, "services[0].soap.version"},
		{"endpoint", svc(func(s *Service) { s.SOAP.Endpoint = "ping" }), nil, "services[0].soap.endpoint"},
		{"not a WSDL", svc(func(s *Service) { s.SOAP.WSDL = "<html/>" }), nil, "services[0].soap.wsdl"},
		{"neither", svc(func(s *Service) { s.SOAP.WSDL = "ftp://x" }), nil, "services[0].soap.wsdl"},
		{"not fetched", svc(func(s *Service) { s.SOAP.WSDL = "http://x/s?wsdl" }), nil, "services[0].soap.wsdl"},
		{"username", svc(func(s *Service) { s.SOAP.WSSecurity = &WSSecurity{Password: "p"} }), nil, "services[0].soap.ws_security.username"},
		{"unknown operation", svc(func(*Service) {}), &RouteSOAP{Operation: "Pong"}, "routes[0].soap.operation"},
		{"no operation", svc(func(*Service) {}), &RouteSOAP{}, "routes[0].soap.operation"},
		{"unknown port", svc(func(*Service) {}), &RouteSOAP{Operation: "Ping", Port: "Q"}, "routes[0].soap.port"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := &Config{Services: []Service{c.svc}}
			if c.route != nil {
				cfg.Routes = []*Route{{Name: "r", Paths: []string{"/r"}, Service: "s", SOAP: c.route}}
			}
			err := cfg.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.field+":") && !strings.Contains(err.Error(), c.field+" ") {
				t.Fatalf("want %s: %v", c.field, err)
			}
		})
	}
	// The route of a SOAP service must name an operation; a route of an
	// HTTP service must not.
	cfg := &Config{Services: []Service{svc(func(*Service) {}), {Name: "h", Targets: []Target{{URL: "http://127.0.0.1:1"}}}},
		Routes: []*Route{{Name: "a", Paths: []string{"/a"}, Service: "s"}, {Name: "b", Paths: []string{"/b"}, Service: "h", SOAP: &RouteSOAP{Operation: "Ping"}}}}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "routes[0].soap") || !strings.Contains(err.Error(), "routes[1].soap") {
		t.Errorf("%v", err)
	}
}
