package soap

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/portico-gw/portico/shared/wsdl"
)

// responseLimits bound a service's answer: it is parsed whole, so its size
// is capped before parsing (maxResponse) and its shape while parsing.
var responseLimits = wsdl.Limits{MaxBytes: maxResponse, MaxDepth: 128, MaxNodes: 1_000_000}

// maxResponse caps the answer read from a service.
const maxResponse = 16 << 20

// answer is a parsed SOAP answer: the Body's content, or a Fault.
type answer struct {
	body  *wsdl.Node
	fault *fault
}

// fault is a SOAP Fault in either version's shape.
type fault struct {
	code   string // faultcode (1.1) or Code/Value (1.2), prefix dropped; subcodes after a dot
	client bool   // the fault blames the request (Client / Sender)
	reason string // faultstring / Reason/Text
	actor  string
	detail *wsdl.Node
}

// parseAnswer reads an answer of the given SOAP version: an Envelope with a
// Body, whose first child may be a Fault.
func parseAnswer(data []byte, version string) (*answer, error) {
	root, err := wsdl.ParseXML(data, responseLimits)
	if err != nil {
		return nil, err
	}
	ns := nsEnv11
	if version == wsdl.SOAP12 {
		ns = nsEnv12
	}
	if root.Name.Local != "Envelope" || (root.Name.Space != nsEnv11 && root.Name.Space != nsEnv12) {
		return nil, errNotSOAP
	}
	if root.Name.Space != ns {
		return nil, fmt.Errorf("a SOAP %s envelope answered a SOAP %s request", otherVersion(version), version)
	}
	body := root.Element(ns, "Body")
	if body == nil {
		return nil, fmt.Errorf("%w: the envelope has no Body", errNotSOAP)
	}
	if f := body.Element(ns, "Fault"); f != nil {
		return &answer{fault: readFault(f, version)}, nil
	}
	return &answer{body: body}, nil
}

func otherVersion(v string) string {
	if v == wsdl.SOAP12 {
		return wsdl.SOAP11
	}
	return wsdl.SOAP12
}

func readFault(f *wsdl.Node, version string) *fault {
	out := &fault{}
	if version == wsdl.SOAP12 {
		var codes []string
		for c := f.Element(nsEnv12, "Code"); c != nil; c = c.Element(nsEnv12, "Subcode") {
			if v := c.Element(nsEnv12, "Value"); v != nil {
				codes = append(codes, localPart(v.Text))
			}
		}
		out.code = strings.Join(codes, ".")
		out.client = len(codes) > 0 && codes[0] == "Sender"
		if r := f.Element(nsEnv12, "Reason"); r != nil {
			if t := r.Element(nsEnv12, "Text"); t != nil {
				out.reason = strings.TrimSpace(t.Text)
			}
		}
		if r := f.Element(nsEnv12, "Role"); r != nil {
			out.actor = strings.TrimSpace(r.Text)
		}
		out.detail = f.Element(nsEnv12, "Detail")
		return out
	}
	// SOAP 1.1's children are unqualified.
	for _, c := range f.Children {
		switch c.Name.Local {
		case "faultcode":
			out.code = localPart(c.Text)
		case "faultstring":
			out.reason = strings.TrimSpace(c.Text)
		case "faultactor":
			out.actor = strings.TrimSpace(c.Text)
		case "detail":
			out.detail = c
		}
	}
	first, _, _ := strings.Cut(out.code, ".")
	out.client = first == "Client"
	return out
}

// localPart drops a QName's prefix ("soap:Client.Auth" → "Client.Auth").
func localPart(s string) string {
	s = strings.TrimSpace(s)
	if _, l, ok := strings.Cut(s, ":"); ok {
		return l
	}
	return s
}

// jsonWriter writes JSON typed by a schema, members in field order.
type jsonWriter struct {
	buf bytes.Buffer
}

// message writes the answer's content as the output message's JSON.
func messageJSON(body *wsdl.Node, msg *wsdl.Message) ([]byte, error) {
	w := &jsonWriter{}
	n := body
	if msg.Wrapper.Local != "" {
		n = nil
		for _, c := range body.Children {
			if c.Name.Local == msg.Wrapper.Local {
				n = c
				break
			}
		}
		if n == nil && msg.RPC && len(body.Children) == 1 {
			n = body.Children[0]
		}
		if n == nil {
			return nil, fmt.Errorf("the answer's Body has no %s element", msg.Wrapper.Local)
		}
	}
	w.object(n, msg.Content, 0)
	return w.buf.Bytes(), nil
}

