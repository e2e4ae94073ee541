package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// TestRateLimitKeyHashed: header and claim values reach the limiter as a
// fixed-size hash, the same on every data plane, distinct per value.
func TestRateLimitKeyHashed(t *testing.T) {
	rl := compileRoute("r", &config.RateLimit{Limit: 1, Window: config.Duration(time.Minute), Key: "header:X-Client"}, nil)
	key := func(v string) string {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-Client", v)
		return rl.key(r, "192.0.2.1", nil)
	}
	long, short := key(strings.Repeat("x", 60<<10)), key("x")
	if len(long) != len(short) || len(long) != len(rl.prefix)+22 {
		t.Fatalf("keys %d and %d bytes, want the prefix + 22", len(long), len(short))
	}
	if a1, a2 := key("a"), key("a"); a1 != a2 || a1 == key("b") || strings.Contains(key("secret-value"), "secret") {
		t.Fatalf("keys not a deterministic hash of the value: %q %q", key("a"), key("b"))
	}
}

// FuzzRateLimitKey checks that a counter key is a function of the keyed
// value and of nothing else: two callers share a bucket exactly when the
// policy says they are the same caller.
func FuzzRateLimitKey(f *testing.F) {
	for _, s := range []struct{ key, a, b, noise string }{
		{"", "a", "b", "n"},
		{"route", "", "x", ""},
		{"ip", "192.0.2.1", "192.0.2.2", "x"},
		{"ip", "2001:db8::1", "::ffff:192.0.2.1", ""},
		{"consumer", "alice", "bob", "n"},
		{"consumer", "ip", "alice", ""},
		{"header:X-Client", "a", "a ", "n"},
		{"header:x-client", "", "\x00", "n"},
		{"header:X|Y", "1", "2", ""},
		{"claim:tenant", "acme", "ip:192.0.2.1", ""},
		{"claim:sub", "ip:192.0.2.2", "192.0.2.2", "x"},
		{"claim:a|b", "|", "||", ""},
		{"claim:noise", "1", "2", "3"},
	} {
		f.Add(s.key, s.a, s.b, s.noise)
	}
	f.Fuzz(func(t *testing.T, key, a, b, noise string) {
		if config.RateKeyProblem(key) != "" {
			return
		}
		const route = "route-1"
		rl := compileRoute(route, &config.RateLimit{Limit: 1, Window: config.Duration(time.Minute), Key: key}, nil)
		kind, name, _ := strings.Cut(key, ":")
		if kind == "" {
			kind = "route"
		}
		type input struct {
			ip       string
			hdr      string
			consumer string
			claim    any
			hasClaim bool
			noise    string
		}
		keyOf := func(in input) string {
			r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/" + in.noise}, Header: http.Header{}}
			r.Header.Set("X-Fuzz-Noise", in.noise)
			if kind == "header" {
				r.Header.Set(name, in.hdr)
			}
			id := &stage.Identity{Consumer: in.consumer, Method: "jwt", Claims: map[string]any{"fuzz-noise": in.noise}}
			if in.hasClaim {
				id.Claims[name] = in.claim
			}
			k := rl.key(r, in.ip, id)
			if !strings.HasPrefix(k, route+"|") || !strings.HasPrefix(k, rl.prefix) {
				t.Fatalf("key %q lacks the route prefix %q", k, rl.prefix)
			}
			return k
		}
		differ := func(what string, x, y input) {
			if kx, ky := keyOf(x), keyOf(y); kx == ky {
				t.Fatalf("%s: %+v and %+v share the key %q", what, x, y, kx)
			}
		}
		same := func(what string, x, y input) {
			if kx, ky := keyOf(x), keyOf(y); kx != ky {
				t.Fatalf("%s: %+v → %q but %+v → %q", what, x, kx, y, ky)
			}
		}
		if kind == "header" && http.CanonicalHeaderKey(name) == "X-Fuzz-Noise" || kind == "claim" && name == "fuzz-noise" {
			return // the noise would be the keyed value
		}
		base := input{ip: "192.0.2.1", hdr: a, consumer: "alice", claim: a, hasClaim: true, noise: noise}
		other := base
		other.noise = noise + "~"
		same("noise", base, other)

		switch kind {
		case "route":
			y := input{ip: b, hdr: b, consumer: b, claim: b, noise: b}
			same("route", base, y)
		case "ip":
			x, y := base, input{ip: b, hdr: b, consumer: b, claim: b, hasClaim: true, noise: noise}
			x.ip = a
			if a != b {
				differ("ip", x, y)
			}
			y.ip = a
			same("ip, other values", x, y)
		case "header":
			x, y := base, base
			y.hdr = b
			if a != b {
				differ("header", x, y)
			}
			y = x
			y.ip, y.consumer, y.claim = b, b, b
			same("header, other values", x, y)
		case "claim":
			x, y := base, base
			y.claim = b
			if a != b {
				differ("claim", x, y)
			}
			// A caller without the claim is counted by address; no claim
			// value may land in that bucket.
			y.hasClaim, y.ip = false, b
			differ("claim against none", x, y)
			y = x
			y.ip, y.hdr, y.consumer = b, b, b
			same("claim, other values", x, y)
		case "consumer":
			if config.ValidateName(a) != nil || config.ValidateName(b) != nil {
				return // consumer names are validated before they get here
			}
			x, y := base, base
			x.consumer, y.consumer = a, b
			if a != b {
				differ("consumer", x, y)
			}
			y.consumer, y.ip = "", b
			differ("consumer against none", x, y)
			y = x
			y.ip, y.hdr, y.claim = b, b, b
			same("consumer, other values", x, y)
		default:
			t.Fatalf("config accepted key %q of unknown kind %q", key, kind)
		}
	})
}
