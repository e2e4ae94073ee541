// Package wsdl reads WSDL 1.1 documents and the XML Schemas they use, and
// compiles one operation of one SOAP port into what a translator needs:
// the SOAP version, SOAPAction, endpoint address, and the input, output
// and fault messages as typed element trees.
//
// The control plane parses a service's WSDL with this package when the
// service or a route to it is written (an unknown operation, or a WSDL
// that does not parse, is refused there with the field path), and the data
// plane compiles the same operation with the same code: one rule, one
// place.
//
// # What is read
//
//   - WSDL 1.1 with SOAP 1.1 or SOAP 1.2 bindings over HTTP, styles
//     document and rpc, use literal. use="encoded" (rpc/encoded, SOAP
//     encoding arrays) is refused when the operation is compiled.
//   - wsdl:import of other WSDL documents or of schemas; xs:import and
//     xs:include with a schemaLocation (resolved against the importing
//     document's location), chameleon includes.
//   - XML Schema: global and local elements (qualified or not, refs),
//     named and anonymous complex and simple types, sequence, all, choice,
//     groups, complexContent extension and restriction, simpleContent,
//     enumerations, minOccurs/maxOccurs, nillable, the built-in types.
//     Attributes are not modelled (a message is its elements), nor are
//     facets other than enumerations and the integer types' bounds,
//     substitution groups, or SOAP headers declared in the binding.
//
// Documents come from a Loader, never from the network by themselves: the
// control plane's loader fetches with a timeout and a size bound, the data
// plane's reads the documents the control plane stored in the snapshot.
// Every document is parsed by ParseXML: no DOCTYPE (so no entities), UTF-8
// only, bounded size, depth and element count; at most MaxDocuments
// documents and MaxTotalBytes bytes per WSDL.
package wsdl

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"sync"
)

// Namespaces of WSDL 1.1 and its SOAP bindings.
const (
	NSWSDL    = "http://schemas.xmlsoap.org/wsdl/"
	NSSOAP11  = "http://schemas.xmlsoap.org/wsdl/soap/"
	NSSOAP12  = "http://schemas.xmlsoap.org/wsdl/soap12/"
	NSSOAPEnc = "http://schemas.xmlsoap.org/soap/encoding/"
	// httpTransport is the transport URI of SOAP over HTTP in both
	// bindings.
	httpTransport = "http://schemas.xmlsoap.org/soap/http"
)

// SOAP versions as the configuration names them.
const (
	SOAP11 = "1.1"
	SOAP12 = "1.2"
)

// Bounds of one WSDL with everything it imports.
const (
	MaxDocuments  = 64
	MaxTotalBytes = 16 << 20
)

// ErrNotFound is wrapped by errors naming an operation or port the WSDL
// does not define.
var ErrNotFound = errors.New("not found")

// Loader returns the document at an absolute or relative location (as
// resolved against the importing document's location).
type Loader func(location string) ([]byte, error)

// Definitions is a parsed WSDL with its imports. Operations are compiled
// on demand (Operation); it is safe for concurrent use.
type Definitions struct {
	TargetNamespace string
	mu              sync.Mutex
	schemas         *schemaSet
	messages        map[xml.Name]*Node
	portTypes       map[xml.Name]*Node
	bindings        map[xml.Name]*Node
	ports           []*port
}

// port is one wsdl:port with a SOAP binding over HTTP.
type port struct {
	name    string
	version string
	address string
	binding *Node
	bname   xml.Name
}

// Operation is one operation of one SOAP port, compiled: what a call
// needs and what its messages look like.
type Operation struct {
	Name    string
	Port    string
	Version string // SOAP11 or SOAP12
	Action  string // soapAction (SOAP 1.1 header, SOAP 1.2 action parameter)
	Style   string // document or rpc
	Address string // the port's soap:address location
	Input   *Message
	Output  *Message
	// Faults are the declared fault details by element name.
	Faults map[xml.Name]*Element
}

