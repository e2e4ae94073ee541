package soap

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/portico-gw/portico/shared/wsdl"
)

// Envelope namespaces of the two SOAP versions, and XML Schema instance.
const (
	nsEnv11 = "http://schemas.xmlsoap.org/soap/envelope/"
	nsEnv12 = "http://www.w3.org/2003/05/soap-envelope"
	nsXSI   = "http://www.w3.org/2001/XMLSchema-instance"
)

// valueError is a value that does not fit the operation's input: where
// (a JSON pointer into the request's JSON, or a parameter) and why.
type valueError struct {
	pointer string
	param   string // "query parameter x" / "path parameter x", or ""
	msg     string
}

func (e *valueError) Error() string {
	if e.param != "" {
		return e.param + ": " + e.msg
	}
	if e.pointer == "" {
		return "the body: " + e.msg
	}
	return e.pointer + ": " + e.msg
}

// param is a value from the query or the path: text, converted to the
// field's type (a JSON body's values must already have the right JSON
// type).
type param struct {
	text   string
	source string
}

// input is the JSON form of a request: the body's object with the query's
// and then the path's parameters laid over its members.
func input(body []byte, query map[string][]string, path map[string]string, content *wsdl.Type) (map[string]any, error) {
	obj := map[string]any{}
	if len(bytes.TrimSpace(body)) > 0 {
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, &valueError{msg: "not valid JSON: " + err.Error()}
		}
		if _, err := d.Token(); err != io.EOF {
			return nil, &valueError{msg: "not valid JSON: data after the value"}
		}
		o, ok := v.(map[string]any)
		if !ok {
			return nil, &valueError{msg: "must be a JSON object"}
		}
		obj = o
	}
	// Parameters name top-level members; names no field has are ignored
	// (as on gRPC routes): a query may carry things for other stages.
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f := content.Field(k)
		if f == nil {
			continue
		}
		src := "query parameter " + strconv.Quote(k)
		if f.Many() {
			items := make([]any, len(query[k]))
			for i, v := range query[k] {
				items[i] = param{v, src}
			}
			obj[k] = items
		} else {
			obj[k] = param{query[k][len(query[k])-1], src}
		}
	}
	for k, v := range path {
		if f := content.Field(k); f != nil {
			src := "path parameter " + strconv.Quote(k)
			if f.Many() {
				obj[k] = []any{param{v, src}}
			} else {
				obj[k] = param{v, src}
			}
		}
	}
	return obj, nil
}

// encoder writes an input message as XML. Namespaces are declared where
// they change (xmlns="..." on the element), so unqualified local elements
// simply reset the default namespace.
type encoder struct {
	buf bytes.Buffer
}

// envelope writes the whole request: Envelope, optional Header, Body with
// the message built from obj.
func envelope(version string, header []byte, msg *wsdl.Message, obj map[string]any) ([]byte, error) {
	e := &encoder{}
	ns := nsEnv11
	if version == wsdl.SOAP12 {
		ns = nsEnv12
	}
	e.buf.WriteString(`<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="` + ns + `" xmlns:xsi="` + nsXSI + `">`)
	if len(header) > 0 {
		e.buf.WriteString("<soap:Header>")
		e.buf.Write(header)
		e.buf.WriteString("</soap:Header>")
	}
	e.buf.WriteString("<soap:Body>")
	if msg.Wrapper.Local != "" {
		e.open(msg.Wrapper, "")
		if err := e.fields(msg.Content, obj, "", msg.Wrapper.Space); err != nil {
			return nil, err
		}
		e.close(msg.Wrapper)
	} else if err := e.fields(msg.Content, obj, "", ""); err != nil {
		return nil, err
	}
	e.buf.WriteString("</soap:Body></soap:Envelope>")
	return e.buf.Bytes(), nil
}

// open writes a start tag for name where the default namespace is
// inScope.
func (e *encoder) open(name xml.Name, inScope string) {
	e.buf.WriteByte('<')
	e.buf.WriteString(name.Local)
	if name.Space != inScope {
		e.buf.WriteString(` xmlns="`)
		_ = xml.EscapeText(&e.buf, []byte(name.Space))
		e.buf.WriteByte('"')
	}
	e.buf.WriteByte('>')
}

func (e *encoder) close(name xml.Name) {
	e.buf.WriteString("</")
	e.buf.WriteString(name.Local)
	e.buf.WriteByte('>')
}

// fields writes the members of obj in t's field order, under a parent
// whose default namespace is inScope. Members no field describes are
// refused: a typo must not silently drop a value.
func (e *encoder) fields(t *wsdl.Type, obj map[string]any, ptr, inScope string) error {
	for k := range obj {
		if t.Field(k) == nil {
			return &valueError{pointer: ptr + "/" + escapePointer(k), msg: "no such field" + fieldList(t)}
		}
	}
	for _, f := range t.Fields {
		v, present := obj[f.Name.Local]
		p := ptr + "/" + escapePointer(f.Name.Local)
		if err := e.element(f, v, present, p, inScope); err != nil {
			return err
		}
	}
	return nil
}

func fieldList(t *wsdl.Type) string {
	if len(t.Fields) == 0 {
		return " (the type has none)"
	}
	names := make([]string, len(t.Fields))
	for i, f := range t.Fields {
		names[i] = f.Name.Local
	}
	return " (fields: " + strings.Join(names, ", ") + ")"
}

