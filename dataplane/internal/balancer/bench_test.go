package balancer

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

var sink *Endpoint

// benchEndpoints gives unequal weights so that weighted uses its schedule
// and least_request its weighted comparison.
func benchEndpoints(n int) []*Endpoint {
	eps := endpoints(n)
	for i, e := range eps {
		e.Weight = 1 + i%5
	}
	return eps
}

// benchRequests carries varying keys so consistent_hash lands all over the
// ring rather than on one cached path.
func benchRequests() []*http.Request {
	rs := make([]*http.Request, 1024)
	for i := range rs {
		rs[i] = &http.Request{Header: http.Header{"X-User": {fmt.Sprintf("user-%d", i*7919)}}}
	}
	return rs
}

func BenchmarkPick(b *testing.B) {
	rs := benchRequests()
	for _, p := range allPolicies {
		for _, n := range []int{3, 100, 1000} {
			b.Run(fmt.Sprintf("policy=%s/endpoints=%d", p.Kind, n), func(b *testing.B) {
				s := NewSet(benchEndpoints(n), p)
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					sink = s.Pick(rs[i&1023], nil, now)
				}
			})
		}
	}
}

// BenchmarkPickParallel shows the cost of the shared counter and in-flight
// atomics when every core picks from one Set.
func BenchmarkPickParallel(b *testing.B) {
	rs := benchRequests()
	for _, p := range allPolicies {
		b.Run(fmt.Sprintf("policy=%s/endpoints=100", p.Kind), func(b *testing.B) {
			s := NewSet(benchEndpoints(100), p)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					e := s.Pick(rs[i&1023], nil, now)
					e.Acquire()
					e.Release()
				}
			})
		})
	}
}

func BenchmarkNewSet(b *testing.B) {
	for _, kind := range []string{config.LBConsistentHash, config.LBWeighted} {
		b.Run(fmt.Sprintf("%s/endpoints=1000", kind), func(b *testing.B) {
			eps := benchEndpoints(1000)
			p := Policy{Kind: kind, HashOn: "header:X-User"}
			b.ReportAllocs()
			for b.Loop() {
				NewSet(eps, p)
			}
		})
	}
}