// Message is the content of a SOAP Body for one direction: Wrapper is the
// Body's one child (the document/literal element, or the rpc wrapper
// named after the operation), whose children Content describes; without a
// Wrapper the Content's fields are the Body's children themselves.
// Either way the JSON form of a message is an object with one member per
// field of Content.
type Message struct {
	Wrapper xml.Name
	Content *Type
	// RPC: the Wrapper is an rpc wrapper, which answers do not always name
	// as WS-I says (operation + "Response"; zeep, for one, uses the
	// message's name): the Body's only child is the wrapper whatever its
	// name.
	RPC bool
}

// Parse reads the WSDL doc found at location (a URL, or "" for a document
// given inline) and the documents it imports through load.
func Parse(doc []byte, location string, load Loader) (*Definitions, error) {
	p := &parser{
		load: load,
		seen: map[string]bool{},
		defs: &Definitions{
			schemas:   newSchemaSet(),
			messages:  map[xml.Name]*Node{},
			portTypes: map[xml.Name]*Node{},
			bindings:  map[xml.Name]*Node{},
		},
	}
	root, err := p.read(doc, location)
	if err != nil {
		return nil, err
	}
	if root.Name != (xml.Name{Space: NSWSDL, Local: "definitions"}) {
		return nil, fmt.Errorf("the document is not a WSDL 1.1 description (its root is {%s}%s, not wsdl:definitions)", root.Name.Space, root.Name.Local)
	}
	p.defs.TargetNamespace, _ = root.AttrValue("targetNamespace")
	if err := p.definitions(root, location); err != nil {
		return nil, err
	}
	if len(p.defs.ports) == 0 {
		return nil, errors.New("the WSDL has no port with a SOAP 1.1 or 1.2 binding over HTTP")
	}
	return p.defs, nil
}

type parser struct {
	load  Loader
	seen  map[string]bool
	count int
	bytes int
	defs  *Definitions
}

// read parses one document under the per-WSDL bounds.
func (p *parser) read(doc []byte, location string) (*Node, error) {
	p.count++
	p.bytes += len(doc)
	if p.count > MaxDocuments {
		return nil, fmt.Errorf("more than %d documents: %w", MaxDocuments, ErrLimit)
	}
	if p.bytes > MaxTotalBytes {
		return nil, fmt.Errorf("more than %d bytes of documents: %w", MaxTotalBytes, ErrLimit)
	}
	n, err := ParseXML(doc, DocumentLimits)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where(location), err)
	}
	return n, nil
}

func where(location string) string {
	if location == "" {
		return "the WSDL"
	}
	return location
}

// fetch resolves ref against base and loads it once; ok is false when the
// document was already read.
func (p *parser) fetch(base, ref string) (n *Node, loc string, ok bool, err error) {
	loc = Resolve(base, ref)
	if p.seen[loc] {
		return nil, loc, false, nil
	}
	p.seen[loc] = true
	if p.load == nil {
		return nil, loc, false, fmt.Errorf("%s imports %s, which was not provided", where(base), loc)
	}
	b, err := p.load(loc)
	if err != nil {
		return nil, loc, false, fmt.Errorf("%s imports %s: %w", where(base), loc, err)
	}
	n, err = p.read(b, loc)
	return n, loc, err == nil, err
}

// Resolve resolves a document reference against the location of the
// document that makes it: a URL, a name given with an inline WSDL's
// documents ("types/orders.xsd", resolved as a relative path), or "" for
// the inline WSDL itself (the reference stays as it is).
func Resolve(base, ref string) string {
	ref = strings.TrimSpace(ref)
	if base == "" {
		return ref
	}
	r, err := url.Parse(ref)
	if err != nil || r.IsAbs() {
		return ref
	}
	b, err := url.Parse(base)
	if err != nil || !b.IsAbs() {
		if strings.HasPrefix(ref, "/") || path.Dir(base) == "." {
			return ref
		}
		return path.Join(path.Dir(base), ref)
	}
	return b.ResolveReference(r).String()
}