// element writes field f with value v (present: the member exists).
func (e *encoder) element(f *wsdl.Element, v any, present bool, ptr, inScope string) error {
	if !present {
		if f.Min > 0 {
			return &valueError{pointer: ptr, msg: "is required"}
		}
		return nil
	}
	if f.Many() {
		items, ok := v.([]any)
		if !ok {
			if v == nil && f.Min == 0 {
				return nil
			}
			return errAt(v, ptr, "must be an array (the element may occur more than once)")
		}
		if len(items) < f.Min {
			return &valueError{pointer: ptr, msg: fmt.Sprintf("needs at least %d items", f.Min)}
		}
		if f.Max != wsdl.Unbounded && len(items) > f.Max {
			return &valueError{pointer: ptr, msg: fmt.Sprintf("takes at most %d items", f.Max)}
		}
		for i, item := range items {
			if err := e.one(f, item, ptr+"/"+strconv.Itoa(i), inScope); err != nil {
				return err
			}
		}
		return nil
	}
	if _, isArray := v.([]any); isArray {
		return &valueError{pointer: ptr, msg: "takes one value, not an array"}
	}
	return e.one(f, v, ptr, inScope)
}

// one writes one occurrence of f.
func (e *encoder) one(f *wsdl.Element, v any, ptr, inScope string) error {
	if v == nil {
		if !f.Nillable {
			if f.Min == 0 && !f.Many() {
				return nil // null for an optional element: leave it out
			}
			return &valueError{pointer: ptr, msg: "may not be null"}
		}
		e.buf.WriteByte('<')
		e.buf.WriteString(f.Name.Local)
		if f.Name.Space != inScope {
			e.buf.WriteString(` xmlns="` + escAttr(f.Name.Space) + `"`)
		}
		e.buf.WriteString(` xsi:nil="true"/>`)
		return nil
	}
	t := f.Type
	if !t.Simple && t.Builtin != wsdl.AnyType {
		obj, ok := v.(map[string]any)
		if !ok {
			return errAt(v, ptr, "must be an object")
		}
		e.open(f.Name, inScope)
		if err := e.fields(t, obj, ptr, f.Name.Space); err != nil {
			return err
		}
		e.close(f.Name)
		return nil
	}
	text, err := scalar(t, v, ptr)
	if err != nil {
		return err
	}
	e.open(f.Name, inScope)
	_ = xml.EscapeText(&e.buf, []byte(text))
	e.close(f.Name)
	return nil
}

// scalar converts a JSON value (or a parameter's text) to the text of
// simple type t, checking it against the type.
func scalar(t *wsdl.Type, v any, ptr string) (string, error) {
	var s string
	switch x := v.(type) {
	case param:
		s = t.Collapse(x.text)
		if err := t.Check(s); err != nil {
			return "", &valueError{param: x.source, msg: err.Error()}
		}
		return s, nil
	case bool:
		if t.Builtin != wsdl.Boolean && t.Builtin != wsdl.AnyType {
			return "", &valueError{pointer: ptr, msg: "must be " + want(t) + ", not a boolean"}
		}
		s = strconv.FormatBool(x)
	case json.Number:
		if !t.Builtin.Numeric() && t.Builtin != wsdl.AnyType {
			return "", &valueError{pointer: ptr, msg: "must be " + want(t) + ", not a number"}
		}
		s = x.String()
		if t.Builtin == wsdl.Integer {
			// 1e3 and 5.0 are integers to JSON readers; XSD wants digits.
			if i, ok := integral(s); ok {
				s = i
			}
		}
	case string:
		if t.Builtin.Numeric() || t.Builtin == wsdl.Boolean {
			// A string where a number or boolean belongs is a client's
			// mistake the service should not have to reject; "INF" and
			// "NaN" are the exceptions JSON cannot write as numbers.
			if !(t.Builtin == wsdl.Float && (x == "INF" || x == "-INF" || x == "NaN")) {
				return "", &valueError{pointer: ptr, msg: "must be " + want(t) + ", not a string"}
			}
		}
		s = t.Collapse(x)
	case map[string]any, []any:
		return "", &valueError{pointer: ptr, msg: "must be " + want(t) + ", not an object or array"}
	default:
		return "", &valueError{pointer: ptr, msg: "unexpected value"}
	}
	if err := t.Check(s); err != nil {
		return "", &valueError{pointer: ptr, msg: err.Error()}
	}
	return s, nil
}

// integral writes an integral JSON number (1e3, 5.0) as digits.
func integral(s string) (string, bool) {
	if !strings.ContainsAny(s, ".eE") {
		return s, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != float64(int64(f)) || f > 1<<53 || f < -(1<<53) {
		return s, false
	}
	return strconv.FormatInt(int64(f), 10), true
}

// want names what a simple type takes, for messages.
func want(t *wsdl.Type) string {
	switch {
	case len(t.Enum) > 0:
		return "one of " + strings.Join(quoteAll(t.Enum), ", ")
	case t.Builtin == wsdl.Boolean:
		return "a boolean"
	case t.Builtin == wsdl.Integer:
		return "an integer"
	case t.Builtin.Numeric():
		return "a number"
	case t.Builtin == wsdl.Date:
		return "a date string (YYYY-MM-DD)"
	case t.Builtin == wsdl.DateTime:
		return "a date-time string"
	}
	return "a string"
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// errAt reports v (a parameter's source when it is one) at ptr.
func errAt(v any, ptr, msg string) error {
	if p, ok := v.(param); ok {
		return &valueError{param: p.source, msg: msg}
	}
	return &valueError{pointer: ptr, msg: msg}
}

// escapePointer escapes a member name for a JSON pointer (RFC 6901).
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func escAttr(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

var errNotSOAP = errors.New("not a SOAP envelope")
