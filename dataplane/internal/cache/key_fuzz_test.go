package cache

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// queryReaders are ways upstreams read a raw query: Go (and most form
// decoders), a reader that also splits on ';', and one that decodes like a
// path ('+' stays '+'). Each returns name → values in order.
var queryReaders = map[string]func(raw string) map[string][]string{
	"go": func(raw string) map[string][]string {
		v, _ := url.ParseQuery(raw) // pairs it cannot read are dropped
		return v
	},
	"semicolon": func(raw string) map[string][]string {
		return readPairs(raw, "&;", url.QueryUnescape)
	},
	"path": func(raw string) map[string][]string {
		return readPairs(raw, "&", url.PathUnescape)
	},
}

func readPairs(raw, seps string, unescape func(string) (string, error)) map[string][]string {
	m := map[string][]string{}
	for _, kv := range strings.FieldsFunc(raw, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
		k, v, _ := strings.Cut(kv, "=")
		if d, err := unescape(k); err == nil {
			k = d
		}
		if d, err := unescape(v); err == nil {
			v = d
		}
		m[k] = append(m[k], v)
	}
	return m
}

// keyedView is what a reader sees of the keyed parameters: only nil means
// all of them. Names are matched the way the key's filter folds them.
func keyedView(read func(string) map[string][]string, raw string, only map[string]bool) map[string][]string {
	m := read(raw)
	if only == nil {
		return m
	}
	for k := range m {
		if !only[foldName(k)] && !only[foldName(url.QueryEscape(k))] {
			delete(m, k)
		}
	}
	return m
}

// FuzzCacheKey checks the key builder: two requests share a primary key
// only when every upstream reader sees the same keyed parameters and the
// same authority, so no request part an upstream reads differently can put
// its answer in front of another request.
func FuzzCacheKey(f *testing.F) {
	for _, s := range [][2]string{
		{"a=1&b=2", "b=2&a=1"}, {"a=%41", "a=A"}, {"q=%zz", "q=%25zz"}, {"a=b+c", "a=b%20c"},
		{"id=1&x=1;id=2", "id=1"}, {"id=1&ID=2", "id=1"}, {"a=1;b=2", "a=1%3Bb=2"}, {"id[]=1", "id=1"},
	} {
		f.Add(s[0], s[1], "example.com", "example.com:1,evil.example", false)
		f.Add(s[0], s[1], "Example.com:80", "example.com", true)
	}
	f.Fuzz(func(t *testing.T, q1, q2, h1, h2 string, keyed bool) {
		spec := config.RouteCache{TTL: config.Duration(60e9)}
		if keyed {
			spec.KeyQuery = []string{"id", "q"}
		}
		p := Compile("r", 1, &spec)
		r1, r2 := &http.Request{Host: h1, URL: &url.URL{Path: "/", RawQuery: q1}, Header: http.Header{}},
			&http.Request{Host: h2, URL: &url.URL{Path: "/", RawQuery: q2}, Header: http.Header{}}
		k1, k2 := p.primaryKey(r1, ""), p.primaryKey(r2, "")
		if k1 != p.primaryKey(r1, "") {
			t.Fatal("the key of one request changed")
		}
		if k1 != k2 {
			return
		}
		if hostKey(r1) != hostKey(r2) {
			t.Fatalf("hosts %q and %q share a key", h1, h2)
		}
		for name, read := range queryReaders {
			if v1, v2 := keyedView(read, q1, p.keyQuery), keyedView(read, q2, p.keyQuery); !reflect.DeepEqual(v1, v2) {
				t.Fatalf("queries %q and %q share a key, but a %s reader sees %q and %q", q1, q2, name, v1, v2)
			}
		}
	})
}
