// Package split is the weighted split of a route across services (issue
// 16): the choice of the service a request goes to, made before the
// terminal stage forwards it through the one call path (upstream.Call).
//
// # Choosing
//
// The backends' weights lay out shares of [0, 1) in list order: with
// users-v1 90 and users-v2 10, v1 owns [0, 0.9) and v2 [0.9, 1). A request
// takes a point and goes to the backend whose share holds it:
//
//   - Without Sticky, or when the request lacks the key, the point is
//     random (math/rand/v2, no lock), so over many requests each backend
//     gets its weight's share.
//   - With Sticky ("consumer", "header:<Name>", "cookie:<name>"), the point
//     is a hash of the key: FNV-1a 64 finished with the SplitMix64 mixer,
//     with no per-process seed, so every data plane puts a key in the same
//     place. Changing weights moves a share's boundary and only the keys
//     between the old and the new boundary change sides: from 90/10 to
//     50/50 the keys in [0.5, 0.9) move to v2 and every key already on v2
//     stays there. Keys never flap between versions while a canary grows
//     monotonically; shrinking it moves keys back the same way.
//
// A backend of weight 0 is drained: no point falls in its share. The
// choice is made once per request; retries stay within the chosen
// service (upstream.Call retries on another instance of it).
package split

import (
	"math/bits"
	"math/rand/v2"
	"net/textproto"
	"strings"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
)

// Backend is one service of a split, compiled.
type Backend struct {
	Up     *upstream.Upstream
	Weight int
}

// Split is a route's compiled split. It is immutable.
type Split struct {
	backends []Backend
	// cum[i] is the sum of the weights of backends[:i+1].
	cum   []uint64
	total uint64
	// sticky key: kind "consumer", "header" or "cookie", and the name.
	kind, name string
}

// Compile returns the split of route r over the table's upstreams, or nil
// when the route has no backends. Every backend's upstream must exist
// (the caller rejects a route depending on a rejected service first).
func Compile(r *config.Route, ups map[string]*upstream.Upstream) *Split {
	if len(r.Split) == 0 {
		return nil
	}
	s := &Split{}
	for _, b := range r.Split {
		s.total += uint64(b.Weight)
		s.backends = append(s.backends, Backend{Up: ups[b.Service], Weight: b.Weight})
		s.cum = append(s.cum, s.total)
	}
	switch kind, name, _ := strings.Cut(r.Sticky, ":"); kind {
	case "header":
		// net/http keeps request header names canonical.
		s.kind, s.name = kind, textproto.CanonicalMIMEHeaderKey(name)
	case "cookie", config.StickyConsumer:
		s.kind, s.name = kind, name
	}
	return s
}

// Choose picks the upstream for req.
func (s *Split) Choose(req *stage.Request) *upstream.Upstream {
	return s.backends[s.index(s.key(req))].Up
}

// index returns the backend whose share holds key's point; a random point
// for key "".
func (s *Split) index(key string) int {
	var p uint64
	if key == "" {
		p = rand.Uint64()
	} else {
		p = Point(key)
	}
	// hi = floor(p / 2^64 * total): the point scaled to the weights.
	hi, _ := bits.Mul64(p, s.total)
	for i, c := range s.cum {
		if hi < c {
			return i
		}
	}
	return len(s.cum) - 1 // unreachable: hi < total = cum[last]
}

// key is the request's sticky key, "" for none.
func (s *Split) key(req *stage.Request) string {
	switch s.kind {
	case config.StickyConsumer:
		if req.Identity != nil {
			return req.Identity.Consumer
		}
	case "header":
		if v := req.R.Header[s.name]; len(v) > 0 {
			return v[0]
		}
	case "cookie":
		return cookie(req.R.Header["Cookie"], s.name)
	}
	return ""
}

// Point is a key's place in [0, 2^64): FNV-1a 64 of the key, mixed by
// SplitMix64's finaliser so that similar keys spread evenly.
func Point(key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// cookie returns the first cookie called name in the Cookie headers.
func cookie(headers []string, name string) string {
	for _, h := range headers {
		for h != "" {
			var part string
			part, h, _ = strings.Cut(h, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}

// Describe shows the split for the stages golden file.
func (s *Split) Describe() any {
	type backend struct {
		Service string `json:"service"`
		Weight  int    `json:"weight"`
	}
	out := struct {
		Backends []backend `json:"backends"`
		Sticky   string    `json:"sticky,omitempty"`
	}{}
	for _, b := range s.backends {
		out.Backends = append(out.Backends, backend{b.Up.Name, b.Weight})
	}
	if s.kind != "" {
		out.Sticky = s.kind
		if s.name != "" {
			out.Sticky += ":" + s.name
		}
	}
	return out
}
