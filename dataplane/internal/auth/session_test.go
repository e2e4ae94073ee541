package auth

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

func testSealer(t *testing.T) *sealer {
	t.Helper()
	key, err := config.ParseSessionKey(config.NewSessionKey())
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSessionCookieCodec: a sealed session opens with the same key and
// name only; every changed byte, another key, another cookie name (a login
// cookie replayed as a session), a truncated or oversized value is refused;
// the value shows nothing of what it carries.
func TestSessionCookieCodec(t *testing.T) {
	s := testSealer(t)
	in := oidcSession{Claims: map[string]any{"sub": "alice", "email": "alice@example.com"}, Refresh: "refresh-token-secret", Scope: "openid", Expiry: 10, Until: 20, Client: "web"}
	val, err := s.seal("__Host-portico-idp", in)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"alice", "refresh-token-secret", "openid"} {
		if strings.Contains(val, secret) || strings.Contains(val, base64.RawURLEncoding.EncodeToString([]byte(secret))) {
			t.Fatalf("sealed value shows %q", secret)
		}
	}
	var out oidcSession
	if err := s.open("__Host-portico-idp", val, &out); err != nil {
		t.Fatal(err)
	}
	if out.Claims["email"] != "alice@example.com" || out.Refresh != in.Refresh || out.Client != "web" {
		t.Fatalf("round trip: %+v", out)
	}
	// Two seals of the same session differ (random nonce).
	if val2, _ := s.seal("__Host-portico-idp", in); val2 == val {
		t.Fatal("two seals are identical: the nonce is not random")
	}

	// Every byte of the sealed part, flipped, is refused.
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(val, sealPrefix))
	for i := range raw {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		tampered := sealPrefix + base64.RawURLEncoding.EncodeToString(b)
		if err := s.open("__Host-portico-idp", tampered, &out); !errors.Is(err, errCookieInvalid) {
			t.Fatalf("byte %d flipped: %v, want errCookieInvalid", i, err)
		}
	}
	cases := []struct {
		name   string
		cookie string
		value  string
		sealer *sealer
		want   error
	}{
		{"another key", "__Host-portico-idp", val, testSealer(t), errCookieInvalid},
		{"another cookie name", "__Host-portico-idp-login", val, s, errCookieInvalid},
		{"another issuer", "__Host-portico-other", val, s, errCookieInvalid},
		{"truncated", "__Host-portico-idp", val[:len(val)-5], s, errCookieInvalid},
		{"no prefix", "__Host-portico-idp", strings.TrimPrefix(val, sealPrefix), s, errCookieInvalid},
		{"empty", "__Host-portico-idp", "", s, errCookieInvalid},
		{"too short", "__Host-portico-idp", sealPrefix + "AAAA", s, errCookieInvalid},
		{"not base64", "__Host-portico-idp", sealPrefix + "!!!!", s, errCookieInvalid},
		{"oversized", "__Host-portico-idp", sealPrefix + strings.Repeat("A", maxCookieValue), s, errCookieTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.sealer.open(tc.cookie, tc.value, &out); !errors.Is(err, tc.want) {
				t.Fatalf("open = %v, want %v", err, tc.want)
			}
		})
	}

	// What would not fit a cookie is refused when sealing.
	big := oidcSession{Claims: map[string]any{"blob": strings.Repeat("x", maxCookieValue)}}
	if _, err := s.seal("__Host-portico-idp", big); !errors.Is(err, errCookieTooLarge) {
		t.Fatalf("sealing an oversized session: %v", err)
	}
}

// TestStripCookies: the gateway's own cookies never reach the service;
// the service's own cookies do.
func TestStripCookies(t *testing.T) {
	o := &routeOIDC{sessionCookie: "__Host-portico-idp", flowCookie: "__Host-portico-idp-login"}
	cases := []struct {
		in   []string
		want string
	}{
		{[]string{"a=1; __Host-portico-idp=v1.xyz; b=2"}, "a=1; b=2"},
		{[]string{"__Host-portico-idp=v1.xyz", "__Host-portico-idp-login=v1.abc"}, ""},
		{[]string{"theme=dark", "__Host-portico-idp=v1.xyz; lang=en"}, "theme=dark; lang=en"},
		{nil, ""},
	}
	for _, tc := range cases {
		h := http.Header{}
		for _, v := range tc.in {
			h.Add("Cookie", v)
		}
		o.stripCookies(h)
		if got := strings.Join(h.Values("Cookie"), "|"); got != tc.want {
			t.Fatalf("%q: Cookie %q, want %q", tc.in, got, tc.want)
		}
	}
}
