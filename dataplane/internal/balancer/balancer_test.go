package balancer

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// now is a fixed clock: ejection is checked against the time Pick is
// given, so tests need no sleeps.
const now int64 = 1_000_000_000_000

func endpoints(n int, weights ...int) []*Endpoint {
	eps := make([]*Endpoint, n)
	for i := range eps {
		w := 1
		if i < len(weights) {
			w = weights[i]
		}
		eps[i] = NewEndpoint(fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1), w)
	}
	return eps
}

// name labels endpoints a, b, c... in tables.
func name(eps []*Endpoint, e *Endpoint) string {
	if e == nil {
		return "<nil>"
	}
	i := slices.Index(eps, e)
	if i < 0 {
		return e.Addr
	}
	if i < 26 {
		return string(rune('a' + i))
	}
	return e.Addr
}

func countPicks(s *Set, picks int, req func(i int) *http.Request) map[*Endpoint]int {
	counts := make(map[*Endpoint]int)
	for i := range picks {
		counts[s.Pick(req(i), nil, now)]++
	}
	return counts
}

func noRequest(int) *http.Request { return nil }

func logTable(t *testing.T, title string, eps []*Endpoint, counts map[*Endpoint]int) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n  %-8s %6s %8s\n", title, "endpoint", "weight", "picks")
	for _, e := range eps {
		fmt.Fprintf(&b, "  %-8s %6d %8d\n", name(eps, e), e.Weight, counts[e])
	}
	if n := counts[nil]; n > 0 {
		fmt.Fprintf(&b, "  %-8s %6s %8d\n", "<nil>", "", n)
	}
	t.Log(b.String())
}

