// Package authority validates and normalises the authority a request names
// (its Host header, HTTP/2 :authority or absolute-form target). It is the
// only place that reads one: the proxy replaces Request.Host with the value
// Normalize returns before anything else looks at it, so route matching,
// the cache key and every forwarded header (X-Forwarded-Host, ...) see the
// same validated bytes, and a host the upstream is told about is always the
// host the response is cached under.
//
// # Grammar
//
// An authority is host [ ":" port ] (RFC 3986 §3.2.2, §3.2.3), narrowed to
// what a gateway has a reason to accept:
//
//   - host is a registered name made of labels of the RFC 3986 unreserved
//     characters ALPHA, DIGIT, "-", ".", "_", "~" (at most 253 bytes, no empty
//     label, one trailing dot allowed and removed), or an IPv6 literal in
//     brackets. IPv4 addresses are registered names by this grammar.
//     Sub-delimiters ("," ";" "=" "!" "$" "&" "'" "(" ")" "*" "+") are
//     valid in an RFC 3986 reg-name but refused here: they separate list
//     elements and parameters in X-Forwarded-Host and Forwarded, so a host
//     such as "shop.example,evil.example" would let a client put a second
//     host into a header an upstream splits. Percent-encoding, userinfo,
//     IPvFuture and IPv6 zone identifiers are refused too.
//   - port, when present, is 1 to 5 digits naming 1..65535. An empty port
//     ("host:") is refused rather than guessed at.
//
// # Normal form
//
// The host is lower-cased and loses its trailing dot; an IPv6 literal is
// written in its RFC 5952 form ("[2001:db8::1]"); the port loses leading
// zeros and is dropped when it is the scheme's default (80 for plain HTTP,
// 443 for TLS), so "Shop.Example.:80" and "shop.example" are one authority
// and "shop.example:8443" is another. An authority already in normal form is
// returned as it is, without allocating.
package authority

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every error Normalize returns.
var ErrInvalid = errors.New("invalid authority")

// MaxHost is the longest host name accepted, the DNS limit.
const MaxHost = 253

// maxLen bounds the input before any parsing: a bracketed IPv6 literal or
// a MaxHost name, a trailing dot, and ":65535".
const maxLen = MaxHost + 1 + 6 + 2

// Default ports, by whether the request came over TLS.
const (
	PortHTTP  = 80
	PortHTTPS = 443
)

// Normalize validates raw as an authority and returns its normal form (see
// the package documentation). defaultPort (PortHTTP or PortHTTPS) is
// dropped when raw names it. An empty raw is returned as is: an HTTP/1.0
// request may have no Host; net/http refuses an HTTP/1.1 one without it.
func Normalize(raw string, defaultPort int) (string, error) {
	if raw == "" {
		return "", nil
	}
	if len(raw) > maxLen {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalid, maxLen)
	}
	var host, port string
	var hostNormal bool
	if raw[0] == '[' {
		end := strings.IndexByte(raw, ']')
		if end < 0 {
			return "", fmt.Errorf("%w: unclosed '['", ErrInvalid)
		}
		lit := raw[1:end]
		// ParseAddr accepts zones ("fe80::1%eth0") and IPv4 in IPv6
		// brackets is not an IPv6 literal at all.
		a, err := netip.ParseAddr(lit)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("%w: %q is not an IPv6 address", ErrInvalid, lit)
		}
		host = raw[:end+1]
		var buf [64]byte // the longest IPv6 text is 45 bytes
		if s := a.AppendTo(buf[:0]); string(s) != lit {
			host = "[" + string(s) + "]"
		} else {
			hostNormal = true
		}
		rest := raw[end+1:]
		switch {
		case rest == "":
		case rest[0] == ':':
			port = rest[1:]
			if port == "" {
				return "", fmt.Errorf("%w: empty port", ErrInvalid)
			}
		default:
			return "", fmt.Errorf("%w: %q after the IPv6 literal", ErrInvalid, rest)
		}
	} else {
		host = raw
		if i := strings.IndexByte(raw, ':'); i >= 0 {
			host, port = raw[:i], raw[i+1:]
			if port == "" {
				return "", fmt.Errorf("%w: empty port", ErrInvalid)
			}
		}
		var err error
		host, hostNormal, err = regName(host)
		if err != nil {
			return "", err
		}
	}
	if port == "" {
		if hostNormal {
			return raw, nil
		}
		return host, nil
	}
	n, err := parsePort(port)
	if err != nil {
		return "", err
	}
	switch {
	case n == defaultPort:
		return host, nil
	case hostNormal && port[0] != '0':
		return raw, nil
	}
	return host + ":" + strconv.Itoa(n), nil
}

// regName checks a registered name and returns it lower-cased without its
// trailing dot; normal reports that it needed neither.
func regName(h string) (string, bool, error) {
	trimmed := strings.TrimSuffix(h, ".")
	if trimmed == "" {
		return "", false, fmt.Errorf("%w: empty host", ErrInvalid)
	}
	if len(trimmed) > MaxHost {
		return "", false, fmt.Errorf("%w: host longer than %d bytes", ErrInvalid, MaxHost)
	}
	upper := false
	prev := byte('.') // an empty first label shows as ".." at the start
	for i := 0; i < len(trimmed); i++ {
		c := trimmed[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '~':
		case c >= 'A' && c <= 'Z':
			upper = true
		case c == '.':
			if prev == '.' {
				return "", false, fmt.Errorf("%w: empty label in host", ErrInvalid)
			}
		default:
			return "", false, fmt.Errorf("%w: byte %q in host", ErrInvalid, c)
		}
		prev = c
	}
	if prev == '.' {
		return "", false, fmt.Errorf("%w: empty label in host", ErrInvalid)
	}
	if !upper && len(trimmed) == len(h) {
		return h, true, nil
	}
	return strings.ToLower(trimmed), false, nil
}

// parsePort reads 1 to 5 ASCII digits naming 1..65535.
func parsePort(p string) (int, error) {
	if len(p) > 5 {
		return 0, fmt.Errorf("%w: port %q", ErrInvalid, p)
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: port %q is not a number", ErrInvalid, p)
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%w: port %d out of 1..65535", ErrInvalid, n)
	}
	return n, nil
}