func (p *parser) definitions(root *Node, location string) error {
	p.seen[location] = true
	tns, _ := root.AttrValue("targetNamespace")
	for _, c := range root.Children {
		if c.Name.Space != NSWSDL {
			continue
		}
		name, _ := c.AttrValue("name")
		qn := xml.Name{Space: tns, Local: name}
		switch c.Name.Local {
		case "import":
			loc, _ := c.AttrValue("location")
			if loc == "" {
				continue
			}
			n, at, ok, err := p.fetch(location, loc)
			if err != nil || !ok {
				return err
			}
			switch n.Name {
			case xml.Name{Space: NSWSDL, Local: "definitions"}:
				if err := p.definitions(n, at); err != nil {
					return err
				}
			case xml.Name{Space: XSD, Local: "schema"}:
				if err := p.schema(n, at, ""); err != nil {
					return err
				}
			default:
				return fmt.Errorf("%s: imported %s is neither a WSDL nor a schema", where(location), at)
			}
		case "types":
			for _, s := range c.Elements(XSD, "schema") {
				if err := p.schema(s, location, ""); err != nil {
					return err
				}
			}
		case "message":
			p.defs.messages[qn] = c
		case "portType":
			p.defs.portTypes[qn] = c
		case "binding":
			p.defs.bindings[qn] = c
		case "service":
			if err := p.service(c); err != nil {
				return err
			}
		}
	}
	// Bindings may be declared after (or in another document than) the
	// services naming them: tie ports to bindings once everything is read.
	for _, pt := range p.defs.ports {
		if pt.binding == nil {
			pt.binding = p.defs.bindings[pt.bname]
		}
	}
	return nil
}

// service records the SOAP-over-HTTP ports of a wsdl:service.
func (p *parser) service(svc *Node) error {
	for _, pn := range svc.Elements(NSWSDL, "port") {
		name, _ := pn.AttrValue("name")
		b, _ := pn.AttrValue("binding")
		bq, err := pn.QName(b)
		if err != nil {
			return fmt.Errorf("port %s: binding: %w", name, err)
		}
		pt := &port{name: name, bname: bq}
		for _, a := range pn.Children {
			if a.Name.Local != "address" {
				continue
			}
			switch a.Name.Space {
			case NSSOAP11:
				pt.version = SOAP11
			case NSSOAP12:
				pt.version = SOAP12
			default:
				continue
			}
			pt.address, _ = a.AttrValue("location")
		}
		if pt.version != "" {
			p.defs.ports = append(p.defs.ports, pt)
		}
	}
	return nil
}

// schema adds an xs:schema element and the documents it includes and
// imports. tns is the including schema's namespace, for a chameleon
// include (a schema without targetNamespace takes the includer's).
func (p *parser) schema(n *Node, location, tns string) error {
	s := &schema{node: n, location: location}
	s.tns, _ = n.AttrValue("targetNamespace")
	if s.tns == "" {
		s.tns = tns
	}
	if f, _ := n.AttrValue("elementFormDefault"); f == "qualified" {
		s.qualified = true
	}
	if err := p.defs.schemas.add(s); err != nil {
		return err
	}
	for _, c := range n.Children {
		if c.Name.Space != XSD || (c.Name.Local != "import" && c.Name.Local != "include") {
			continue
		}
		loc, _ := c.AttrValue("schemaLocation")
		if loc == "" {
			continue // a namespace defined by another schema of the WSDL
		}
		m, at, ok, err := p.fetch(location, loc)
		if err != nil || !ok {
			return err
		}
		if m.Name != (xml.Name{Space: XSD, Local: "schema"}) {
			return fmt.Errorf("%s: %s is not an XML schema", where(location), at)
		}
		chameleon := ""
		if c.Name.Local == "include" {
			chameleon = s.tns
		}
		if err := p.schema(m, at, chameleon); err != nil {
			return err
		}
	}
	return nil
}

// Ports lists the SOAP ports as "name (SOAP version)", for messages.
func (d *Definitions) Ports() []string {
	out := make([]string, len(d.ports))
	for i, p := range d.ports {
		out[i] = p.name + " (SOAP " + p.version + ")"
	}
	return out
}

// HasVersion tells whether some port speaks the SOAP version.
func (d *Definitions) HasVersion(version string) bool {
	for _, p := range d.ports {
		if p.version == version && p.binding != nil {
			return true
		}
	}
	return false
}

