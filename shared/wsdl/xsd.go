package wsdl

import (
	"encoding/xml"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Unbounded is an Element's Max for maxOccurs="unbounded".
const Unbounded = -1

// maxTypes bounds the types and elements one WSDL may make the gateway
// resolve: schemas are input, and a hostile one must not cost unbounded
// work.
const maxTypes = 20_000

// Type is a compiled XSD type: a simple type (Simple: a Builtin, an
// integer type's bounds, an enumeration) or a complex one (Fields: its
// child elements in document order, a base type's first). Attributes are
// not modelled (see the package documentation). Types may refer to
// themselves through their fields (a tree of nodes).
type Type struct {
	Name    xml.Name // zero for an anonymous type
	Simple  bool
	Builtin Builtin
	Enum    []string
	Fields  []*Element
	// Open: xs:any or anyType content: children no field describes are
	// kept (as untyped JSON) rather than refused.
	Open     bool
	min, max *big.Int
}

// Element is an element declaration where it is used: its name (Space is
// "" for an unqualified local element), type and occurrence.
type Element struct {
	Name     xml.Name
	Type     *Type
	Min, Max int // Max is Unbounded for maxOccurs="unbounded"
	Nillable bool
}

// Many tells whether the element may occur more than once: such an element
// is always a JSON array, whatever the count in one message.
func (e *Element) Many() bool { return e.Max == Unbounded || e.Max > 1 }

// Field returns the field of t whose local name is local, or nil.
func (t *Type) Field(local string) *Element {
	for _, f := range t.Fields {
		if f.Name.Local == local {
			return f
		}
	}
	return nil
}

// schema is one xs:schema element and what governs the names it declares.
type schema struct {
	node      *Node
	tns       string
	qualified bool // elementFormDefault="qualified"
	location  string
}

// decl is a global declaration and the schema it is in.
type decl struct {
	node *Node
	s    *schema
}

// schemaSet holds every schema of a WSDL and resolves names on demand.
type schemaSet struct {
	elements map[xml.Name]decl
	types    map[xml.Name]decl
	groups   map[xml.Name]decl
	resolved map[xml.Name]*Type
	elems    map[xml.Name]*Element
	work     int
}

func newSchemaSet() *schemaSet {
	return &schemaSet{
		elements: map[xml.Name]decl{},
		types:    map[xml.Name]decl{},
		groups:   map[xml.Name]decl{},
		resolved: map[xml.Name]*Type{},
		elems:    map[xml.Name]*Element{},
	}
}

// add indexes the global declarations of s.
func (ss *schemaSet) add(s *schema) error {
	for _, c := range s.node.Children {
		if c.Name.Space != XSD {
			continue
		}
		name, _ := c.AttrValue("name")
		var m map[xml.Name]decl
		switch c.Name.Local {
		case "element":
			m = ss.elements
		case "complexType", "simpleType":
			m = ss.types
		case "group":
			m = ss.groups
		default:
			continue
		}
		if name == "" {
			return fmt.Errorf("%s: a global xs:%s without a name", s.location, c.Name.Local)
		}
		qn := xml.Name{Space: s.tns, Local: name}
		if prev, dup := m[qn]; dup && prev.node != c {
			// The same schema reached twice (imported by two documents)
			// declares the same names again; only a different document
			// is a conflict.
			if prev.s.location == s.location {
				continue
			}
			return fmt.Errorf("%s: %s {%s}%s is declared twice (also in %s)", s.location, c.Name.Local, s.tns, name, prev.s.location)
		}
		m[qn] = decl{node: c, s: s}
	}
	return nil
}

func (ss *schemaSet) spend() error {
	ss.work++
	if ss.work > maxTypes {
		return fmt.Errorf("more than %d types and elements to resolve: %w", maxTypes, ErrLimit)
	}
	return nil
}

// typeByName resolves a named type.
func (ss *schemaSet) typeByName(n xml.Name) (*Type, error) {
	if t, ok := ss.resolved[n]; ok {
		return t, nil
	}
	if n.Space == XSD {
		t := builtinType(n.Local)
		if t == nil {
			return nil, fmt.Errorf("xs:%s is not an XML Schema built-in type", n.Local)
		}
		ss.resolved[n] = t
		return t, nil
	}
	if n.Space == NSSOAPEnc {
		return nil, fmt.Errorf("type {%s}%s: SOAP encoding (rpc/encoded) is not supported, only literal", n.Space, n.Local)
	}
	d, ok := ss.types[n]
	if !ok {
		return nil, fmt.Errorf("type {%s}%s is not defined", n.Space, n.Local)
	}
	if err := ss.spend(); err != nil {
		return nil, err
	}
	t := &Type{Name: n}
	ss.resolved[n] = t // before filling: a type may refer to itself
	if err := ss.fill(t, d.node, d.s); err != nil {
		delete(ss.resolved, n)
		return nil, err
	}
	return t, nil
}

// fill compiles a simpleType or complexType node into t.
func (ss *schemaSet) fill(t *Type, n *Node, s *schema) error {
	switch n.Name.Local {
	case "simpleType":
		return ss.fillSimple(t, n, s)
	case "complexType":
		return ss.fillComplex(t, n, s)
	}
	return fmt.Errorf("xs:%s is not a type", n.Name.Local)
}

func (ss *schemaSet) fillSimple(t *Type, n *Node, s *schema) error {
	t.Simple = true
	for _, c := range n.Children {
		if c.Name.Space != XSD {
			continue
		}
		switch c.Name.Local {
		case "restriction":
			base, err := ss.baseOrInline(c, s)
			if err != nil {
				return err
			}
			if !base.Simple {
				return fmt.Errorf("simple type %s restricts a complex type", t.describe())
			}
			t.Builtin, t.min, t.max, t.Enum = base.Builtin, base.min, base.max, base.Enum
			var enum []string
			for _, f := range c.Children {
				if f.Name.Space == XSD && f.Name.Local == "enumeration" {
					v, _ := f.AttrValue("value")
					enum = append(enum, v)
				}
			}
			if enum != nil {
				t.Enum = enum
			}
			return nil
		case "list", "union":
			t.Builtin = String
			return nil
		}
	}
	return fmt.Errorf("simple type %s has no restriction, list or union", t.describe())
}

// baseOrInline is the base type of a restriction or extension: its base
// attribute, or an inline simpleType.
func (ss *schemaSet) baseOrInline(n *Node, s *schema) (*Type, error) {
	if b, ok := n.AttrValue("base"); ok {
		qn, err := n.QName(b)
		if err != nil {
			return nil, err
		}
		return ss.typeByName(qn)
	}
	if st := n.Element(XSD, "simpleType"); st != nil {
		t := &Type{}
		return t, ss.fillSimple(t, st, s)
	}
	return nil, errors.New("a restriction without a base")
}

func (ss *schemaSet) fillComplex(t *Type, n *Node, s *schema) error {
	if m, _ := n.AttrValue("mixed"); m == "true" {
		t.Open = true
	}
	for _, c := range n.Children {
		if c.Name.Space != XSD {
			continue
		}
		switch c.Name.Local {
		case "sequence", "all", "choice", "group":
			if err := ss.particle(t, c, s, false, false); err != nil {
				return err
			}
		case "complexContent":
			for _, d := range c.Children {
				if d.Name.Space != XSD || (d.Name.Local != "extension" && d.Name.Local != "restriction") {
					continue
				}
				b, _ := d.AttrValue("base")
				qn, err := d.QName(b)
				if err != nil {
					return err
				}
				if qn.Space == NSSOAPEnc {
					return fmt.Errorf("type %s: SOAP-encoded arrays (rpc/encoded) are not supported, only literal", t.describe())
				}
				base, err := ss.typeByName(qn)
				if err != nil {
					return err
				}
				if d.Name.Local == "extension" {
					if base.Simple {
						return fmt.Errorf("type %s: complexContent extends simple type %s", t.describe(), base.describe())
					}
					t.Fields = append(t.Fields, base.Fields...)
					t.Open = t.Open || base.Open
				}
				for _, p := range d.Children {
					if p.Name.Space == XSD && (p.Name.Local == "sequence" || p.Name.Local == "all" || p.Name.Local == "choice" || p.Name.Local == "group") {
						if err := ss.particle(t, p, s, false, false); err != nil {
							return err
						}
					}
				}
			}
		case "simpleContent":
			// Attributes are not modelled, so an element of simple
			// content is its text.
			for _, d := range c.Children {
				if d.Name.Space == XSD && (d.Name.Local == "extension" || d.Name.Local == "restriction") {
					base, err := ss.baseOrInline(d, s)
					if err != nil {
						return err
					}
					t.Simple, t.Builtin, t.min, t.max, t.Enum = true, base.Builtin, base.min, base.max, base.Enum
					if !base.Simple {
						t.Builtin = String
					}
				}
			}
		}
	}
	return nil
}

// particle adds the elements of a sequence, all, choice or group reference
// to t. optional: the particle sits in a choice or may be absent; many: it
// may repeat, so each of its elements may too.
func (ss *schemaSet) particle(t *Type, n *Node, s *schema, optional, many bool) error {
	if err := ss.spend(); err != nil {
		return err
	}
	lo, hi, err := occurs(n)
	if err != nil {
		return err
	}
	optional = optional || lo == 0
	many = many || hi == Unbounded || hi > 1
	if n.Name.Local == "group" {
		ref, ok := n.AttrValue("ref")
		if !ok {
			return errors.New("a local xs:group without ref")
		}
		qn, err := n.QName(ref)
		if err != nil {
			return err
		}
		g, ok := ss.groups[qn]
		if !ok {
			return fmt.Errorf("group {%s}%s is not defined", qn.Space, qn.Local)
		}
		for _, c := range g.node.Children {
			if c.Name.Space == XSD && (c.Name.Local == "sequence" || c.Name.Local == "all" || c.Name.Local == "choice") {
				if err := ss.particle(t, c, g.s, optional, many); err != nil {
					return err
				}
			}
		}
		return nil
	}
	inChoice := n.Name.Local == "choice"
	for _, c := range n.Children {
		if c.Name.Space != XSD {
			continue
		}
		switch c.Name.Local {
		case "element":
			e, err := ss.local(c, s)
			if err != nil {
				return err
			}
			if optional || inChoice {
				e.Min = 0
			}
			if many && e.Max != Unbounded {
				e.Max = Unbounded
			}
			if t.Field(e.Name.Local) != nil {
				return fmt.Errorf("type %s has two elements named %s; JSON could not tell them apart", t.describe(), e.Name.Local)
			}
			t.Fields = append(t.Fields, e)
		case "sequence", "choice", "all", "group":
			if err := ss.particle(t, c, s, optional || inChoice, many); err != nil {
				return err
			}
		case "any":
			t.Open = true
		}
	}
	return nil
}

// occurs reads minOccurs and maxOccurs (both default 1).
func occurs(n *Node) (lo, hi int, err error) {
	lo, hi = 1, 1
	if v, ok := n.AttrValue("minOccurs"); ok {
		if lo, err = strconv.Atoi(strings.TrimSpace(v)); err != nil || lo < 0 {
			return 0, 0, fmt.Errorf("minOccurs %q is not a count", v)
		}
	}
	if v, ok := n.AttrValue("maxOccurs"); ok {
		v = strings.TrimSpace(v)
		if v == "unbounded" {
			return lo, Unbounded, nil
		}
		if hi, err = strconv.Atoi(v); err != nil || hi < 0 {
			return 0, 0, fmt.Errorf("maxOccurs %q is not a count", v)
		}
	}
	return lo, hi, nil
}

// local compiles an element declaration inside a type (or a reference to a
// global one).
func (ss *schemaSet) local(n *Node, s *schema) (*Element, error) {
	lo, hi, err := occurs(n)
	if err != nil {
		return nil, err
	}
	if ref, ok := n.AttrValue("ref"); ok {
		qn, err := n.QName(ref)
		if err != nil {
			return nil, err
		}
		g, err := ss.global(qn)
		if err != nil {
			return nil, err
		}
		e := *g
		e.Min, e.Max = lo, hi
		return &e, nil
	}
	name, _ := n.AttrValue("name")
	if name == "" {
		return nil, errors.New("a local xs:element without name or ref")
	}
	qualified := s.qualified
	if f, ok := n.AttrValue("form"); ok {
		qualified = f == "qualified"
	}
	e := &Element{Name: xml.Name{Local: name}, Min: lo, Max: hi}
	if qualified {
		e.Name.Space = s.tns
	}
	return e, ss.elementType(e, n, s)
}

// global resolves a global element declaration.
func (ss *schemaSet) global(n xml.Name) (*Element, error) {
	if e, ok := ss.elems[n]; ok {
		return e, nil
	}
	d, ok := ss.elements[n]
	if !ok {
		return nil, fmt.Errorf("element {%s}%s is not defined", n.Space, n.Local)
	}
	if err := ss.spend(); err != nil {
		return nil, err
	}
	e := &Element{Name: n, Min: 1, Max: 1}
	ss.elems[n] = e // before its type: the type may contain the element
	if err := ss.elementType(e, d.node, d.s); err != nil {
		delete(ss.elems, n)
		return nil, err
	}
	return e, nil
}

// elementType sets e's type from n's type attribute or inline type
// (anyType without either), and its nillable flag.
func (ss *schemaSet) elementType(e *Element, n *Node, s *schema) error {
	if v, _ := n.AttrValue("nillable"); v == "true" || v == "1" {
		e.Nillable = true
	}
	if v, ok := n.AttrValue("type"); ok {
		qn, err := n.QName(v)
		if err != nil {
			return err
		}
		t, err := ss.typeByName(qn)
		if err != nil {
			return fmt.Errorf("element %s: %w", e.Name.Local, err)
		}
		e.Type = t
		return nil
	}
	for _, c := range n.Children {
		if c.Name.Space == XSD && (c.Name.Local == "complexType" || c.Name.Local == "simpleType") {
			if err := ss.spend(); err != nil {
				return err
			}
			t := &Type{}
			if err := ss.fill(t, c, s); err != nil {
				return fmt.Errorf("element %s: %w", e.Name.Local, err)
			}
			e.Type = t
			return nil
		}
	}
	e.Type = builtinType("anyType")
	return nil
}

func xmlName(space, local string) xml.Name { return xml.Name{Space: space, Local: local} }
