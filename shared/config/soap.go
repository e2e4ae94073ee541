package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/portico-gw/portico/shared/wsdl"
)

// ProtocolSOAP: the service is a SOAP service described by a WSDL; its
// routes name an operation and speak JSON to clients.
const ProtocolSOAP = "soap"

// ServiceSOAP describes a SOAP service.
type ServiceSOAP struct {
	// WSDL is the service description: an http(s) URL, which the control
	// plane fetches when the service is written, or the document itself.
	WSDL string `json:"wsdl"`
	// Version is the SOAP version of the port the routes use: "1.1"
	// (default) or "1.2".
	Version string `json:"version,omitempty"`
	// Endpoint is the path the requests go to on every instance; by
	// default the path of the port's soap:address.
	Endpoint string `json:"endpoint,omitempty"`
	// WSSecurity adds a WS-Security UsernameToken header to every request.
	WSSecurity *WSSecurity `json:"ws_security,omitempty"`
	// Documents holds the documents the WSDL needs by location: for a WSDL
	// given by URL, that document and everything it imports, as the
	// control plane fetched them at write time (URL keys are replaced on
	// every write); for an inline WSDL, the documents its relative imports
	// name, as given. Data planes read only these: they never fetch.
	Documents map[string]string `json:"documents,omitempty"`
}

// WSSecurity is a WS-Security UsernameToken. The password is a secret: it
// travels to data planes in snapshots only, and the admin API never shows
// it (a write that leaves it out keeps the stored one).
type WSSecurity struct {
	Username string `json:"username"`
	Password string `json:"password,omitempty"`
	// PasswordType is "text" (default: PasswordText, for TLS links) or
	// "digest" (PasswordDigest with a fresh nonce and timestamp per
	// request).
	PasswordType string `json:"password_type,omitempty"`
}

// RouteSOAP maps a route to an operation of its (protocol soap) service.
type RouteSOAP struct {
	Operation string `json:"operation"`
	// Port is the wsdl:port to use; by default the first port of the
	// service's SOAP version that has the operation.
	Port string `json:"port,omitempty"`
}

// SOAPVersion is the service's SOAP version with the default applied.
func (s *ServiceSOAP) SOAPVersion() string {
	if s.Version == "" {
		return wsdl.SOAP11
	}
	return s.Version
}

// WSDLIsURL tells whether the WSDL is given by location.
func (s *ServiceSOAP) WSDLIsURL() bool {
	return IsDocumentURL(s.WSDL)
}