func TestDistribution(t *testing.T) {
	type want func(t *testing.T, eps []*Endpoint, counts map[*Endpoint]int)
	exactly := func(n ...int) want {
		return func(t *testing.T, eps []*Endpoint, counts map[*Endpoint]int) {
			for i, e := range eps {
				if counts[e] != n[i] {
					t.Errorf("%s got %d picks, want %d", name(eps, e), counts[e], n[i])
				}
			}
		}
	}
	withinOfMean := func(frac float64) want {
		return func(t *testing.T, eps []*Endpoint, counts map[*Endpoint]int) {
			total := 0
			for _, e := range eps {
				total += counts[e]
			}
			mean := float64(total) / float64(len(eps))
			for _, e := range eps {
				if d := float64(counts[e]) - mean; d > frac*mean || d < -frac*mean {
					t.Errorf("%s got %d picks, want within %.0f%% of %.0f", name(eps, e), counts[e], frac*100, mean)
				}
			}
		}
	}
	hashKeys := func(i int) *http.Request {
		r := &http.Request{Header: http.Header{}}
		r.Header.Set("X-User", fmt.Sprintf("user-%d", i))
		return r
	}
	tests := []struct {
		name    string
		policy  Policy
		weights []int
		n       int
		setup   func(eps []*Endpoint)
		picks   int
		req     func(i int) *http.Request
		check   want
	}{
		{
			name: "round_robin equal", policy: Policy{Kind: config.LBRoundRobin},
			n: 3, picks: 3000, req: noRequest, check: exactly(1000, 1000, 1000),
		},
		{
			name: "default kind is round_robin", policy: Policy{},
			n: 3, weights: []int{5, 1, 1}, picks: 3000, req: noRequest, check: exactly(1000, 1000, 1000),
		},
		{
			name: "unknown kind is round_robin", policy: Policy{Kind: "random"},
			n: 3, picks: 3000, req: noRequest, check: exactly(1000, 1000, 1000),
		},
		{
			name: "weighted 5:1:1", policy: Policy{Kind: config.LBWeighted},
			n: 3, weights: []int{5, 1, 1}, picks: 7000, req: noRequest, check: exactly(5000, 1000, 1000),
		},
		{
			name: "weighted 10:20:30 reduces to 1:2:3", policy: Policy{Kind: config.LBWeighted},
			n: 3, weights: []int{10, 20, 30}, picks: 6000, req: noRequest, check: exactly(1000, 2000, 3000),
		},
		{
			name: "weighted equal weights", policy: Policy{Kind: config.LBWeighted},
			n: 3, weights: []int{4, 4, 4}, picks: 3000, req: noRequest, check: exactly(1000, 1000, 1000),
		},
		{
			name: "least_request equal load", policy: Policy{Kind: config.LBLeastRequest},
			n: 3, picks: 30000, req: noRequest, check: withinOfMean(0.25),
		},
		{
			name: "least_request one busy", policy: Policy{Kind: config.LBLeastRequest},
			n: 3, picks: 30000, req: noRequest,
			setup: func(eps []*Endpoint) {
				for range 50 {
					eps[0].Acquire()
				}
			},
			check: func(t *testing.T, eps []*Endpoint, counts map[*Endpoint]int) {
				// Two distinct candidates: the busy one can never win.
				if counts[eps[0]] > 30000/100 {
					t.Errorf("busy endpoint got %d of 30000 picks", counts[eps[0]])
				}
				withinOfMean(0.25)(t, eps[1:], counts)
			},
		},
		{
			name: "least_request weighted load", policy: Policy{Kind: config.LBLeastRequest},
			n: 2, weights: []int{4, 1}, picks: 1000, req: noRequest,
			setup: func(eps []*Endpoint) {
				// a: 4 in flight / weight 4 = 1; b: 2 / 1 = 2. a is less loaded.
				for range 4 {
					eps[0].Acquire()
				}
				for range 2 {
					eps[1].Acquire()
				}
			},
			check: exactly(1000, 0),
		},
		{
			name: "consistent_hash 10 endpoints", policy: Policy{Kind: config.LBConsistentHash, HashOn: "header:X-User"},
			n: 10, picks: 100000, req: hashKeys, check: withinOfMean(0.30),
		},
		{
			name: "consistent_hash weighted 1:2:1", policy: Policy{Kind: config.LBConsistentHash, HashOn: "header:X-User"},
			n: 3, weights: []int{1, 2, 1}, picks: 100000, req: hashKeys,
			check: func(t *testing.T, eps []*Endpoint, counts map[*Endpoint]int) {
				if got := float64(counts[eps[1]]) / 100000; got < 0.4 || got > 0.6 {
					t.Errorf("weight-2 endpoint got %.1f%% of keys, want about 50%%", got*100)
				}
			},
		},
		{
			name: "consistent_hash without key is round robin", policy: Policy{Kind: config.LBConsistentHash, HashOn: "header:X-User"},
			n: 3, picks: 3000, req: func(int) *http.Request { return &http.Request{Header: http.Header{}} },
			check: exactly(1000, 1000, 1000),
		},
		{
			name: "consistent_hash empty key is round robin", policy: Policy{Kind: config.LBConsistentHash, HashOn: "header:X-User"},
			n: 3, picks: 3000, req: func(int) *http.Request { return &http.Request{Header: http.Header{"X-User": {""}}} },
			check: exactly(1000, 1000, 1000),
		},
		{
			name: "consistent_hash bad hash_on is round robin", policy: Policy{Kind: config.LBConsistentHash, HashOn: "query:x"},
			n: 3, picks: 3000, req: hashKeys, check: exactly(1000, 1000, 1000),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := endpoints(tt.n, tt.weights...)
			if tt.setup != nil {
				tt.setup(eps)
			}
			s := NewSet(eps, tt.policy)
			counts := countPicks(s, tt.picks, tt.req)
			logTable(t, tt.name, eps, counts)
			if counts[nil] > 0 {
				t.Errorf("%d picks returned nil", counts[nil])
			}
			tt.check(t, eps, counts)
		})
	}
}

