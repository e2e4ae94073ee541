package config

import (
	"errors"
	"testing"
)

// FuzzDecodeConfig: whatever bytes arrive, decoding and validating either
// succeed or fail with a classified error naming fields; never a panic.
func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`{"services":[{"name":"s","targets":[{"url":"http://h:1"}]}],"routes":[{"name":"r","paths":["/a/{id}","/b/*"],"service":"s"}]}`))
	f.Add([]byte(`{"routes":[{"name":"r","paths":["/*"],"hosts":["*.x.io"],"methods":["get"],"service":"s","timeout":"1s"}]}`))
	f.Add([]byte(`{"services":[{"name":"s","targets":[{"url":"http://[::1]:80/p"}],"connect_timeout":"-1s"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Config
		if err := Decode(data, &c); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode error not classified: %v", err)
			}
			return
		}
		for i := range c.Routes {
			c.Routes[i].Normalize()
		}
		err := c.Validate()
		if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrConflict) {
			t.Fatalf("Validate error not classified: %v", err)
		}
		if err != nil && len(FieldErrors(err)) == 0 {
			t.Fatalf("Validate error without fields: %v", err)
		}
	})
}

// FuzzPathShape: an accepted pattern has a shape that is itself accepted and
// stable (shapes of shapes do not change), so equality of shapes is a sound
// test for "matches the same paths".
func FuzzPathShape(f *testing.F) {
	for _, s := range []string{"/", "/*", "/a/{id}/b", "/a/*", "/a/", "/{x}/{y}", "/a:b@c/~d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		shape, err := PathShape(p)
		if err != nil {
			return
		}
		again, err := PathShape(replaceEmptyParams(shape))
		if err != nil {
			t.Fatalf("shape %q of %q is not a valid pattern: %v", shape, p, err)
		}
		if again != shape {
			t.Fatalf("shape not stable: %q -> %q -> %q", p, shape, again)
		}
	})
}

// replaceEmptyParams turns "{}" back into named parameters.
func replaceEmptyParams(s string) string {
	out := []byte{}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '{' && i+1 < len(s) && s[i+1] == '}' {
			out = append(out, '{', 'p', byte('a'+n%26), byte('a'+n/26), '}')
			n++
			i++
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}
