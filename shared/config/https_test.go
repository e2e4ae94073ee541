package config

import (
	"testing"
	"time"
)

func TestRouteHTTPSOptions(t *testing.T) {
	year := Duration(365 * 24 * time.Hour)
	cases := []struct {
		name   string
		edit   func(r *Route)
		fields []string
	}{
		{"redirect", func(r *Route) { r.HTTPSRedirect = true }, nil},
		{"redirect with a port", func(r *Route) { r.HTTPSRedirect, r.HTTPSPort = true, 8443 }, nil},
		{"port out of range", func(r *Route) { r.HTTPSRedirect, r.HTTPSPort = true, 70000 }, []string{"https_port"}},
		{"port without redirect", func(r *Route) { r.HTTPSPort = 8443 }, []string{"https_port"}},
		{"hsts", func(r *Route) { r.HSTS = &HSTS{MaxAge: year, IncludeSubdomains: true, Preload: true} }, nil},
		{"hsts zero clears", func(r *Route) { r.HSTS = &HSTS{} }, nil},
		{"hsts too long", func(r *Route) { r.HSTS = &HSTS{MaxAge: 3 * year} }, []string{"hsts.max_age"}},
		{"hsts fraction", func(r *Route) { r.HSTS = &HSTS{MaxAge: Duration(1500 * time.Millisecond)} }, []string{"hsts.max_age"}},
		{"preload without subdomains", func(r *Route) { r.HSTS = &HSTS{MaxAge: year, Preload: true} }, []string{"hsts.preload"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Route{Name: "r", Paths: []string{"/"}, Service: "s"}
			tc.edit(&r)
			var kind error
			if tc.fields != nil {
				kind = ErrInvalid
			}
			checkFields(t, r.Validate(), kind, tc.fields)
		})
	}
	if h := (&HSTS{MaxAge: year, IncludeSubdomains: true, Preload: true}).Header(); h != "max-age=31536000; includeSubDomains; preload" {
		t.Fatalf("header %q", h)
	}
}