func TestOrder(t *testing.T) {
	tests := []struct {
		policy  string
		weights []int
		want    string
	}{
		{config.LBRoundRobin, []int{1, 1, 1}, "abcabcabc"},
		{config.LBWeighted, []int{5, 1, 1}, "aabacaaaabacaa"},
		{config.LBWeighted, []int{2, 1}, "abaaba"},
		{config.LBWeighted, []int{1, 1, 1}, "abcabc"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.policy, tt.weights), func(t *testing.T) {
			eps := endpoints(len(tt.weights), tt.weights...)
			s := NewSet(eps, Policy{Kind: tt.policy})
			var got strings.Builder
			for range len(tt.want) {
				got.WriteString(name(eps, s.Pick(nil, nil, now)))
			}
			if got.String() != tt.want {
				t.Errorf("order = %s, want %s", got.String(), tt.want)
			}
		})
	}
}

func TestSmoothScheduleBound(t *testing.T) {
	tests := []struct {
		name    string
		weights []int64
		maxLen  int
	}{
		{"large weights", []int64{10000, 10000, 1}, maxSchedule + 3},
		{"many endpoints", slices.Repeat([]int64{1, 2}, 3000), 6000},
		{"huge and tiny", []int64{1 << 40, 1}, maxSchedule + 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sched := smoothSchedule(tt.weights)
			if len(sched) > tt.maxLen {
				t.Errorf("schedule has %d slots, want at most %d", len(sched), tt.maxLen)
			}
			slots := make([]int, len(tt.weights))
			for _, i := range sched {
				slots[i]++
			}
			if i := slices.Index(slots, 0); i >= 0 {
				t.Errorf("endpoint %d (weight %d) has no slot", i, tt.weights[i])
			}
		})
	}
}

// TestLeastRequestBalancesLoad holds every pick open: the in-flight counts
// must stay level, which is the point of the policy.
func TestLeastRequestBalancesLoad(t *testing.T) {
	eps := endpoints(5)
	s := NewSet(eps, Policy{Kind: config.LBLeastRequest})
	for range 5000 {
		s.Pick(nil, nil, now).Acquire()
	}
	var loads []int64
	for _, e := range eps {
		loads = append(loads, e.InFlight())
	}
	t.Logf("in flight after 5000 held picks: %v", loads)
	if spread := slices.Max(loads) - slices.Min(loads); spread > 10 {
		t.Errorf("in-flight spread %d, want <= 10: %v", spread, loads)
	}
}

func hashSet(eps []*Endpoint) *Set {
	return NewSet(eps, Policy{Kind: config.LBConsistentHash, HashOn: "header:X-User"})
}

func keyRequest(key string) *http.Request {
	return &http.Request{Header: http.Header{"X-User": {key}}}
}

// mapKeys returns the Addr each key maps to.
func mapKeys(s *Set, keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = s.Pick(keyRequest(k), nil, now).Addr
	}
	return out
}

func randomKeys(n int) []string {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%016x", rng.Uint64())
	}
	return keys
}

func TestConsistentHashStable(t *testing.T) {
	keys := randomKeys(1000)
	eps := endpoints(10)
	s := hashSet(eps)
	first := mapKeys(s, keys)
	if again := mapKeys(s, keys); !slices.Equal(first, again) {
		t.Error("the same key mapped to different endpoints on the same Set")
	}
	// Another data plane may list the endpoints in another order and has
	// its own Endpoint values: keys must still land on the same Addr.
	other := endpoints(10)
	slices.Reverse(other)
	if again := mapKeys(hashSet(other), keys); !slices.Equal(first, again) {
		t.Error("the same key mapped to different Addrs on an equal Set in another order")
	}
}

