package wsdl

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits bound what one XML document may cost to read. Every document the
// gateway reads (a WSDL, a schema, a SOAP answer) is parsed under limits:
// the sender is not trusted to be small or shallow.
type Limits struct {
	MaxBytes int // the document's size
	MaxDepth int // element nesting
	MaxNodes int // elements in all
}

// DocumentLimits bound one WSDL or schema document.
var DocumentLimits = Limits{MaxBytes: 4 << 20, MaxDepth: 64, MaxNodes: 200_000}

// ErrLimit is wrapped by errors of a document over its Limits.
var ErrLimit = errors.New("over the limit")

// xmlNS is the namespace the xml: prefix is bound to (XML Namespaces §3).
const xmlNS = "http://www.w3.org/XML/1998/namespace"

// Node is one element of a parsed document. Names carry namespace URIs, not
// prefixes; the prefixes declared on the element are kept only to resolve
// QName-valued attributes ("tns:GetQuote"), which XML leaves to the
// application.
type Node struct {
	Name     xml.Name
	Attr     []xml.Attr // without namespace declarations
	Children []*Node
	// Text is the character data directly inside the element (the text
	// between child elements, concatenated).
	Text   string
	Parent *Node
	ns     map[string]string // prefix ("" for the default) → URI declared here
	raw    xml.Name          // the name as written, to match its end tag
}

// ParseXML reads one document into a tree. It refuses, rather than
// interprets, every document type declaration (so no entity is ever
// declared, expanded or fetched: no XXE, no "billion laughs"), encodings
// other than UTF-8, undeclared prefixes, and documents over lim.
func ParseXML(data []byte, lim Limits) (*Node, error) {
	if len(data) > lim.MaxBytes {
		return nil, fmt.Errorf("document of %d bytes: %w (%d bytes)", len(data), ErrLimit, lim.MaxBytes)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	// The decoder knows the five predefined entities and character
	// references; with no Entity map and DOCTYPE refused below there is no
	// other entity it could expand.
	var root, cur *Node
	depth, nodes := 0, 0
	var text strings.Builder
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not well-formed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			nodes++
			if depth > lim.MaxDepth {
				return nil, fmt.Errorf("elements nested deeper than %d: %w", lim.MaxDepth, ErrLimit)
			}
			if nodes > lim.MaxNodes {
				return nil, fmt.Errorf("more than %d elements: %w", lim.MaxNodes, ErrLimit)
			}
			if cur == nil && root != nil {
				return nil, errors.New("not well-formed XML: more than one root element")
			}
			if cur != nil {
				cur.Text += text.String()
			}
			text.Reset()
			n, err := newNode(t, cur)
			if err != nil {
				return nil, err
			}
			if cur == nil {
				root = n
			} else {
				cur.Children = append(cur.Children, n)
			}
			cur = n
		case xml.EndElement:
			if cur == nil || t.Name != cur.raw {
				return nil, fmt.Errorf("not well-formed XML: unexpected end element </%s>", t.Name.Local)
			}
			cur.Text += text.String()
			text.Reset()
			cur = cur.Parent
			depth--
		case xml.CharData:
			if cur == nil {
				if len(bytes.TrimSpace(t)) > 0 {
					return nil, errors.New("not well-formed XML: text outside the root element")
				}
				continue
			}
			text.Write(t)
		case xml.Directive:
			return nil, errors.New("document type declarations (<!DOCTYPE>, <!ENTITY>) are refused")
		case xml.ProcInst:
			if t.Target == "xml" {
				if enc := procInstParam(string(t.Inst), "encoding"); enc != "" && !strings.EqualFold(enc, "utf-8") && !strings.EqualFold(enc, "utf8") {
					return nil, fmt.Errorf("encoding %q: only UTF-8 documents are read", enc)
				}
			}
		}
	}
	if root == nil {
		return nil, errors.New("not well-formed XML: no root element")
	}
	if cur != nil {
		return nil, errors.New("not well-formed XML: unclosed element")
	}
	return root, nil
}

