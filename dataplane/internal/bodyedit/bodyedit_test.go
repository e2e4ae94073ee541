package bodyedit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

func edits(t *testing.T, js string) []edit {
	t.Helper()
	var specs []config.BodyEdit
	if err := json.Unmarshal([]byte(js), &specs); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://127.0.0.1:1"}}}},
		Routes:   []*config.Route{{Name: "r", Paths: []string{"/"}, Service: "s", Body: &config.RouteBody{Request: specs}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	es := compileEdits(specs)
	if len(es) != len(specs) {
		t.Fatalf("compiled %d of %d", len(es), len(specs))
	}
	return es
}

// TestApply: the edits' semantics, one table; member order is kept.
func TestApply(t *testing.T) {
	for _, c := range []struct{ name, in, edits, want string }{
		{"set new", `{"a":1}`, `[{"op":"set","path":"/b","value":{"x":[1]}}]`, `{"a":1,"b":{"x":[1]}}`},
		{"set replaces in place", `{"a":1,"b":2,"c":3}`, `[{"op":"set","path":"/b","value":"two"}]`, `{"a":1,"b":"two","c":3}`},
		{"set creates objects", `{}`, `[{"op":"set","path":"/meta/source/name","value":"gw"}]`, `{"meta":{"source":{"name":"gw"}}}`},
		{"set array index", `{"l":[1,2,3]}`, `[{"op":"set","path":"/l/1","value":null}]`, `{"l":[1,null,3]}`},
		{"set append", `{"l":[1]}`, `[{"op":"set","path":"/l/-","value":2},{"op":"set","path":"/l/-","value":3}]`, `{"l":[1,2,3]}`},
		{"set append root", `[1]`, `[{"op":"set","path":"/-","value":2}]`, `[1,2]`},
		{"set through scalar", `{"a":1}`, `[{"op":"set","path":"/a/b","value":2}]`, `{"a":1}`},
		{"set missing index", `{"l":[]}`, `[{"op":"set","path":"/l/3","value":2}]`, `{"l":[]}`},
		{"remove", `{"a":1,"secret":{"k":1},"c":3}`, `[{"op":"remove","path":"/secret"}]`, `{"a":1,"c":3}`},
		{"remove absent", `{"a":1}`, `[{"op":"remove","path":"/x/y"}]`, `{"a":1}`},
		{"remove array element", `{"l":[1,2,3]}`, `[{"op":"remove","path":"/l/0"}]`, `{"l":[2,3]}`},
		{"remove root element", `[1,2,3]`, `[{"op":"remove","path":"/2"}]`, `[1,2]`},
		{"move", `{"user":{"id":7,"n":"a"}}`, `[{"op":"move","path":"/user/id","to":"/user_id"}]`, `{"user":{"n":"a"},"user_id":7}`},
		{"move absent", `{"a":1}`, `[{"op":"move","path":"/x","to":"/y"}]`, `{"a":1}`},
		{"move into array", `{"x":5,"l":[1]}`, `[{"op":"move","path":"/x","to":"/l/-"}]`, `{"l":[1,5]}`},
		{"rename keeps place", `{"a":1,"usr":2,"c":3}`, `[{"op":"rename","path":"/usr","to":"user"}]`, `{"a":1,"user":2,"c":3}`},
		{"rename nested", `{"o":{"x":1}}`, `[{"op":"rename","path":"/o/x","to":"y"}]`, `{"o":{"y":1}}`},
		{"rename over existing", `{"a":1,"b":2}`, `[{"op":"rename","path":"/a","to":"b"}]`, `{"b":1}`},
		{"escaped pointer", `{"a/b":1,"m~n":2}`, `[{"op":"remove","path":"/a~1b"},{"op":"rename","path":"/m~0n","to":"mn"}]`, `{"mn":2}`},
		{"numbers kept exactly", `{"big":12345678901234567890,"f":1.50}`, `[{"op":"set","path":"/x","value":1e400}]`, `{"big":12345678901234567890,"f":1.50,"x":1e400}`},
		{"order of edits", `{"a":1}`, `[{"op":"move","path":"/a","to":"/b"},{"op":"set","path":"/a","value":0}]`, `{"b":1,"a":0}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := apply([]byte(c.in), edits(t, c.edits))
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != c.want {
				t.Errorf("got  %s\nwant %s", out, c.want)
			}
		})
	}
	if _, err := apply([]byte(`{"a":`), nil); err == nil {
		t.Error("broken JSON accepted")
	}
	if _, err := apply([]byte(`{} {}`), nil); err == nil {
		t.Error("two values accepted")
	}
}

// TestSetValuesAreNotShared: a set value is copied per document, so an
// edit after it cannot change the compiled value (or another request's).
func TestSetValuesAreNotShared(t *testing.T) {
	es := edits(t, `[{"op":"set","path":"/o","value":{"l":[1]}},{"op":"set","path":"/o/l/-","value":2}]`)
	for range 2 {
		out, err := apply([]byte(`{}`), es)
		if err != nil || string(out) != `{"o":{"l":[1,2]}}` {
			t.Fatalf("%s %v", out, err)
		}
	}
}

func FuzzApply(f *testing.F) {
	f.Add([]byte(`{"a":{"b":[1,2,{"c":3}]},"d":"x"}`), "/a/b/2/c", "/d")
	f.Fuzz(func(t *testing.T, body []byte, p1, p2 string) {
		a, err1 := config.ParsePointer(p1)
		b, err2 := config.ParsePointer(p2)
		if err1 != nil || err2 != nil || len(a) == 0 || len(b) == 0 {
			return
		}
		es := []edit{{op: config.BodyMove, path: a, to: b}, {op: config.BodyRename, path: b, name: "r"},
			{op: config.BodySet, path: a, value: "v"}, {op: config.BodyRemove, path: b}}
		out, err := apply(body, es)
		if err == nil && !json.Valid(out) {
			t.Fatalf("invalid JSON %s", out)
		}
	})
}

// TestXML: plain XML ↔ JSON both ways, with the conventions of xml.go.
func TestXML(t *testing.T) {
	in := `<?xml version="1.0"?><o:order xmlns:o="urn:x" id="7"><item sku="a">one</item><item>two</item><note>  </note><total>3.50</total></o:order>`
	v, err := xmlToJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_ = encode(&b, v)
	want := `{"order":{"@id":"7","item":[{"@sku":"a","#text":"one"},"two"],"note":"","total":"3.50"}}`
	if b.String() != want {
		t.Errorf("got  %s\nwant %s", b.String(), want)
	}
	back, err := jsonToXML(v)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(back); s != `<?xml version="1.0" encoding="UTF-8"?><order id="7"><item sku="a">one</item><item>two</item><note></note><total>3.50</total></order>` {
		t.Errorf("back: %s", s)
	}
	for _, c := range []struct{ json, want string }{
		{`{"a":1,"b":2}`, "one member"},
		{`[1]`, "one member"},
		{`{"a":[1,2]}`, "root element cannot be an array"},
		{`{"a":{"x y":1}}`, `"x y" is not an XML element name`},
		{`{"a":{"@x":{"y":1}}}`, "attribute must be"},
		{`{"a":{"l":[[1]]}}`, "array in an array"},
		{`{"xmlfoo":1}`, "not an XML element name"},
	} {
		v, err := decode([]byte(c.json))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jsonToXML(v); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.json, err, c.want)
		}
	}
	if _, err := xmlToJSON([]byte(`<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>`)); err == nil {
		t.Error("DOCTYPE accepted")
	}
	out, _ := jsonToXML(mustDecode(t, `{"a":{"s":"<&>\"","n":null,"t":true,"#text":"x"}}`))
	if string(out) != `<?xml version="1.0" encoding="UTF-8"?><a><s>&lt;&amp;&gt;&#34;</s><n/><t>true</t>x</a>` {
		t.Errorf("escaping: %s", out)
	}
}

func mustDecode(t *testing.T, s string) any {
	t.Helper()
	v, err := decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// FuzzXMLToJSON: any XML answer converts to valid JSON or is refused.
func FuzzXMLToJSON(f *testing.F) {
	f.Add([]byte(`<a x="1"><b>t</b><b/><c>u<d/>v</c></a>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := xmlToJSON(data)
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := encode(&b, v); err != nil || !json.Valid(b.Bytes()) {
			t.Fatalf("%v %s", err, b.Bytes())
		}
	})
}