// IsDocumentURL tells whether a WSDL location is an http(s) URL (which the
// control plane fetches) rather than a name given with the documents.
func IsDocumentURL(loc string) bool {
	u, err := url.Parse(strings.TrimSpace(loc))
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// SOAPRedacted returns s without the WS-Security password (nil-safe).
func (s *ServiceSOAP) SOAPRedacted() *ServiceSOAP {
	if s == nil || s.WSSecurity == nil || s.WSSecurity.Password == "" {
		return s
	}
	c := *s
	ws := *s.WSSecurity
	ws.Password = ""
	c.WSSecurity = &ws
	return &c
}

// SOAPKeepsPassword fills a write's missing WS-Security password from the
// stored service when the username is the same.
func SOAPKeepsPassword(existing, obj *Service) {
	if existing == nil || existing.SOAP == nil || existing.SOAP.WSSecurity == nil || obj.SOAP == nil || obj.SOAP.WSSecurity == nil {
		return
	}
	if ws := obj.SOAP.WSSecurity; ws.Password == "" && ws.Username == existing.SOAP.WSSecurity.Username {
		c := *obj.SOAP
		w := *ws
		w.Password = existing.SOAP.WSSecurity.Password
		c.WSSecurity = &w
		obj.SOAP = &c
	}
}

// parsed WSDLs by the digest of their documents: the control plane checks
// every route to a service against its WSDL, and a data plane compiles
// each route's operation; parsing once per distinct WSDL is enough.
var wsdlCache struct {
	sync.Mutex
	m map[[32]byte]*wsdl.Definitions
}

const wsdlCacheSize = 64

// SOAPDefinitions parses the service's WSDL with the documents it carries.
// The control plane validates with it and the data plane compiles with it.
func SOAPDefinitions(s *ServiceSOAP) (*wsdl.Definitions, error) {
	key := soapKey(s)
	wsdlCache.Lock()
	d, ok := wsdlCache.m[key]
	wsdlCache.Unlock()
	if ok {
		return d, nil
	}
	var doc []byte
	base := ""
	if s.WSDLIsURL() {
		base = strings.TrimSpace(s.WSDL)
		body, ok := s.Documents[base]
		if !ok {
			return nil, fmt.Errorf("the document at %s was not fetched", base)
		}
		doc = []byte(body)
	} else {
		doc = []byte(s.WSDL)
	}
	d, err := wsdl.Parse(doc, base, func(loc string) ([]byte, error) {
		if body, ok := s.Documents[loc]; ok {
			return []byte(body), nil
		}
		return nil, errors.New("not among the service's documents")
	})
	if err != nil {
		return nil, err
	}
	wsdlCache.Lock()
	if wsdlCache.m == nil || len(wsdlCache.m) >= wsdlCacheSize {
		wsdlCache.m = map[[32]byte]*wsdl.Definitions{}
	}
	wsdlCache.m[key] = d
	wsdlCache.Unlock()
	return d, nil
}

func soapKey(s *ServiceSOAP) [32]byte {
	h := sha256.New()
	h.Write([]byte(s.WSDL))
	keys := make([]string, 0, len(s.Documents))
	for k := range s.Documents {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "\x00%d:%s\x00%d:", len(k), k, len(s.Documents[k]))
		h.Write([]byte(s.Documents[k]))
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// validateSOAP checks a soap service's description: the fields, and that
// the WSDL parses (with its documents) and has a port of the version.
func (s *Service) validateSOAP(l *errorList, p string) {
	sp := s.SOAP
	if sp == nil {
		l.add(join(p, "soap"), "is required with protocol soap (soap.wsdl)")
		return
	}
	ok := true
	switch w := strings.TrimSpace(sp.WSDL); {
	case w == "":
		l.add(join(p, "soap.wsdl"), "is required: a URL or the WSDL document")
		ok = false
	case len(w) > wsdl.DocumentLimits.MaxBytes:
		l.add(join(p, "soap.wsdl"), "at most %d bytes", wsdl.DocumentLimits.MaxBytes)
		ok = false
	case !sp.WSDLIsURL() && !strings.HasPrefix(w, "<"):
		l.add(join(p, "soap.wsdl"), "must be an http(s) URL or a WSDL document (starting with '<')")
		ok = false
	}
	if sp.Version != "" && sp.Version != wsdl.SOAP11 && sp.Version != wsdl.SOAP12 {
		l.add(join(p, "soap.version"), "must be 1.1 or 1.2")
		ok = false
	}
	if e := sp.Endpoint; e != "" {
		if u, err := url.Parse(e); err != nil || !strings.HasPrefix(e, "/") || u.RawQuery != "" || u.Fragment != "" || strings.Contains(e, "//") {
			l.add(join(p, "soap.endpoint"), "must be an absolute path (\"/services/quotes\")")
		}
	}
	if ws := sp.WSSecurity; ws != nil {
		if ws.Username == "" {
			l.add(join(p, "soap.ws_security.username"), "is required")
		}
		// The password may be left out of a write (the admin API never
		// shows it): CheckService asks for it once the stored one is kept.
		if ws.PasswordType != "" && ws.PasswordType != "text" && ws.PasswordType != "digest" {
			l.add(join(p, "soap.ws_security.password_type"), "must be text or digest")
		}
	}
	total := 0
	for k, v := range sp.Documents {
		total += len(k) + len(v)
	}
	if len(sp.Documents) > wsdl.MaxDocuments || total > wsdl.MaxTotalBytes {
		l.add(join(p, "soap.documents"), "at most %d documents and %d bytes", wsdl.MaxDocuments, wsdl.MaxTotalBytes)
		ok = false
	}
	if !ok {
		return
	}
	d, err := SOAPDefinitions(sp)
	if err != nil {
		l.add(join(p, "soap.wsdl"), "%v", err)
		return
	}
	if !d.HasVersion(sp.SOAPVersion()) {
		l.add(join(p, "soap.version"), "the WSDL has no SOAP %s port (its ports: %s)", sp.SOAPVersion(), strings.Join(d.Ports(), ", "))
	}
}

// checkSOAPOperation checks a route's operation against its service's
// WSDL the way the data plane compiles it.
func checkSOAPOperation(l *errorList, p string, r *Route, svc *Service) {
	if r.SOAP == nil || svc.SOAP == nil {
		return
	}
	d, err := SOAPDefinitions(svc.SOAP)
	if err != nil {
		return // reported on the service
	}
	if _, err := d.Operation(r.SOAP.Port, r.SOAP.Operation, svc.SOAP.SOAPVersion()); err != nil {
		field := "soap.operation"
		if r.SOAP.Port != "" && strings.HasPrefix(err.Error(), "port ") {
			field = "soap.port"
		}
		l.add(join(p, field), "service %q: %v", svc.Name, err)
	}
}

// validateRouteSOAP checks a route's soap section on its own.
func (r *Route) validateRouteSOAP(l *errorList, p string) {
	if r.SOAP == nil {
		return
	}
	if strings.TrimSpace(r.SOAP.Operation) == "" {
		l.add(join(p, "soap.operation"), "is required")
	}
	if r.GRPC != nil {
		l.add(join(p, "soap"), "a route calls a gRPC method or a SOAP operation, not both")
	}
	if len(r.Aggregate) > 0 {
		l.add(join(p, "soap"), "an aggregating route cannot call a SOAP operation")
	}
}