func TestConsistentHashMembershipChange(t *testing.T) {
	keys := randomKeys(100000)
	eps := endpoints(11)
	ten := mapKeys(hashSet(eps[:10]), keys)

	t.Run("remove 1 of 10", func(t *testing.T) {
		removed := eps[3]
		rest := slices.Delete(slices.Clone(eps[:10]), 3, 4)
		nine := mapKeys(hashSet(rest), keys)
		var movedFromRemoved, movedOther int
		for i := range keys {
			switch {
			case ten[i] == removed.Addr:
				movedFromRemoved++
			case ten[i] != nine[i]:
				movedOther++
			}
		}
		t.Logf("keys moved: %d from the removed endpoint (%.1f%%), %d from remaining ones",
			movedFromRemoved, 100*float64(movedFromRemoved)/float64(len(keys)), movedOther)
		if movedOther != 0 {
			t.Errorf("%d keys on remaining endpoints moved", movedOther)
		}
	})
	t.Run("add an 11th", func(t *testing.T) {
		eleven := mapKeys(hashSet(eps), keys)
		var moved, movedElsewhere int
		for i := range keys {
			if ten[i] != eleven[i] {
				moved++
				if eleven[i] != eps[10].Addr {
					movedElsewhere++
				}
			}
		}
		t.Logf("keys moved: %d (%.1f%%; 1/11 = 9.1%%)", moved, 100*float64(moved)/float64(len(keys)))
		if moved > len(keys)*2/11 {
			t.Errorf("%d of %d keys moved, want at most 2/11", moved, len(keys))
		}
		if movedElsewhere != 0 {
			t.Errorf("%d keys moved to an old endpoint", movedElsewhere)
		}
	})
	t.Run("eject 1 of 10", func(t *testing.T) {
		local := endpoints(10)
		s := hashSet(local)
		local[3].EjectUntil(now + 1)
		ejected := mapKeys(s, keys)
		for i := range keys {
			if ten[i] != local[3].Addr && ejected[i] != ten[i] {
				t.Fatalf("key %q on %s moved to %s when another endpoint was ejected", keys[i], ten[i], ejected[i])
			}
			if ejected[i] == local[3].Addr {
				t.Fatalf("key %q went to the ejected endpoint", keys[i])
			}
		}
		// Ejection expires on its own and the keys come back.
		local[3].EjectUntil(now)
		if back := mapKeys(s, keys); !slices.Equal(back, ten) {
			t.Error("keys did not return after the ejection ended")
		}
	})
}

