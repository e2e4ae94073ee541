package clientip

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestClientIP(t *testing.T) {
	r, err := Parse("10.0.0.0/8, 192.168.1.7")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer, XFF ignored", "203.0.113.9:1234", []string{"1.2.3.4"}, "203.0.113.9"},
		{"trusted peer, client from XFF", "10.1.2.3:80", []string{"198.51.100.7"}, "198.51.100.7"},
		{"spoofed left entries ignored", "10.1.2.3:80", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7"},
		{"chain of trusted proxies", "10.1.2.3:80", []string{"198.51.100.7, 192.168.1.7", "10.9.9.9"}, "198.51.100.7"},
		{"all trusted", "10.1.2.3:80", []string{"10.2.2.2"}, "10.2.2.2"},
		{"garbage stops the walk", "10.1.2.3:80", []string{"198.51.100.7, not-an-ip"}, "10.1.2.3"},
		{"no XFF", "10.1.2.3:80", nil, "10.1.2.3"},
		{"ipv6 peer", "[2001:db8::1]:443", []string{"1.2.3.4"}, "2001:db8::1"},
		{"mapped ipv4", "[::ffff:10.1.2.3]:80", []string{"198.51.100.7"}, "198.51.100.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &http.Request{RemoteAddr: tt.peer, Header: http.Header{}}
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			if got := r.ClientIP(req); got != tt.want {
				t.Fatalf("ClientIP = %q, want %q", got, tt.want)
			}
		})
	}
	var none *Resolver
	if got := none.ClientIP(&http.Request{RemoteAddr: "10.1.2.3:1", Header: http.Header{"X-Forwarded-For": {"1.1.1.1"}}}); got != "10.1.2.3" {
		t.Fatalf("nil resolver trusted XFF: %s", got)
	}
	if _, err := Parse("10.0.0.0/33"); err == nil {
		t.Fatal("bad CIDR accepted")
	}
}

func FuzzClientIP(f *testing.F) {
	r, _ := Parse("10.0.0.0/8")
	f.Add("10.0.0.1:1", "1.2.3.4, 10.0.0.2")
	f.Add("1.1.1.1:1", "")
	f.Fuzz(func(t *testing.T, peer, xff string) {
		req := &http.Request{RemoteAddr: peer, Header: http.Header{"X-Forwarded-For": {xff}}}
		_ = r.ClientIP(req)
	})
}

// TestScheme: X-Forwarded-Proto counts only from a trusted proxy, and the
// forwarded headers carry what Scheme decides.
func TestScheme(t *testing.T) {
	r, err := Parse("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		resolver *Resolver
		peer     string
		tls      bool
		proto    []string
		want     string
	}{
		{"plain, no header", r, "10.0.0.1:1", false, nil, "http"},
		{"own TLS listener", r, "192.0.2.1:1", true, nil, "https"},
		{"own TLS beats a header", r, "10.0.0.1:1", true, []string{"http"}, "https"},
		{"trusted proxy https", r, "10.0.0.1:1", false, []string{"https"}, "https"},
		{"trusted proxy, list: the client's first", r, "10.0.0.1:1", false, []string{" HTTPS ,http"}, "https"},
		{"trusted proxy, list starting with http", r, "10.0.0.1:1", false, []string{"http, https"}, "http"},
		{"trusted proxy, nonsense", r, "10.0.0.1:1", false, []string{"gopher"}, "http"},
		{"untrusted peer", r, "192.0.2.1:1", false, []string{"https"}, "http"},
		{"no trusted proxies", nil, "10.0.0.1:1", false, []string{"https"}, "http"},
		{"unparsable peer", r, "@", false, []string{"https"}, "http"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := httptest.NewRequest("GET", "/", nil)
			in.RemoteAddr = tc.peer
			if tc.tls {
				in.TLS = &tls.ConnectionState{}
			}
			if tc.proto != nil {
				in.Header["X-Forwarded-Proto"] = tc.proto
			}
			if got := tc.resolver.Scheme(in); got != tc.want {
				t.Fatalf("Scheme = %q, want %q", got, tc.want)
			}
			out := http.Header{"X-Forwarded-Proto": {"https"}}
			tc.resolver.SetForwarded(out, in)
			if got := out.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != tc.want {
				t.Fatalf("forwarded X-Forwarded-Proto %q, want %q", got, tc.want)
			}
		})
	}
}
