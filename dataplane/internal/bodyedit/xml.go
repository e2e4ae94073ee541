package bodyedit

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"

	"github.com/portico-gw/portico/shared/wsdl"
)

// Plain XML ↔ JSON, for services that speak XML without SOAP (no schema,
// so nothing is typed):
//
//	<order id="7"><item>a</item><item>b</item><note>x</note></order>
//	{"order":{"@id":"7","item":["a","b"],"note":"x"}}
//
// An element is its text when it has neither attributes nor children,
// else an object: attributes as "@name", children by local name (repeated
// siblings as an array, in document order), non-blank text as "#text".
// Namespace prefixes and declarations are dropped. The reverse writes the
// one member of the JSON object as the root element; arrays become
// repeated elements, null an empty element, numbers and booleans text.
// The answer is read with wsdl.ParseXML (no DOCTYPE, bounded).

// xmlLimits bound an XML answer converted to JSON.
var xmlLimits = wsdl.Limits{MaxBytes: maxResponse, MaxDepth: 128, MaxNodes: 1_000_000}

// xmlToJSON converts an XML document into the JSON form above.
func xmlToJSON(data []byte) (any, error) {
	root, err := wsdl.ParseXML(data, xmlLimits)
	if err != nil {
		return nil, err
	}
	o := &object{vals: map[string]any{}}
	o.set(root.Name.Local, nodeValue(root))
	return o, nil
}

func nodeValue(n *wsdl.Node) any {
	text := n.Text
	if strings.TrimSpace(text) == "" {
		text = ""
	}
	if len(n.Attr) == 0 && len(n.Children) == 0 {
		return text
	}
	o := &object{vals: map[string]any{}}
	for _, a := range n.Attr {
		o.set("@"+a.Name.Local, a.Value)
	}
	for _, c := range n.Children {
		v := nodeValue(c)
		// nodeValue never returns an array, so an array here is one of
		// repeated siblings.
		switch prev, ok := o.get(c.Name.Local); {
		case !ok:
			o.set(c.Name.Local, v)
		case isArray(prev):
			o.vals[c.Name.Local] = append(prev.([]any), v)
		default:
			o.vals[c.Name.Local] = []any{prev, v}
		}
	}
	if text != "" {
		o.set("#text", text)
	}
	return o
}

func isArray(v any) bool {
	_, ok := v.([]any)
	return ok
}

// jsonToXML writes a JSON value of the form above as an XML document.
func jsonToXML(v any) ([]byte, error) {
	o, ok := v.(*object)
	if !ok || len(o.keys) != 1 {
		return nil, fmt.Errorf("must be a JSON object with one member, the root element (%s)", `{"order":{...}}`)
	}
	name := o.keys[0]
	if _, isArr := o.vals[name].([]any); isArr {
		return nil, fmt.Errorf("/%s: the root element cannot be an array", escape(name))
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>`)
	if err := writeElement(&b, name, o.vals[name], "/"+escape(name)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeElement(b *bytes.Buffer, name string, v any, ptr string) error {
	if !validName(name) {
		return fmt.Errorf("%s: %q is not an XML element name", ptr, name)
	}
	switch v := v.(type) {
	case []any:
		for i, item := range v {
			if _, nested := item.([]any); nested {
				return fmt.Errorf("%s/%d: an array in an array has no XML form", ptr, i)
			}
			if err := writeElement(b, name, item, ptr+"/"+strconv.Itoa(i)); err != nil {
				return err
			}
		}
		return nil
	case nil:
		b.WriteString("<" + name + "/>")
		return nil
	case *object:
		b.WriteString("<" + name)
		for _, k := range v.keys {
			attr, ok := strings.CutPrefix(k, "@")
			if !ok {
				continue
			}
			if !validName(attr) {
				return fmt.Errorf("%s/%s: %q is not an XML attribute name", ptr, escape(k), attr)
			}
			s, err := scalarText(v.vals[k])
			if err != nil {
				return fmt.Errorf("%s/%s: an attribute %w", ptr, escape(k), err)
			}
			b.WriteString(" " + attr + `="`)
			_ = xml.EscapeText(b, []byte(s))
			b.WriteByte('"')
		}
		b.WriteByte('>')
		for _, k := range v.keys {
			switch {
			case strings.HasPrefix(k, "@"):
			case k == "#text":
				s, err := scalarText(v.vals[k])
				if err != nil {
					return fmt.Errorf("%s/%s: text %w", ptr, escape(k), err)
				}
				_ = xml.EscapeText(b, []byte(s))
			default:
				if err := writeElement(b, k, v.vals[k], ptr+"/"+escape(k)); err != nil {
					return err
				}
			}
		}
		b.WriteString("</" + name + ">")
		return nil
	default:
		s, err := scalarText(v)
		if err != nil {
			return fmt.Errorf("%s: %w", ptr, err)
		}
		b.WriteString("<" + name + ">")
		_ = xml.EscapeText(b, []byte(s))
		b.WriteString("</" + name + ">")
		return nil
	}
}

// scalarText is the text of a JSON scalar.
func scalarText(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("must be a string, number, boolean or null")
}

// validName accepts the XML names a JSON member can sensibly become: a
// letter or underscore, then letters, digits, '-', '_', '.' (no colon:
// namespaces are not written).
func validName(s string) bool {
	if s == "" || strings.HasPrefix(strings.ToLower(s), "xml") {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 0x7f && r != 0xfffd:
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return true
}

func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