func TestHashKey(t *testing.T) {
	tests := []struct {
		name   string
		hashOn string
		header http.Header
		remote string
		want   string // "" = no key
	}{
		{"header", "header:X-User", http.Header{"X-User": {"u1"}}, "", "u1"},
		{"header name case-insensitive", "header:x-user", http.Header{"X-User": {"u1"}}, "", "u1"},
		{"header first value", "header:X-User", http.Header{"X-User": {"u1", "u2"}}, "", "u1"},
		{"header missing", "header:X-User", http.Header{"X-Other": {"u1"}}, "", ""},
		{"header empty", "header:X-User", http.Header{"X-User": {""}}, "", ""},
		{"cookie", "cookie:session", http.Header{"Cookie": {"session=abc"}}, "", "abc"},
		{"cookie among others", "cookie:session", http.Header{"Cookie": {"a=1; session=abc; b=2"}}, "", "abc"},
		{"cookie no space", "cookie:session", http.Header{"Cookie": {"a=1;session=abc"}}, "", "abc"},
		{"cookie quoted", "cookie:session", http.Header{"Cookie": {`session="abc"`}}, "", "abc"},
		{"cookie second header line", "cookie:session", http.Header{"Cookie": {"a=1", "session=abc"}}, "", "abc"},
		{"cookie name is exact", "cookie:session", http.Header{"Cookie": {"session_id=x; Session=y; sess=z"}}, "", ""},
		{"cookie name is a prefix of another", "cookie:sess", http.Header{"Cookie": {"session=x; sess=z"}}, "", "z"},
		{"cookie valueless", "cookie:session", http.Header{"Cookie": {"session"}}, "", ""},
		{"cookie empty", "cookie:session", http.Header{"Cookie": {"session="}}, "", ""},
		{"cookie missing", "cookie:session", http.Header{}, "", ""},
		{"client_ip v4", "client_ip", nil, "192.0.2.7:51234", "192.0.2.7"},
		{"client_ip v6", "client_ip", nil, "[2001:db8::1]:51234", "2001:db8::1"},
		{"client_ip no port", "client_ip", nil, "192.0.2.7", "192.0.2.7"},
		{"client_ip bare v6", "client_ip", nil, "2001:db8::1", "2001:db8::1"},
		{"client_ip empty", "client_ip", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSet(endpoints(3), Policy{Kind: config.LBConsistentHash, HashOn: tt.hashOn})
			r := &http.Request{Header: tt.header, RemoteAddr: tt.remote}
			got, ok := s.hashKey(r)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("key = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

// With a resolver (the data plane's X-Forwarded-For-aware one), client_ip
// hashes the client behind a trusted proxy, not the proxy.
func TestHashKeyClientIPResolver(t *testing.T) {
	s := NewSet(endpoints(3), Policy{Kind: config.LBConsistentHash, HashOn: "client_ip",
		ClientIP: func(r *http.Request) string { return r.Header.Get("X-Forwarded-For") }})
	r := &http.Request{Header: http.Header{"X-Forwarded-For": {"198.51.100.9"}}, RemoteAddr: "10.0.0.1:4000"}
	if got, ok := s.hashKey(r); !ok || got != "198.51.100.9" {
		t.Fatalf("key = %q, %v; want the resolved client", got, ok)
	}
}

// TestKeySourcesAgree checks the keys end to end: the ring depends only on
// the endpoints, so a value must land on the same endpoint whichever part
// of the request carries it.
func TestKeySourcesAgree(t *testing.T) {
	eps := endpoints(10)
	byHeader := NewSet(eps, Policy{Kind: config.LBConsistentHash, HashOn: "header:X-User"})
	byCookie := NewSet(eps, Policy{Kind: config.LBConsistentHash, HashOn: "cookie:uid"})
	byIP := NewSet(eps, Policy{Kind: config.LBConsistentHash, HashOn: "client_ip"})
	seen := map[*Endpoint]bool{}
	for i := range 200 {
		ip := fmt.Sprintf("198.51.100.%d", i)
		h := byHeader.Pick(keyRequest(ip), nil, now)
		c := byCookie.Pick(&http.Request{Header: http.Header{"Cookie": {"x=1; uid=" + ip}}}, nil, now)
		a := byIP.Pick(&http.Request{RemoteAddr: ip + ":4000"}, nil, now)
		if h != c || h != a {
			t.Fatalf("key %s: header -> %s, cookie -> %s, client_ip -> %s", ip, h.Addr, c.Addr, a.Addr)
		}
		seen[h] = true
	}
	if len(seen) < 8 {
		t.Errorf("200 keys reached only %d of 10 endpoints", len(seen))
	}
}

var allPolicies = []Policy{
	{Kind: config.LBRoundRobin},
	{Kind: config.LBWeighted},
	{Kind: config.LBLeastRequest},
	{Kind: config.LBConsistentHash, HashOn: "header:X-User"},
}

func TestAvailability(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		setup   func(eps []*Endpoint, tried *Tried)
		allowed string // endpoints Pick may return; "" = nil
		all     bool   // every allowed endpoint must be returned at least once
	}{
		{
			name: "ejected skipped", n: 3, allowed: "ac", all: true,
			setup: func(eps []*Endpoint, _ *Tried) { eps[1].EjectUntil(now + 1) },
		},
		{
			name: "ejection over", n: 3, allowed: "abc", all: true,
			setup: func(eps []*Endpoint, _ *Tried) { eps[1].EjectUntil(now) },
		},
		{
			name: "ejection cleared", n: 3, allowed: "abc", all: true,
			setup: func(eps []*Endpoint, _ *Tried) { eps[1].EjectUntil(now + 1); eps[1].EjectUntil(0) },
		},
		{
			name: "all ejected: panic mode", n: 3, allowed: "abc", all: true,
			setup: func(eps []*Endpoint, _ *Tried) {
				for _, e := range eps {
					e.EjectUntil(now + 1)
				}
			},
		},
		{
			name: "panic mode skips unhealthy", n: 3, allowed: "b", all: true,
			setup: func(eps []*Endpoint, _ *Tried) {
				for _, e := range eps {
					e.EjectUntil(now + 1)
				}
				eps[0].SetHealthy(false)
				eps[2].SetHealthy(false)
			},
		},
		{
			name: "panic mode skips tried", n: 3, allowed: "c", all: true,
			setup: func(eps []*Endpoint, tried *Tried) {
				for _, e := range eps {
					e.EjectUntil(now + 1)
				}
				tried.Add(eps[0])
				tried.Add(eps[1])
			},
		},
		{
			name: "available preferred to ejected", n: 3, allowed: "c", all: true,
			setup: func(eps []*Endpoint, _ *Tried) { eps[0].EjectUntil(now + 1); eps[1].EjectUntil(now + 1) },
		},
		{
			name: "unhealthy never picked", n: 3, allowed: "ab", all: true,
			setup: func(eps []*Endpoint, _ *Tried) { eps[2].SetHealthy(false) },
		},
		{
			name: "healthy again", n: 3, allowed: "abc", all: true,
			setup: func(eps []*Endpoint, _ *Tried) { eps[2].SetHealthy(false); eps[2].SetHealthy(true) },
		},
		{
			name: "all unhealthy", n: 3, allowed: "",
			setup: func(eps []*Endpoint, _ *Tried) {
				for _, e := range eps {
					e.SetHealthy(false)
				}
			},
		},
		{
			name: "tried skipped", n: 3, allowed: "b", all: true,
			setup: func(eps []*Endpoint, tried *Tried) { tried.Add(eps[0]); tried.Add(eps[2]) },
		},
		{
			name: "all tried", n: 3, allowed: "",
			setup: func(eps []*Endpoint, tried *Tried) {
				for _, e := range eps {
					tried.Add(e)
				}
			},
		},
		{
			name: "tried and ejected", n: 3, allowed: "",
			setup: func(eps []*Endpoint, tried *Tried) {
				tried.Add(eps[0])
				tried.Add(eps[1])
				eps[2].SetHealthy(false)
			},
		},
		{name: "empty set", n: 0, allowed: ""},
		{name: "single", n: 1, allowed: "a", all: true},
	}
	for _, p := range allPolicies {
		for _, keyed := range []bool{true, false} {
			if !keyed && p.Kind != config.LBConsistentHash {
				continue
			}
			for _, tt := range tests {
				t.Run(fmt.Sprintf("%s/keyed=%v/%s", p.Kind, keyed, tt.name), func(t *testing.T) {
					eps := endpoints(tt.n, 3, 1, 2)
					var tried Tried
					if tt.setup != nil {
						tt.setup(eps, &tried)
					}
					s := NewSet(eps, p)
					got := map[string]int{}
					for i := range 300 {
						r := &http.Request{Header: http.Header{}}
						if keyed {
							r.Header.Set("X-User", fmt.Sprint("k", i))
						}
						e := s.Pick(r, &tried, now)
						if e == nil {
							got[""]++
							continue
						}
						n := name(eps, e)
						if !strings.Contains(tt.allowed, n) {
							t.Fatalf("picked %s, want one of %q", n, tt.allowed)
						}
						got[n]++
					}
					if tt.allowed == "" && got[""] != 300 {
						t.Fatalf("picks = %v, want only nil", got)
					}
					if tt.allowed != "" && got[""] > 0 {
						t.Fatalf("picks = %v, want no nil", got)
					}
					if tt.all {
						for _, c := range tt.allowed {
							if got[string(c)] == 0 {
								t.Errorf("picks = %v, want every one of %q", got, tt.allowed)
							}
						}
					}
				})
			}
		}
	}
}

// TestAvailabilityLargeSet makes the bounded scans (schedule, ring walk)
// run out and fall back to the linear scan.
func TestAvailabilityLargeSet(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(p.Kind, func(t *testing.T) {
			eps := endpoints(2000, slices.Repeat([]int{1, 1000}, 1000)...)
			for _, e := range eps[:1999] {
				e.EjectUntil(now + 1)
			}
			s := NewSet(eps, p)
			last := eps[1999]
			for i := range 100 {
				if e := s.Pick(keyRequest(fmt.Sprint(i)), nil, now); e != last {
					t.Fatalf("picked %s, want the only available endpoint %s", e.Addr, last.Addr)
				}
			}
			last.SetHealthy(false)
			var tried Tried
			tried.Add(eps[7])
			for i := range 100 {
				e := s.Pick(keyRequest(fmt.Sprint(i)), &tried, now)
				if e == nil || e == last || e == eps[7] {
					t.Fatalf("panic mode picked %v", e)
				}
			}
		})
	}
}

func TestTried(t *testing.T) {
	eps := endpoints(12)
	var tried Tried
	if tried.Has(eps[0]) || tried.Has(nil) {
		t.Fatal("empty Tried has an endpoint")
	}
	var nilTried *Tried
	if nilTried.Has(eps[0]) {
		t.Fatal("nil Tried has an endpoint")
	}
	tried.Add(nil)
	tried.Add(eps[0])
	tried.Add(eps[0])
	if tried.Len() != 1 {
		t.Fatalf("Len = %d after adding nil and one endpoint twice, want 1", tried.Len())
	}
	for _, e := range eps {
		tried.Add(e)
	}
	if tried.Len() != triedCap {
		t.Fatalf("Len = %d, want the capacity %d", tried.Len(), triedCap)
	}
	for i, e := range eps {
		if want := i < triedCap; tried.Has(e) != want {
			t.Errorf("Has(eps[%d]) = %v, want %v", i, !want, want)
		}
	}
}

func TestEndpoint(t *testing.T) {
	e := NewEndpoint("10.0.0.1:80", 0)
	if e.Weight != 1 {
		t.Errorf("weight 0 became %d, want 1", e.Weight)
	}
	if !e.Healthy() || e.EjectedAt(now) || !e.Available(now) {
		t.Fatal("a new endpoint is not available")
	}
	e.EjectUntil(now + 10)
	if !e.EjectedAt(now) || !e.EjectedAt(now+9) || e.EjectedAt(now+10) || e.Available(now) || !e.Available(now+10) {
		t.Error("ejection window wrong")
	}
	e.EjectUntil(0)
	e.SetHealthy(false)
	if e.Healthy() || e.Available(now) {
		t.Error("unhealthy endpoint available")
	}
	e.Acquire()
	e.Acquire()
	e.Release()
	if e.InFlight() != 1 {
		t.Errorf("InFlight = %d, want 1", e.InFlight())
	}
	var zero Endpoint
	if !zero.Available(now) {
		t.Error("zero Endpoint is not available")
	}
}

func TestNewSetCopies(t *testing.T) {
	eps := endpoints(3)
	in := []*Endpoint{eps[0], nil, eps[1], eps[2]}
	s := NewSet(in, Policy{Kind: config.LBWeighted})
	in[0] = nil
	eps[0].Weight = 100 // the Set keeps the weights it was built with
	if s.Len() != 3 || !slices.Equal(s.Endpoints(), eps) {
		t.Fatalf("Endpoints = %v", s.Endpoints())
	}
	counts := countPicks(s, 300, noRequest)
	if counts[eps[0]] != 100 {
		t.Errorf("a got %d of 300 picks, want 100", counts[eps[0]])
	}
}

func TestConcurrentPick(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(p.Kind, func(t *testing.T) {
			eps := endpoints(8, 1, 2, 3, 4, 1, 2, 3, 4)
			s := NewSet(eps, p)
			var wg sync.WaitGroup
			stop := make(chan struct{})
			// Health and ejection change under the pickers' feet; eps[0]
			// stays healthy so that a pick never has to return nil.
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					e := eps[1+i%7]
					e.SetHealthy(i%3 != 0)
					e.EjectUntil(now + int64(i%2))
				}
			})
			var pickers sync.WaitGroup
			for g := range 8 {
				pickers.Go(func() {
					var r http.Request
					r.Header = http.Header{"X-User": {fmt.Sprint("user", g)}}
					// Half the attempts stay in flight until the end, so
					// least_request sees load change while it compares.
					var held []*Endpoint
					defer func() {
						for _, e := range held {
							e.Release()
						}
					}()
					for i := range 2000 {
						var tried Tried
						for range 3 {
							e := s.Pick(&r, &tried, now)
							if e == nil {
								t.Errorf("nil pick on attempt %d", tried.Len()+1)
								return
							}
							tried.Add(e)
							e.Acquire()
							if i%2 == 0 {
								e.Release()
							} else {
								held = append(held, e)
							}
						}
					}
				})
			}
			pickers.Wait()
			close(stop)
			wg.Wait()
			for _, e := range eps {
				if n := e.InFlight(); n != 0 {
					t.Errorf("%s has %d in flight after every release", e.Addr, n)
				}
			}
		})
	}
}