// Operation compiles operation name of the port named portName (or, with
// "", of the first port of the version that has it). Errors for a missing
// port or operation wrap ErrNotFound.
func (d *Definitions) Operation(portName, name, version string) (*Operation, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var known []string
	for _, p := range d.ports {
		if portName != "" && p.name != portName {
			continue
		}
		if p.version != version {
			if portName != "" {
				return nil, fmt.Errorf("port %s speaks SOAP %s, not %s", p.name, p.version, version)
			}
			continue
		}
		if p.binding == nil {
			if portName != "" {
				return nil, fmt.Errorf("port %s: binding {%s}%s is not defined", p.name, p.bname.Space, p.bname.Local)
			}
			continue
		}
		bop := findNamed(p.binding, NSWSDL, "operation", name)
		if bop == nil {
			for _, o := range p.binding.Elements(NSWSDL, "operation") {
				n, _ := o.AttrValue("name")
				known = append(known, n)
			}
			if portName != "" {
				break
			}
			continue
		}
		return d.compile(p, bop, name)
	}
	switch {
	case portName != "" && !d.hasPort(portName):
		return nil, fmt.Errorf("port %q: %w (the WSDL's SOAP ports: %s)", portName, ErrNotFound, strings.Join(d.Ports(), ", "))
	case len(known) > 0:
		return nil, fmt.Errorf("operation %q: %w (the port's operations: %s)", name, ErrNotFound, strings.Join(known, ", "))
	}
	return nil, fmt.Errorf("operation %q: %w on a SOAP %s port", name, ErrNotFound, version)
}

func (d *Definitions) hasPort(name string) bool {
	for _, p := range d.ports {
		if p.name == name {
			return true
		}
	}
	return false
}

func findNamed(n *Node, space, local, name string) *Node {
	for _, c := range n.Elements(space, local) {
		if v, _ := c.AttrValue("name"); v == name {
			return c
		}
	}
	return nil
}

// soapNS is the binding extension namespace of a SOAP version.
func soapNS(version string) string {
	if version == SOAP12 {
		return NSSOAP12
	}
	return NSSOAP11
}

// compile builds the operation bop of port p.
func (d *Definitions) compile(p *port, bop *Node, name string) (*Operation, error) {
	ns := soapNS(p.version)
	op := &Operation{Name: name, Port: p.name, Version: p.version, Address: p.address, Style: "document"}
	if sb := p.binding.Element(ns, "binding"); sb != nil {
		if tr, _ := sb.AttrValue("transport"); tr != "" && tr != httpTransport {
			return nil, fmt.Errorf("port %s: transport %s is not SOAP over HTTP", p.name, tr)
		}
		if st, ok := sb.AttrValue("style"); ok {
			op.Style = st
		}
	}
	if so := bop.Element(ns, "operation"); so != nil {
		op.Action, _ = so.AttrValue("soapAction")
		if st, ok := so.AttrValue("style"); ok {
			op.Style = st
		}
	}
	if op.Style != "document" && op.Style != "rpc" {
		return nil, fmt.Errorf("operation %s: style %q is neither document nor rpc", name, op.Style)
	}
	ptName, _ := p.binding.AttrValue("type")
	ptq, err := p.binding.QName(ptName)
	if err != nil {
		return nil, fmt.Errorf("binding of port %s: type: %w", p.name, err)
	}
	pt, ok := d.portTypes[ptq]
	if !ok {
		return nil, fmt.Errorf("portType {%s}%s is not defined", ptq.Space, ptq.Local)
	}
	ptop := findNamed(pt, NSWSDL, "operation", name)
	if ptop == nil {
		return nil, fmt.Errorf("operation %s is bound but not in portType %s", name, ptq.Local)
	}
	in := ptop.Element(NSWSDL, "input")
	if in == nil {
		return nil, fmt.Errorf("operation %s has no input (notification operations cannot be called)", name)
	}
	if op.Input, err = d.message(op, in, bop.Element(NSWSDL, "input"), ns, name); err != nil {
		return nil, fmt.Errorf("operation %s: input: %w", name, err)
	}
	if out := ptop.Element(NSWSDL, "output"); out != nil {
		if op.Output, err = d.message(op, out, bop.Element(NSWSDL, "output"), ns, name+"Response"); err != nil {
			return nil, fmt.Errorf("operation %s: output: %w", name, err)
		}
	} else {
		op.Output = &Message{Content: &Type{}}
	}
	op.Faults = map[xml.Name]*Element{}
	for _, f := range ptop.Elements(NSWSDL, "fault") {
		m, _ := f.AttrValue("message")
		mq, err := f.QName(m)
		if err != nil {
			return nil, fmt.Errorf("operation %s: fault: %w", name, err)
		}
		mn, ok := d.messages[mq]
		if !ok {
			return nil, fmt.Errorf("operation %s: fault message {%s}%s is not defined", name, mq.Space, mq.Local)
		}
		for _, part := range mn.Elements(NSWSDL, "part") {
			if el, ok := part.AttrValue("element"); ok {
				eq, err := part.QName(el)
				if err != nil {
					return nil, err
				}
				e, err := d.schemas.global(eq)
				if err != nil {
					return nil, fmt.Errorf("operation %s: fault: %w", name, err)
				}
				op.Faults[e.Name] = e
			}
		}
	}
	return op, nil
}

