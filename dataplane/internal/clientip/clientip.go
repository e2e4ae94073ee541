// Package clientip finds the address of the client behind a request. The
// TCP peer is the client unless it is a trusted proxy; only then is
// X-Forwarded-For believed, read from the right (the entries nearest to us,
// appended by proxies we trust) to the first address that is not a trusted
// proxy. Everything left of that was written by the client and proves
// nothing.
package clientip

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver holds the trusted proxy ranges.
type Resolver struct {
	trusted []netip.Prefix
}

// Parse reads a comma-separated list of CIDRs or addresses ("10.0.0.0/8,
// 192.168.1.7").
func Parse(list string) (*Resolver, error) {
	r := &Resolver{}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
			}
			f = netip.PrefixFrom(a, a.BitLen()).String()
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
		}
		r.trusted = append(r.trusted, p.Masked())
	}
	return r, nil
}

func (r *Resolver) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the client's address as a string ("" if the peer address
// cannot be parsed, which net/http never produces).
func (r *Resolver) ClientIP(req *http.Request) string {
	if a := r.ClientAddr(req); a.IsValid() {
		return a.String()
	}
	return ""
}

// ClientAddr returns the client's address: the TCP peer, or behind trusted
// proxies the nearest untrusted address of X-Forwarded-For. It is the zero
// Addr if the peer address cannot be parsed.
func (r *Resolver) ClientAddr(req *http.Request) netip.Addr {
	peer, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := peer.Addr().Unmap()
	if r == nil || len(r.trusted) == 0 || !r.isTrusted(ip) {
		return ip
	}
	values := req.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		parts := strings.Split(values[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				// Garbage in the chain: stop believing it here.
				return ip
			}
			a = a.Unmap()
			if !r.isTrusted(a) {
				return a
			}
			ip = a
		}
	}
	return ip
}

// Trusts reports whether the request's peer is a trusted proxy.
func (r *Resolver) Trusts(req *http.Request) bool {
	if r == nil || len(r.trusted) == 0 {
		return false
	}
	peer, err := netip.ParseAddrPort(req.RemoteAddr)
	return err == nil && r.isTrusted(peer.Addr())
}
