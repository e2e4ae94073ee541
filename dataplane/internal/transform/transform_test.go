package transform

import (
	"net/url"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

type params map[string]string

func (p params) Param(name string) string { return p[name] }

func TestTemplateExpand(t *testing.T) {
	p := params{"id": "7", "*": "a/b", "q": "x y"}
	tests := []struct {
		tmpl string
		esc  func(string) string
		want string
	}{
		{"", nil, ""},
		{"/static", nil, "/static"},
		{"/v2/accounts/{id}", nil, "/v2/accounts/7"},
		{"/storage/{*}", nil, "/storage/a/b"},
		{"q={q}&id={id}", url.QueryEscape, "q=x+y&id=7"},
		{"{missing}-{id}", nil, "-7"},
	}
	for _, tt := range tests {
		tp := CompileTemplate(tt.tmpl)
		if got := tp.Expand(p, tt.esc); got != tt.want {
			t.Errorf("%q: %q, want %q", tt.tmpl, got, tt.want)
		}
		if _, static := tp.Static(); static != (tt.tmpl == "" || tt.tmpl == "/static") {
			t.Errorf("%q: static = %v", tt.tmpl, static)
		}
	}
}

func TestCORSOrigins(t *testing.T) {
	c := compileCORS(&config.CORS{AllowOrigins: []string{"https://app.example.com", "https://*.example.org"}}, nil)
	for origin, want := range map[string]bool{
		"https://app.example.com":        true,
		"HTTPS://APP.EXAMPLE.COM":        true,
		"https://a.example.org":          true,
		"https://a.b.example.org":        true,
		"https://example.org":            false, // the wildcard needs a label
		"http://a.example.org":           false,
		"https://evil.com/.example.org":  false,
		"https://a.example.org@evil.com": false,
		"":                               false,
	} {
		if got := c.allows(origin); got != want {
			t.Errorf("allows(%q) = %v, want %v", origin, got, want)
		}
	}
	if methods := c.methods; methods != "GET, HEAD, POST" {
		t.Errorf("default methods %q", methods)
	}
}