// message compiles the abstract message of io (a portType input/output)
// as bound by bio (the binding's input/output, with its soap:body).
// wrapper is the rpc wrapper element's local name.
func (d *Definitions) message(op *Operation, io, bio *Node, ns, wrapper string) (*Message, error) {
	mname, _ := io.AttrValue("message")
	mq, err := io.QName(mname)
	if err != nil {
		return nil, err
	}
	mn, ok := d.messages[mq]
	if !ok {
		return nil, fmt.Errorf("message {%s}%s is not defined", mq.Space, mq.Local)
	}
	var body *Node
	if bio != nil {
		body = bio.Element(ns, "body")
	}
	var only map[string]bool
	bodyNS := d.TargetNamespace
	if body != nil {
		if use, _ := body.AttrValue("use"); use == "encoded" {
			return nil, errors.New(`use="encoded" (SOAP encoding) is not supported, only literal`)
		}
		if v, ok := body.AttrValue("namespace"); ok && v != "" {
			bodyNS = v
		}
		if v, ok := body.AttrValue("parts"); ok {
			only = map[string]bool{}
			for _, pn := range strings.Fields(v) {
				only[pn] = true
			}
		}
	}
	content := &Type{}
	for _, part := range mn.Elements(NSWSDL, "part") {
		pname, _ := part.AttrValue("name")
		if only != nil && !only[pname] {
			continue
		}
		var e *Element
		if el, ok := part.AttrValue("element"); ok {
			eq, err := part.QName(el)
			if err != nil {
				return nil, fmt.Errorf("part %s: %w", pname, err)
			}
			if e, err = d.schemas.global(eq); err != nil {
				return nil, fmt.Errorf("part %s: %w", pname, err)
			}
		} else if ty, ok := part.AttrValue("type"); ok {
			tq, err := part.QName(ty)
			if err != nil {
				return nil, fmt.Errorf("part %s: %w", pname, err)
			}
			t, err := d.schemas.typeByName(tq)
			if err != nil {
				return nil, fmt.Errorf("part %s: %w", pname, err)
			}
			if op.Style == "document" {
				return nil, fmt.Errorf("part %s names a type; a document-style message part must name an element", pname)
			}
			// rpc/literal part accessors are unqualified (WS-I BP 1.1 R2735).
			e = &Element{Name: xml.Name{Local: pname}, Type: t, Min: 1, Max: 1}
		} else {
			return nil, fmt.Errorf("part %s names neither an element nor a type", pname)
		}
		if content.Field(e.Name.Local) != nil {
			return nil, fmt.Errorf("two parts named %s", e.Name.Local)
		}
		content.Fields = append(content.Fields, e)
	}
	if op.Style == "rpc" {
		return &Message{Wrapper: xml.Name{Space: bodyNS, Local: wrapper}, Content: content, RPC: true}, nil
	}
	// document/literal with one element of complex type (the "wrapped"
	// convention and most services): the element is the Body's child and
	// the JSON object is its content.
	if len(content.Fields) == 1 && !content.Fields[0].Type.Simple {
		e := content.Fields[0]
		return &Message{Wrapper: e.Name, Content: e.Type}, nil
	}
	return &Message{Content: content}, nil
}
