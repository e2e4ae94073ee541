package authority

import (
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		raw  string
		tls  bool
		want string // "!" means refused
	}{
		{"shop.example", false, "shop.example"},
		{"Shop.EXAMPLE", false, "shop.example"},
		{"shop.example.", false, "shop.example"},
		{"shop.example:80", false, "shop.example"},
		{"shop.example:443", true, "shop.example"},
		{"shop.example:443", false, "shop.example:443"},
		{"shop.example:8080", false, "shop.example:8080"},
		{"shop.example:08080", false, "shop.example:8080"},
		{"SHOP.example.:8080", false, "shop.example:8080"},
		{"127.0.0.1:9", false, "127.0.0.1:9"},
		{"under_score.example", false, "under_score.example"},
		{"[::1]", false, "[::1]"},
		{"[::1]:8080", false, "[::1]:8080"},
		{"[2001:DB8:0:0:0:0:0:1]:80", false, "[2001:db8::1]"},
		{"", false, ""},
		// The poisoning of issue 13: a port that is not a number.
		{"shop.example:1,evil.example", false, "!"},
		{"shop.example,evil.example", false, "!"},
		{"shop.example;evil.example", false, "!"},
		{"shop.example:", false, "!"},
		{"shop.example:0", false, "!"},
		{"shop.example:65536", false, "!"},
		{"shop.example:123456", false, "!"},
		{"shop.example:+80", false, "!"},
		{"shop.example:80:80", false, "!"},
		{"user@shop.example", false, "!"},
		{"shop.example/x", false, "!"},
		{"shop%2eexample", false, "!"},
		{"shop example", false, "!"},
		{"shop.example\x00", false, "!"},
		{".shop.example", false, "!"},
		{"shop..example", false, "!"},
		{".", false, "!"},
		{"0..", false, "!"},
		{":80", false, "!"},
		{"::1", false, "!"},
		{"[::1", false, "!"},
		{"[::1]x", false, "!"},
		{"[::1]:", false, "!"},
		{"[127.0.0.1]", false, "!"},
		{"[fe80::1%25eth0]", false, "!"},
		{"[v1.fe]", false, "!"},
		{strings.Repeat("a.", 126) + "ab", false, "!"}, // 254 bytes
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			def := PortHTTP
			if tt.tls {
				def = PortHTTPS
			}
			got, err := Normalize(tt.raw, def)
			if tt.want == "!" {
				if err == nil || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Normalize(%q) = %q, %v; want ErrInvalid", tt.raw, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
			}
		})
	}
}

func TestNormalizeDoesNotAllocateWhenNormal(t *testing.T) {
	for _, raw := range []string{"shop.example", "shop.example:8080", "[::1]:8080"} {
		if n := testing.AllocsPerRun(100, func() { _, _ = Normalize(raw, PortHTTP) }); n != 0 {
			t.Errorf("Normalize(%q) allocates %v times", raw, n)
		}
	}
}

// FuzzNormalize checks Normalize against net/url's authority parser and
// against its own promises: whatever it accepts, url.Parse accepts with the
// same host and port; the result is normal (idempotent) and holds no byte
// that separates anything in a forwarded header.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"shop.example", "Shop.Example.:80", "shop.example:1,evil.example", "[::1]:443",
		"[2001:DB8::1]", "a:0", "a:65535", "a:65536", "a..b", "[fe80::1%25x]", "x@y", ""} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, tls bool) {
		def := PortHTTP
		if tls {
			def = PortHTTPS
		}
		got, err := Normalize(raw, def)
		if err != nil {
			if got != "" {
				t.Fatalf("Normalize(%q) returned %q with error %v", raw, got, err)
			}
			return
		}
		if raw == "" {
			if got != "" {
				t.Fatalf("Normalize(\"\") = %q", got)
			}
			return
		}
		if again, err := Normalize(got, def); err != nil || again != got {
			t.Fatalf("Normalize(%q) = %q, but Normalize of that = %q, %v", raw, got, again, err)
		}
		if strings.ContainsAny(got, ",;=@/?#%\\\"' \t\r\n\x00") || strings.ToLower(got) != got {
			t.Fatalf("Normalize(%q) = %q holds a separator or upper case", raw, got)
		}
		u, err := url.Parse("http://" + raw + "/")
		if err != nil {
			t.Fatalf("Normalize accepted %q, url.Parse refuses it: %v", raw, err)
		}
		wantHost := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		host, port, err := net.SplitHostPort(got)
		if err != nil {
			host, port = strings.Trim(got, "[]"), ""
		}
		if strings.Contains(host, ":") { // IPv6: compare as addresses
			if ip, want := net.ParseIP(host), net.ParseIP(wantHost); ip == nil || !ip.Equal(want) {
				t.Fatalf("Normalize(%q) host %q, url.Parse says %q", raw, host, wantHost)
			}
		} else if host != wantHost {
			t.Fatalf("Normalize(%q) host %q, url.Parse says %q", raw, host, wantHost)
		}
		wantPort := strings.TrimLeft(u.Port(), "0")
		if wantPort == strconv.Itoa(def) {
			wantPort = ""
		}
		if port != wantPort {
			t.Fatalf("Normalize(%q) port %q, url.Parse says %q", raw, port, wantPort)
		}
	})
}

func BenchmarkNormalize(b *testing.B) {
	for _, raw := range []string{"shop.example", "Shop.Example:80", "[2001:db8::1]:8443"} {
		b.Run(raw, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Normalize(raw, PortHTTP)
			}
		})
	}
}