// object writes element n's children as an object typed by t: declared
// fields first, in order (an element that may repeat always as an array,
// empty when absent), then undeclared children, untyped.
func (w *jsonWriter) object(n *wsdl.Node, t *wsdl.Type, depth int) {
	w.buf.WriteByte('{')
	first := true
	member := func(name string) {
		if !first {
			w.buf.WriteByte(',')
		}
		first = false
		writeString(&w.buf, name)
		w.buf.WriteByte(':')
	}
	for _, f := range t.Fields {
		var items []*wsdl.Node
		for _, c := range n.Children {
			if c.Name.Local == f.Name.Local {
				items = append(items, c)
			}
		}
		switch {
		case f.Many():
			member(f.Name.Local)
			w.buf.WriteByte('[')
			for i, c := range items {
				if i > 0 {
					w.buf.WriteByte(',')
				}
				w.value(c, f.Type, depth+1)
			}
			w.buf.WriteByte(']')
		case len(items) > 0:
			member(f.Name.Local)
			w.value(items[0], f.Type, depth+1)
		}
	}
	// Children no field declares (xs:any, or a service newer than its
	// WSDL): kept, untyped, rather than lost.
	var extra []string
	groups := map[string][]*wsdl.Node{}
	for _, c := range n.Children {
		if t.Field(c.Name.Local) != nil {
			continue
		}
		if _, ok := groups[c.Name.Local]; !ok {
			extra = append(extra, c.Name.Local)
		}
		groups[c.Name.Local] = append(groups[c.Name.Local], c)
	}
	for _, name := range extra {
		member(name)
		g := groups[name]
		if len(g) == 1 {
			w.untyped(g[0], depth+1)
			continue
		}
		w.buf.WriteByte('[')
		for i, c := range g {
			if i > 0 {
				w.buf.WriteByte(',')
			}
			w.untyped(c, depth+1)
		}
		w.buf.WriteByte(']')
	}
	w.buf.WriteByte('}')
}

// value writes one element typed by t.
func (w *jsonWriter) value(n *wsdl.Node, t *wsdl.Type, depth int) {
	if nil, _ := n.AttrNS(nsXSI, "nil"); nil == "true" || nil == "1" {
		w.buf.WriteString("null")
		return
	}
	if !t.Simple {
		if t.Builtin == wsdl.AnyType && len(t.Fields) == 0 {
			w.untyped(n, depth)
			return
		}
		w.object(n, t, depth)
		return
	}
	s := t.Collapse(n.Text)
	switch {
	case t.Builtin == wsdl.Boolean && (s == "true" || s == "1"):
		w.buf.WriteString("true")
	case t.Builtin == wsdl.Boolean && (s == "false" || s == "0"):
		w.buf.WriteString("false")
	case t.Builtin.Numeric():
		if num, ok := jsonNumber(s); ok {
			w.buf.WriteString(num)
			return
		}
		writeString(&w.buf, s)
	default:
		writeString(&w.buf, s)
	}
}

// untyped writes an element no schema describes: its text, or an object
// of its children.
func (w *jsonWriter) untyped(n *wsdl.Node, depth int) {
	if nil, _ := n.AttrNS(nsXSI, "nil"); nil == "true" {
		w.buf.WriteString("null")
		return
	}
	if len(n.Children) == 0 {
		writeString(&w.buf, strings.TrimSpace(n.Text))
		return
	}
	w.object(n, &wsdl.Type{}, depth)
}

var reJSONNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// jsonNumber writes an XSD number as a JSON number when it has one
// (INF and NaN have not; leading "+", leading zeros and bare dots are
// rewritten).
func jsonNumber(s string) (string, bool) {
	if reJSONNumber.MatchString(s) {
		return s, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", false
	}
	t := strings.TrimPrefix(s, "+")
	neg := strings.HasPrefix(t, "-")
	t = strings.TrimPrefix(t, "-")
	t = strings.TrimLeft(t, "0")
	if strings.HasPrefix(t, ".") || t == "" || t[0] == 'e' || t[0] == 'E' {
		t = "0" + t
	}
	t = strings.TrimSuffix(t, ".")
	t = strings.Replace(strings.Replace(t, ".e", ".0e", 1), ".E", ".0E", 1)
	if neg {
		t = "-" + t
	}
	if reJSONNumber.MatchString(t) {
		return t, true
	}
	return strconv.FormatFloat(f, 'g', -1, 64), true
}

// writeString writes s as a JSON string: directly when nothing in it needs
// escaping (most text), through encoding/json otherwise.
func writeString(b *bytes.Buffer, s string) {
	plain := utf8.ValidString(s)
	for i := 0; plain && i < len(s); i++ {
		c := s[i]
		plain = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' && c != 0xe2 // U+2028/9 start with 0xe2
	}
	if plain {
		b.WriteByte('"')
		b.WriteString(s)
		b.WriteByte('"')
		return
	}
	enc, _ := json.Marshal(s)
	b.Write(enc)
}

// detailJSON renders a fault's detail: each child typed by the fault
// element the WSDL declares under that name, else untyped.
func detailJSON(d *wsdl.Node, faults map[xml.Name]*wsdl.Element) json.RawMessage {
	if d == nil {
		return nil
	}
	if len(d.Children) == 0 {
		if s := strings.TrimSpace(d.Text); s != "" {
			b, _ := json.Marshal(s)
			return b
		}
		return nil
	}
	t := &wsdl.Type{}
	for _, c := range d.Children {
		if e, ok := faults[c.Name]; ok && t.Field(e.Name.Local) == nil {
			t.Fields = append(t.Fields, e)
		}
	}
	w := &jsonWriter{}
	w.object(d, t, 0)
	return w.buf.Bytes()
}
