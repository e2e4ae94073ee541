package ipfilter

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/portico-gw/portico/dataplane/internal/clientip"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

func mustPrefixes(t testing.TB, list ...string) []netip.Prefix {
	t.Helper()
	out := make([]netip.Prefix, len(list))
	for i, s := range list {
		p, err := config.ParseIPRule(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = p
	}
	return out
}

func TestSetContains(t *testing.T) {
	cases := []struct {
		name    string
		entries []string
		in, out []string
	}{
		{"empty", nil, nil, []string{"0.0.0.0", "::", "10.0.0.1"}},
		{"one address", []string{"192.0.2.7"}, []string{"192.0.2.7"}, []string{"192.0.2.6", "192.0.2.8", "::ffff:192.0.2.8"}},
		{"nested and adjacent merge", []string{"10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/8"}, []string{"10.0.0.0", "10.255.255.255", "11.0.0.1", "11.255.255.255"}, []string{"9.255.255.255", "12.0.0.0"}},
		{"everything v4", []string{"0.0.0.0/0"}, []string{"0.0.0.0", "255.255.255.255"}, []string{"::", "::1"}},
		{"everything v6", []string{"::/0"}, []string{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::1"}, []string{"1.2.3.4"}},
		{"top of the space", []string{"255.255.255.255", "255.255.255.254/31", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"}, []string{"255.255.255.254", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, []string{"255.255.255.253", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd"}},
		{"v6 /64 boundary", []string{"2001:db8:0:1::/64", "2001:db8::/65"}, []string{"2001:db8:0:1:ffff:ffff:ffff:ffff", "2001:db8::7fff:ffff:ffff:ffff"}, []string{"2001:db8:0:2::", "2001:db8::8000:0:0:0"}},
		{"mapped entries are IPv4", []string{"::ffff:198.51.100.0/120"}, []string{"198.51.100.255"}, []string{"198.51.101.0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := NewSet(mustPrefixes(t, c.entries...))
			for _, a := range c.in {
				if !s.Contains(netip.MustParseAddr(a).Unmap()) {
					t.Errorf("%s not in", a)
				}
			}
			for _, a := range c.out {
				if s.Contains(netip.MustParseAddr(a).Unmap()) {
					t.Errorf("%s in", a)
				}
			}
		})
	}
}

// randAddr returns an address near the interesting places (a few /16s, so
// random prefixes overlap, nest and touch) or anywhere.
func randAddr(r *rand.Rand, v6 bool) netip.Addr {
	if !v6 {
		b := [4]byte{10, byte(r.IntN(3)), byte(r.IntN(256)), byte(r.IntN(256))}
		if r.IntN(8) == 0 {
			b = [4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}
		}
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	b[0], b[1] = 0x20, 0x01
	for i := 2; i < 16; i++ {
		if i < 7 && r.IntN(4) != 0 {
			continue // zeros: dense near 2001::
		}
		b[i] = byte(r.IntN(256))
	}
	return netip.AddrFrom16(b)
}

// TestSetAgainstBruteForce checks Contains against a linear scan of the
// prefixes, on random sets of random, overlapping prefixes of both
// families and on random addresses (including each prefix's first and
// last address and their neighbours).
func TestSetAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 18))
	for round := range 300 {
		n := 1 + r.IntN(60)
		prefixes := make([]netip.Prefix, n)
		for i := range prefixes {
			v6 := r.IntN(2) == 0
			a := randAddr(r, v6)
			bits := 8 + r.IntN(25)
			if v6 {
				bits = 16 + r.IntN(113)
			}
			prefixes[i] = netip.PrefixFrom(a, bits).Masked()
		}
		s := NewSet(prefixes)
		brute := func(a netip.Addr) bool {
			for _, p := range prefixes {
				if p.Contains(a) {
					return true
				}
			}
			return false
		}
		probes := make([]netip.Addr, 0, 400)
		for range 300 {
			probes = append(probes, randAddr(r, r.IntN(2) == 0))
		}
		for _, p := range prefixes {
			lo := p.Addr()
			hi := lastAddr(p)
			probes = append(probes, lo, hi, lo.Prev(), hi.Next())
		}
		for _, a := range probes {
			if !a.IsValid() {
				continue
			}
			if got, want := s.Contains(a), brute(a); got != want {
				t.Fatalf("round %d: %s: Contains %v, brute force %v (prefixes %v)", round, a, got, want, prefixes)
			}
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// next is the rest of the chain: it answers 200.
type next struct{}

func (next) Serve(req *stage.Request) { req.W.WriteHeader(http.StatusOK) }
func (next) Describe() any            { return "next" }

func TestStageRules(t *testing.T) {
	global := CompileRules(&config.IPRules{Deny: []string{"203.0.113.0/24"}})
	route := &config.IPRules{Allow: []string{"192.0.2.0/24", "203.0.113.5", "::ffff:198.51.100.0/120"}, Deny: []string{"192.0.2.128/25"}}
	cases := []struct {
		name   string
		global *Rules
		route  *config.IPRules
		peer   string
		status int
	}{
		{"allowed", global, route, "192.0.2.1:1", 200},
		{"deny over allow", global, route, "192.0.2.200:1", 403},
		{"not in the allow list", global, route, "10.0.0.1:1", 403},
		{"global first", global, route, "203.0.113.5:1", 403},
		{"mapped client", global, route, "[::ffff:192.0.2.1]:1", 200},
		{"mapped entry", global, route, "198.51.100.4:1", 200},
		{"global only", global, nil, "10.0.0.1:1", 200},
		{"global only, denied", global, nil, "203.0.113.9:1", 403},
		{"deny only admits the rest", nil, &config.IPRules{Deny: []string{"::1"}}, "[::2]:1", 200},
		{"deny only", nil, &config.IPRules{Deny: []string{"::1"}}, "[::1]:1", 403},
		{"zone dropped", nil, &config.IPRules{Allow: []string{"fe80::/10"}}, "[fe80::1%eth0]:1", 200},
		{"unparsable: fail closed", nil, &config.IPRules{Deny: []string{"10.0.0.0/8"}}, "@", 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Compile(c.global, c.route)
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = c.peer
			w := httptest.NewRecorder()
			req := &stage.Request{W: w, R: r, Env: &stage.Env{ClientIP: (*clientip.Resolver)(nil)}}
			req.Run(stage.NewChain(s, next{}))
			if w.Code != c.status {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
		})
	}
	if Compile(nil, nil) != nil || Compile(nil, &config.IPRules{}) != nil {
		t.Fatal("a stage without rules")
	}

	// No allocation per request once the client address is resolved.
	s := Compile(global, route)
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.1:1" // admitted: a refusal writes a problem, which may allocate
	req := &stage.Request{W: httptest.NewRecorder(), R: r, Env: &stage.Env{}}
	chain := stage.NewChain(s, next{})
	req.Run(chain)
	if n := testing.AllocsPerRun(100, func() { req.Run(chain) }); n != 0 {
		t.Fatalf("%v allocations per request", n)
	}
}

func benchSet(b *testing.B, n int) {
	r := rand.New(rand.NewPCG(2, 3))
	prefixes := make([]netip.Prefix, n)
	for i := range prefixes {
		if i%4 == 3 {
			prefixes[i] = netip.PrefixFrom(randAddr(r, true), 32+r.IntN(97)).Masked()
			continue
		}
		a := netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		prefixes[i] = netip.PrefixFrom(a, 16+r.IntN(17)).Masked()
	}
	rules := &Rules{allow: NewSet(prefixes), deny: NewSet(prefixes[:n/10]), allowOnly: true}
	probes := make([]netip.Addr, 1024)
	for i := range probes {
		probes[i] = randAddr(r, i%4 == 3)
	}
	b.ReportAllocs()
	b.ResetTimer()
	hits := 0
	for i := 0; b.Loop(); i++ {
		if rules.Admits(probes[i&1023]) {
			hits++
		}
	}
	_ = hits
}

// BenchmarkLookup: one Admits (a deny and an allow lookup) against lists of
// n CIDRs, three quarters IPv4.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchSet(b, n) })
	}
}

// BenchmarkServe: the whole stage (parse the client address, both rule
// sets) with 100k CIDRs. The request is reused, so the client address is
// resolved once (stage.Request.ClientIP caches it per request: its one
// string is the resolver's, shared with the access log), and what is
// measured is the stage's own cost.
func BenchmarkServe(b *testing.B) {
	list := make([]string, 100_000)
	for i := range list {
		list[i] = fmt.Sprintf("10.%d.%d.0/24", i>>8&255, i&255)
	}
	s := Compile(CompileRules(&config.IPRules{Deny: []string{"203.0.113.0/24"}}), &config.IPRules{Allow: list})
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.3.7.9:5000"
	w := httptest.NewRecorder()
	chain := stage.NewChain(s, next{})
	req := &stage.Request{W: w, R: r, Env: &stage.Env{}}
	b.ReportAllocs()
	for b.Loop() {
		// A new request resolves its client address again.
		req.Outcome = stage.Outcome{}
		req.Run(chain)
	}
	if w.Code != http.StatusOK {
		b.Fatalf("refused: %d", w.Code)
	}
}

// BenchmarkCompileRules: parsing and building the sets of a 200,000-entry
// object (the limit), as a table compile does once for it.
func BenchmarkCompileRules(b *testing.B) {
	list := make([]string, config.MaxIPRules)
	for i := range list {
		if i%4 == 3 {
			list[i] = fmt.Sprintf("2001:db8:%x:%x::/64", i>>16, i&0xffff)
			continue
		}
		list[i] = fmt.Sprintf("%d.%d.%d.0/24", 1+i>>16, i>>8&255, i&255)
	}
	b.ReportAllocs()
	for b.Loop() {
		if CompileRules(&config.IPRules{Deny: list}) == nil {
			b.Fatal("no rules")
		}
	}
}