func TestPickAllocs(t *testing.T) {
	header := &http.Request{Header: http.Header{"X-User": {"user-42"}}}
	cookie := &http.Request{Header: http.Header{"Cookie": {"theme=dark; uid=user-42"}}}
	remote := &http.Request{RemoteAddr: "192.0.2.7:51234"}
	tests := []struct {
		name   string
		policy Policy
		r      *http.Request
	}{
		{"round_robin", Policy{Kind: config.LBRoundRobin}, nil},
		{"weighted", Policy{Kind: config.LBWeighted}, nil},
		{"least_request", Policy{Kind: config.LBLeastRequest}, nil},
		{"consistent_hash/header", Policy{Kind: config.LBConsistentHash, HashOn: "header:X-User"}, header},
		{"consistent_hash/cookie", Policy{Kind: config.LBConsistentHash, HashOn: "cookie:uid"}, cookie},
		{"consistent_hash/client_ip", Policy{Kind: config.LBConsistentHash, HashOn: "client_ip"}, remote},
		{"consistent_hash/no key", Policy{Kind: config.LBConsistentHash, HashOn: "header:X-User"}, remote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := endpoints(100, slices.Repeat([]int{1, 2, 3}, 34)...)
			eps[5].EjectUntil(now + 1) // exercise a skip too
			s := NewSet(eps, tt.policy)
			var tried Tried
			tried.Add(eps[6])
			allocs := testing.AllocsPerRun(1000, func() {
				if s.Pick(tt.r, &tried, now) == nil {
					panic("nil pick")
				}
			})
			if allocs != 0 {
				t.Errorf("Pick allocates %.1f times per call, want 0", allocs)
			}
		})
	}
}

