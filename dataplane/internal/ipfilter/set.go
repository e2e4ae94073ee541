package ipfilter

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// Set is an immutable set of addresses: the CIDRs it was built from as
// sorted, disjoint, non-adjacent ranges, one array per family. Contains is
// a binary search: O(log n) comparisons of integers, no allocation, however
// the CIDRs overlapped or nested.
type Set struct {
	v4 []range4
	v6 []range6
}

type range4 struct{ lo, hi uint32 }

// u128 is an IPv6 address as two big-endian halves, compared hi first.
type u128 struct{ hi, lo uint64 }

type range6 struct{ lo, hi u128 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

// next is a+1; ok is false when a is the last address.
func (a u128) next() (u128, bool) {
	if a.lo != ^uint64(0) {
		return u128{a.hi, a.lo + 1}, true
	}
	if a.hi != ^uint64(0) {
		return u128{a.hi + 1, 0}, true
	}
	return a, false
}

func from16(b [16]byte) u128 {
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// NewSet builds the set of the given prefixes (normalised ones, as
// config.ParseIPRule returns them; an IPv4-mapped IPv6 prefix is not
// unmapped here).
func NewSet(prefixes []netip.Prefix) *Set {
	n4 := 0
	for _, p := range prefixes {
		if p.Addr().Is4() {
			n4++
		}
	}
	// Sized exactly: the arrays live as long as the table.
	s := &Set{v4: make([]range4, 0, n4), v6: make([]range6, 0, len(prefixes)-n4)}
	for _, p := range prefixes {
		p = p.Masked()
		a := p.Addr()
		if a.Is4() {
			b4 := a.As4()
			lo := binary.BigEndian.Uint32(b4[:])
			var host uint32
			if b := p.Bits(); b < 32 {
				host = ^uint32(0) >> b
			}
			s.v4 = append(s.v4, range4{lo, lo | host})
			continue
		}
		lo := from16(a.As16())
		hi := lo
		switch b := p.Bits(); {
		case b == 0:
			hi = u128{^uint64(0), ^uint64(0)}
		case b < 64:
			hi = u128{lo.hi | ^uint64(0)>>b, ^uint64(0)}
		case b < 128:
			hi.lo = lo.lo | ^uint64(0)>>(b-64)
		}
		s.v6 = append(s.v6, range6{lo, hi})
	}
	slices.SortFunc(s.v4, func(a, b range4) int { return cmp.Compare(a.lo, b.lo) })
	s.v4 = merge4(s.v4)
	slices.SortFunc(s.v6, func(a, b range6) int {
		if c := cmp.Compare(a.lo.hi, b.lo.hi); c != 0 {
			return c
		}
		return cmp.Compare(a.lo.lo, b.lo.lo)
	})
	s.v6 = merge6(s.v6)
	return s
}

// merge4 joins overlapping and adjacent ranges of a list sorted by lo.
func merge4(rs []range4) []range4 {
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && (out[n-1].hi == ^uint32(0) || r.lo <= out[n-1].hi+1) {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

func merge6(rs []range6) []range6 {
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if nx, ok := last.hi.next(); !ok || !nx.less(r.lo) {
				if last.hi.less(r.hi) {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// Len is the number of disjoint ranges the set holds.
func (s *Set) Len() int { return len(s.v4) + len(s.v6) }

// Contains reports whether a (unmapped by the caller, no zone) is in s.
func (s *Set) Contains(a netip.Addr) bool {
	if s == nil {
		return false
	}
	if a.Is4() {
		b4 := a.As4()
		x := binary.BigEndian.Uint32(b4[:])
		rs := s.v4
		// The first range whose lo is above x; x is in the one before.
		i, j := 0, len(rs)
		for i < j {
			h := int(uint(i+j) >> 1)
			if rs[h].lo <= x {
				i = h + 1
			} else {
				j = h
			}
		}
		return i > 0 && x <= rs[i-1].hi
	}
	x := from16(a.As16())
	rs := s.v6
	i, j := 0, len(rs)
	for i < j {
		h := int(uint(i+j) >> 1)
		if !x.less(rs[h].lo) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i > 0 && !rs[i-1].hi.less(x)
}
