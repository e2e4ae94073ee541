package acme

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		first time.Duration
		n     int
		want  time.Duration
	}{
		{time.Minute, 1, time.Minute},
		{time.Minute, 2, 2 * time.Minute},
		{time.Minute, 4, 8 * time.Minute},
		{time.Minute, 9, 256 * time.Minute},
		{time.Minute, 10, BackoffMax},
		{time.Minute, 1000, BackoffMax},
		{2 * time.Second, 3, 8 * time.Second},
	} {
		if got := Backoff(tc.first, tc.n); got != tc.want {
			t.Errorf("Backoff(%v, %d) = %v, want %v", tc.first, tc.n, got, tc.want)
		}
	}
}

// TestErrorText: last_error is one line, bounded.
func TestErrorText(t *testing.T) {
	if got := errorText(errors.New("a\n  b\tc")); got != "a b c" {
		t.Errorf("= %q", got)
	}
	long := errorText(errors.New(strings.Repeat("x", 5000)))
	if len(long) > MaxErrorBytes+len("…") {
		t.Errorf("%d bytes", len(long))
	}
}

// TestAccountSecret: one account per directory, e-mail and EAB kid, named
// without any of them in clear.
func TestAccountSecret(t *testing.T) {
	a := accountSecret(&config.CertificateACME{Directory: "https://x.example/dir", Email: "a@example.com"})
	b := accountSecret(&config.CertificateACME{Directory: "https://x.example/dir", Email: "b@example.com"})
	c := accountSecret(&config.CertificateACME{Directory: "https://y.example/dir", Email: "a@example.com"})
	if a == b || a == c || strings.Contains(a, "example") || !strings.HasPrefix(a, "acme-account-") {
		t.Errorf("%s %s %s", a, b, c)
	}
	// A binding makes another account (per kid), whatever its MAC key.
	bound := func(kid, key string) string {
		return accountSecret(&config.CertificateACME{Directory: "https://x.example/dir", Email: "a@example.com",
			EAB: &config.ACMEEAB{KID: kid, HMACKey: key}})
	}
	if k1 := bound("kid-1", "key-a"); k1 == a || k1 == bound("kid-2", "key-a") || k1 != bound("kid-1", "key-b") || strings.Contains(k1, "kid") {
		t.Errorf("bound accounts: %s %s %s", k1, bound("kid-2", "key-a"), bound("kid-1", "key-b"))
	}
}