// TestSortRing compares the bucket sort with a plain comparison sort,
// including collisions (broken by Addr) and a bucket crowded enough to
// take the comparison-sort path.
func TestSortRing(t *testing.T) {
	eps := endpoints(50)
	rng := rand.New(rand.NewPCG(3, 4))
	var points []ringPoint
	for i := range 5000 {
		h := rng.Uint64()
		switch i % 10 {
		case 0:
			h = uint64(i % 7) // collisions across owners
		case 1:
			h = 1<<63 | uint64(i) // one crowded bucket
		}
		points = append(points, ringPoint{h, uint32(rng.IntN(len(eps)))})
	}
	// Owners sharing a hash need distinct Addrs for the order to be total.
	seen := map[[2]uint64]bool{}
	points = slices.DeleteFunc(points, func(p ringPoint) bool {
		k := [2]uint64{p.hash, uint64(p.owner)}
		dup := seen[k]
		seen[k] = true
		return dup
	})
	want := slices.Clone(points)
	slices.SortFunc(want, func(a, b ringPoint) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return strings.Compare(eps[a.owner].Addr, eps[b.owner].Addr)
	})
	rng.Shuffle(len(points), func(i, j int) { points[i], points[j] = points[j], points[i] })
	if got := sortRing(points, eps); !slices.Equal(got, want) {
		t.Error("sortRing order differs from a comparison sort")
	}
}