// newNode builds the node of start element t (names still as prefixes,
// since RawToken is used so that declarations stay visible) under parent.
func newNode(t xml.StartElement, parent *Node) (*Node, error) {
	n := &Node{Parent: parent, raw: t.Name}
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			n.declare("", a.Value)
		case a.Name.Space == "xmlns":
			if a.Value == "" {
				return nil, fmt.Errorf("not well-formed XML: prefix %q undeclared with an empty namespace", a.Name.Local)
			}
			n.declare(a.Name.Local, a.Value)
		}
	}
	space, ok := n.Lookup(t.Name.Space)
	if !ok {
		return nil, fmt.Errorf("not well-formed XML: element <%s:%s> uses an undeclared prefix", t.Name.Space, t.Name.Local)
	}
	n.Name = xml.Name{Space: space, Local: t.Name.Local}
	for _, a := range t.Attr {
		if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
			continue
		}
		if a.Name.Space != "" {
			// Unprefixed attributes are in no namespace (not the default
			// one); prefixed ones in their prefix's.
			s, ok := n.Lookup(a.Name.Space)
			if !ok {
				return nil, fmt.Errorf("not well-formed XML: attribute %s:%s uses an undeclared prefix", a.Name.Space, a.Name.Local)
			}
			a.Name.Space = s
		}
		n.Attr = append(n.Attr, a)
	}
	return n, nil
}

func (n *Node) declare(prefix, uri string) {
	if n.ns == nil {
		n.ns = make(map[string]string, 2)
	}
	n.ns[prefix] = uri
}

// Lookup returns the namespace URI prefix is bound to where n is ("" is
// the default namespace, which is unbound unless declared).
func (n *Node) Lookup(prefix string) (string, bool) {
	switch prefix {
	case "xml":
		return xmlNS, true
	}
	for e := n; e != nil; e = e.Parent {
		if uri, ok := e.ns[prefix]; ok {
			return uri, true
		}
	}
	return "", prefix == ""
}

// QName resolves a QName-valued attribute value ("tns:GetQuote", or an
// unprefixed name in the default namespace) where n is.
func (n *Node) QName(v string) (xml.Name, error) {
	v = strings.TrimSpace(v)
	prefix, local, ok := strings.Cut(v, ":")
	if !ok {
		prefix, local = "", v
	}
	if local == "" || strings.ContainsAny(local, ": \t\n") {
		return xml.Name{}, fmt.Errorf("%q is not a qualified name", v)
	}
	uri, found := n.Lookup(prefix)
	if !found {
		return xml.Name{}, fmt.Errorf("%q: prefix %q is not declared", v, prefix)
	}
	return xml.Name{Space: uri, Local: local}, nil
}

// AttrValue returns the value of the attribute local in no namespace.
func (n *Node) AttrValue(local string) (string, bool) {
	for _, a := range n.Attr {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// AttrNS returns the value of the attribute {space}local.
func (n *Node) AttrNS(space, local string) (string, bool) {
	for _, a := range n.Attr {
		if a.Name.Space == space && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// Elements returns n's children named {space}local.
func (n *Node) Elements(space, local string) []*Node {
	var out []*Node
	for _, c := range n.Children {
		if c.Name.Space == space && c.Name.Local == local {
			out = append(out, c)
		}
	}
	return out
}

// Element returns n's first child named {space}local, or nil.
func (n *Node) Element(space, local string) *Node {
	for _, c := range n.Children {
		if c.Name.Space == space && c.Name.Local == local {
			return c
		}
	}
	return nil
}

// procInstParam reads a pseudo-attribute of the XML declaration.
func procInstParam(inst, name string) string {
	i := strings.Index(inst, name)
	if i < 0 {
		return ""
	}
	rest := strings.TrimLeft(inst[i+len(name):], " \t\r\n")
	if !strings.HasPrefix(rest, "=") {
		return ""
	}
	rest = strings.TrimLeft(rest[1:], " \t\r\n")
	if rest == "" || (rest[0] != '"' && rest[0] != '\'') {
		return ""
	}
	q := rest[0]
	if j := strings.IndexByte(rest[1:], q); j >= 0 {
		return rest[1 : 1+j]
	}
	return ""
}
