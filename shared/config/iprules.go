package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// IP rules (issue 18): allow and deny lists of client addresses, per route
// and in the global section. The data plane compiles them (package
// ipfilter); this file says what a valid list is, for both planes.

// MaxIPRules bounds the entries of one IP rules object (allow and deny
// together): a list is compiled into every data plane's memory.
const MaxIPRules = 200_000

// IPRules admits or refuses requests by their client address (as resolved
// through --trusted-proxies). Deny wins over allow; a non-empty Allow admits
// only its members. Entries are CIDRs ("10.0.0.0/8", "2001:db8::/32") or
// single addresses, IPv4 or IPv6.
type IPRules struct {
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// ParseIPRule parses one entry: a CIDR or a single address (a /32 or /128),
// normalised: host bits cleared, an IPv4-mapped IPv6 address ("::ffff:a.b.c.d",
// with a prefix of at least 96) taken as the IPv4 one. Zones are refused: a
// client address carries none that means anything here.
func ParseIPRule(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("not a CIDR: %w", err)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not an address or CIDR: %w", err)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("an address with a zone (%q) is not allowed", a.Zone())
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func (r *IPRules) validate(l *errorList, p string) {
	if n := len(r.Allow) + len(r.Deny); n > MaxIPRules {
		l.add(p, "has %d entries; at most %d (allow and deny together)", n, MaxIPRules)
		return
	}
	check := func(name string, list []string) {
		bad := 0
		for i, s := range list {
			if _, err := ParseIPRule(s); err != nil {
				// A pasted list with a wrong format would otherwise
				// drown the answer in thousands of lines.
				if bad++; bad <= 20 {
					l.add(join(p, fmt.Sprintf("%s[%d]", name, i)), "%q: %v", s, err)
				}
			}
		}
		if bad > 20 {
			l.add(join(p, name), "%d more invalid entries", bad-20)
		}
	}
	check("allow", r.Allow)
	check("deny", r.Deny)
}

// clone copies r and its lists.
func (r *IPRules) clone() *IPRules {
	if r == nil {
		return nil
	}
	return &IPRules{Allow: append([]string(nil), r.Allow...), Deny: append([]string(nil), r.Deny...)}
}
