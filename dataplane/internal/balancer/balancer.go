// Package balancer chooses which upstream endpoint serves a request.
//
// A Set is an immutable list of endpoints plus whatever its policy
// precomputes; a new endpoint list (discovery update, config revision)
// builds a new Set. Live per-instance state — requests in flight, active
// health, passive ejection — lives on the Endpoint, which the proxy keeps
// across Sets so that state survives those rebuilds.
//
// Policies:
//
//   - round_robin (also the default, and any unknown name): endpoints in
//     turn, one shared atomic counter per Set. An endpoint that cannot be
//     used is skipped by moving on to the next one in the list.
//   - weighted: nginx's smooth weighted round robin, laid out once as a
//     schedule (weights 5,1,1 give a,a,b,a,c,a,a rather than five a's in
//     a row), so a pick is one atomic increment. Weight sums above 4096
//     are scaled down proportionally, every endpoint keeping at least one
//     slot. When a run of schedule slots is unusable (a heavy endpoint is
//     ejected) the pick degrades to plain round robin over the rest.
//   - least_request: power of two choices. Two distinct endpoints are
//     drawn at random and the one with fewer requests in flight wins
//     (in flight divided by weight when the weights differ). This avoids
//     both the herding of "always the least loaded" and a global scan.
//   - consistent_hash: a ketama-style hash ring of xxhash points, so that
//     every data plane maps a key to the same instance and adding or
//     removing one of N endpoints moves only about 1/N of the keys. The
//     key is a request header, a cookie or the client IP (Policy.HashOn).
//     When the key's endpoint cannot be used, the ring is walked to the
//     next distinct usable endpoint — exactly where the key would go if
//     that endpoint were removed. Requests without a key are spread
//     round robin.
//
// Every policy skips endpoints the request already tried (Tried), so
// retries go to another instance. An endpoint is usable when it is healthy
// (active checks) and not ejected (passive outlier detection). When no
// untried endpoint is usable, Pick enters panic mode: it applies the same
// policy to the healthy untried endpoints, ignoring ejection. Outlier
// ejection guesses from recent failures; when it has ejected everything,
// trying an ejected instance beats failing every request. Endpoints that
// fail active health checks are never picked.
package balancer

import (
	"math/bits"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/portico-gw/portico/shared/config"
)

// Endpoint is one upstream instance. Its identity is Addr; the proxy keeps
// the same *Endpoint across endpoint-set changes so live state survives.
//
// Addr and Weight are read by NewSet only, and each Set keeps its own copy
// of the weights: change Weight only from the goroutine that builds Sets,
// and only before building the Set that should see the new weight.
type Endpoint struct {
	Addr   string // "host:port"; identity, and what consistent_hash hashes
	Weight int    // >= 1; smaller values count as 1

	inFlight atomic.Int64
	// ejectedUntil is a unix-nano deadline so that ejection expires on its
	// own, without a timer to reinstate the endpoint.
	ejectedUntil atomic.Int64
	// unhealthy rather than healthy so that the zero value is healthy: an
	// endpoint is in rotation until a health check says otherwise.
	unhealthy atomic.Bool
}

// NewEndpoint returns a healthy, non-ejected endpoint.
func NewEndpoint(addr string, weight int) *Endpoint {
	return &Endpoint{Addr: addr, Weight: max(weight, 1)}
}

// Acquire counts an attempt that starts on e.
func (e *Endpoint) Acquire() { e.inFlight.Add(1) }

// Release counts an attempt on e that ended.
func (e *Endpoint) Release() { e.inFlight.Add(-1) }

// InFlight returns the attempts currently running on e.
func (e *Endpoint) InFlight() int64 { return e.inFlight.Load() }

// SetHealthy records the outcome of active health checking.
func (e *Endpoint) SetHealthy(ok bool) { e.unhealthy.Store(!ok) }

// Healthy reports whether active health checks consider e up.
func (e *Endpoint) Healthy() bool { return !e.unhealthy.Load() }

// EjectUntil takes e out of rotation until the given unix-nano time; 0
// reinstates it at once.
func (e *Endpoint) EjectUntil(unixNano int64) { e.ejectedUntil.Store(unixNano) }

// EjectedAt reports whether e is ejected at the given unix-nano time.
func (e *Endpoint) EjectedAt(nowUnixNano int64) bool {
	until := e.ejectedUntil.Load()
	return until != 0 && nowUnixNano < until
}

// Available reports whether e may receive traffic at the given time.
func (e *Endpoint) Available(nowUnixNano int64) bool {
	return e.Healthy() && !e.EjectedAt(nowUnixNano)
}

// Policy selects a load-balancing algorithm.
type Policy struct {
	Kind   string // config.LB*; "" or unknown means round_robin
	HashOn string // consistent_hash key: "header:<Name>", "cookie:<name>" or "client_ip"
	// ClientIP gives the client address for client_ip hashing; nil means
	// the TCP peer. Behind a trusted load balancer the peer is the load
	// balancer, so the data plane passes its X-Forwarded-For-aware
	// resolver here: every client would otherwise hash to one instance.
	ClientIP func(*http.Request) string
}

// triedCap is the config's maximum number of attempts (retries.attempts
// <= 10), so a request never runs out of room to remember where it went.
const triedCap = 10

// Tried records the endpoints one request already attempted. It is a
// fixed array so that a request can keep it on its stack.
type Tried struct {
	eps [triedCap]*Endpoint
	n   uint8
}

// Add records e. Beyond triedCap endpoints it is a no-op: a later retry
// may then revisit one, which beats allocating on the request path.
func (t *Tried) Add(e *Endpoint) {
	if e == nil || int(t.n) == len(t.eps) || t.Has(e) {
		return
	}
	t.eps[t.n] = e
	t.n++
}

// Has reports whether e was recorded.
func (t *Tried) Has(e *Endpoint) bool {
	if t == nil {
		return false
	}
	for _, x := range t.eps[:t.n] {
		if x == e {
			return true
		}
	}
	return false
}

// Len returns the number of endpoints recorded.
func (t *Tried) Len() int { return int(t.n) }

type kind uint8

const (
	kindRoundRobin kind = iota
	kindWeighted
	kindLeastRequest
	kindConsistentHash
)

type keySource uint8

const (
	keyNone keySource = iota // no key: every request spreads round robin
	keyHeader
	keyCookie
	keyClientIP
)

// mode is what Pick requires of an endpoint: first available, then, in
// panic mode, merely healthy.
type mode uint8

const (
	modeAvailable mode = iota
	modeHealthy
)

const (
	// maxSchedule bounds the weighted schedule to 16 KiB and its build to
	// 4096 steps per endpoint; coarser weight ratios are not worth more.
	maxSchedule = 4096
	// maxScheduleScan bounds how many schedule slots a pick inspects before
	// falling back to round robin, so that an ejected heavy endpoint (long
	// runs of its slots) cannot make a pick cost thousands of loads.
	maxScheduleScan = 64

	// pointsPerWeight is ketama's 160 virtual nodes per server: each
	// endpoint's share of the key space then deviates from its fair share
	// by about 1/sqrt(160) ≈ 8% (standard deviation).
	pointsPerWeight = 160
	// maxRingPoints caps the ring at 2^17 points (1.5 MiB: a uint64 hash
	// and a uint32 owner each) so that building it stays in the low
	// milliseconds. 1,000 endpoints of weight 1 get 131 points each
	// (≈ 9% deviation) instead of 160.
	maxRingPoints = 1 << 17
	// maxRingWalk bounds the walk past unusable endpoints before falling
	// back to a linear scan: with 160 interleaved points per endpoint it
	// meets every endpoint of a small set and hundreds of a large one.
	maxRingWalk = 1024

	cacheLine = 64
)

// Set is an immutable endpoint set with its policy's precomputed data.
// It is safe for concurrent use.
type Set struct {
	eps     []*Endpoint
	kind    kind
	weights []int64 // copied at NewSet: Pick never reads Endpoint.Weight
	uniform bool    // all weights equal: least_request compares raw counts

	// schedule lists endpoint indexes in smooth weighted order; nil when
	// the weights are equal, since the smooth order is then the list order.
	schedule []uint32

	key      keySource
	keyName  string // canonical header name or cookie name
	clientIP func(*http.Request) string
	ring     []uint64 // sorted point hashes
	owner    []uint32 // owner[i] is the endpoint index of ring[i]

	// next is bumped by every round-robin and weighted pick from every
	// core; padding keeps it off the cache line of the read-only fields
	// above, which every pick also reads.
	_    [cacheLine]byte
	next atomic.Uint64
	_    [cacheLine - 8]byte
}

// NewSet builds a Set over eps (nil entries are dropped). Addrs should be
// unique: two endpoints with one Addr share their ring points.
func NewSet(eps []*Endpoint, p Policy) *Set {
	s := &Set{eps: make([]*Endpoint, 0, len(eps))}
	for _, e := range eps {
		if e != nil {
			s.eps = append(s.eps, e)
		}
	}
	s.weights = make([]int64, len(s.eps))
	s.uniform = true
	for i, e := range s.eps {
		s.weights[i] = int64(max(e.Weight, 1))
		if s.weights[i] != s.weights[0] {
			s.uniform = false
		}
	}
	switch p.Kind {
	case config.LBWeighted:
		s.kind = kindWeighted
		if !s.uniform {
			s.schedule = smoothSchedule(s.weights)
		}
	case config.LBLeastRequest:
		s.kind = kindLeastRequest
	case config.LBConsistentHash:
		s.kind = kindConsistentHash
		s.key, s.keyName = parseHashOn(p.HashOn)
		s.clientIP = p.ClientIP
		s.ring, s.owner = buildRing(s.eps, s.weights)
	default:
		s.kind = kindRoundRobin
	}
	return s
}

func parseHashOn(h string) (keySource, string) {
	if h == "client_ip" {
		return keyClientIP, ""
	}
	kind, name, _ := strings.Cut(h, ":")
	switch {
	case name == "":
	case kind == "header":
		// Canonical once here, so the lookup per request is a plain map
		// access without Header.Get's canonicalization.
		return keyHeader, textproto.CanonicalMIMEHeaderKey(name)
	case kind == "cookie":
		return keyCookie, name
	}
	// Validation rejects anything else; should it get through, every
	// request lacks a key and the service is still served round robin.
	return keyNone, ""
}

// Len returns the number of endpoints.
func (s *Set) Len() int { return len(s.eps) }

// Endpoints returns the endpoints in the order given to NewSet. The slice
// is shared: callers must not modify it.
func (s *Set) Endpoints() []*Endpoint { return slices.Clip(s.eps) }

// Pick chooses an endpoint for r that is available at now and not in
// tried; failing that (panic mode), one that is healthy and not in tried,
// ejected or not. It returns nil when no endpoint is left. tried may be
// nil, and so may r: consistent_hash then has no key and spreads round
// robin.
func (s *Set) Pick(r *http.Request, tried *Tried, now int64) *Endpoint {
	if len(s.eps) == 0 {
		return nil
	}
	switch s.kind {
	case kindWeighted:
		if s.schedule != nil {
			return s.pickWeighted(tried, now)
		}
	case kindLeastRequest:
		return s.pickLeastRequest(tried, now)
	case kindConsistentHash:
		if key, ok := s.hashKey(r); ok {
			return s.pickHash(xxhash.Sum64String(key), tried, now)
		}
	}
	return s.pickRoundRobin(tried, now)
}

func usable(e *Endpoint, tried *Tried, now int64, m mode) bool {
	if !e.Healthy() || tried.Has(e) {
		return false
	}
	return m == modeHealthy || !e.EjectedAt(now)
}

// first returns the index of the first endpoint from start on (wrapping)
// that is usable under m and is not skip, or -1.
func (s *Set) first(start, skip int, tried *Tried, now int64, m mode) int {
	i := start
	for range s.eps {
		if i != skip && usable(s.eps[i], tried, now, m) {
			return i
		}
		if i++; i == len(s.eps) {
			i = 0
		}
	}
	return -1
}

func (s *Set) pickRoundRobin(tried *Tried, now int64) *Endpoint {
	start := int((s.next.Add(1) - 1) % uint64(len(s.eps)))
	i := s.first(start, -1, tried, now, modeAvailable)
	if i < 0 {
		if i = s.first(start, -1, tried, now, modeHealthy); i < 0 {
			return nil
		}
	}
	return s.eps[i]
}

func (s *Set) pickWeighted(tried *Tried, now int64) *Endpoint {
	n := s.next.Add(1) - 1
	pos := int(n % uint64(len(s.schedule)))
	for _, m := range [...]mode{modeAvailable, modeHealthy} {
		j := pos
		for range min(len(s.schedule), maxScheduleScan) {
			if e := s.eps[s.schedule[j]]; usable(e, tried, now, m) {
				return e
			}
			if j++; j == len(s.schedule) {
				j = 0
			}
		}
		// Weights no longer hold here, but the scan is bounded and the
		// load still spreads over what is left.
		if i := s.first(int(n%uint64(len(s.eps))), -1, tried, now, m); i >= 0 {
			return s.eps[i]
		}
	}
	return nil
}

func (s *Set) pickLeastRequest(tried *Tried, now int64) *Endpoint {
	// One random draw yields both candidates: Lemire's multiply-shift maps
	// each 32-bit half onto [0, n) with negligible bias for any realistic n.
	x := rand.Uint64()
	n := uint64(len(s.eps))
	a := int((x >> 32) * n >> 32)
	b := a
	if n > 1 {
		// Distinct from a by construction, so two candidates are two
		// endpoints whenever two are usable.
		b = int((x & 0xffffffff) * (n - 1) >> 32)
		if b >= a {
			b++
		}
	}
	m := modeAvailable
	i := s.first(a, -1, tried, now, m)
	if i < 0 {
		m = modeHealthy
		if i = s.first(a, -1, tried, now, m); i < 0 {
			return nil
		}
	}
	j := s.first(b, i, tried, now, m)
	if j < 0 {
		return s.eps[i]
	}
	ei, ej := s.eps[i], s.eps[j]
	li, lj := ei.InFlight(), ej.InFlight()
	if !s.uniform {
		// li/wi > lj/wj without division.
		li, lj = li*s.weights[j], lj*s.weights[i]
	}
	if lj < li {
		return ej
	}
	// Ties go to i, itself a random draw, so equal load spreads evenly.
	return ei
}

func (s *Set) pickHash(h uint64, tried *Tried, now int64) *Endpoint {
	start, _ := slices.BinarySearch(s.ring, h)
	if start == len(s.ring) {
		start = 0
	}
	for _, m := range [...]mode{modeAvailable, modeHealthy} {
		// Walking clockwise past unusable owners sends the key where it
		// would go if they were removed from the ring, so ejection and
		// recovery move no other keys.
		j, prev := start, uint32(len(s.eps))
		for range min(len(s.ring), maxRingWalk) {
			if o := s.owner[j]; o != prev {
				if e := s.eps[o]; usable(e, tried, now, m) {
					return e
				}
				prev = o
			}
			if j++; j == len(s.ring) {
				j = 0
			}
		}
		// Most of a large set is unusable. Still deterministic per key,
		// though no longer ring order.
		if i := s.first(int(s.owner[start]), -1, tried, now, m); i >= 0 {
			return s.eps[i]
		}
	}
	return nil
}

// hashKey extracts the consistent-hash key of r. An empty value counts as
// missing: hashing it would pin every such request to one endpoint.
func (s *Set) hashKey(r *http.Request) (string, bool) {
	if r == nil {
		return "", false
	}
	var v string
	switch s.key {
	case keyHeader:
		if vs := r.Header[s.keyName]; len(vs) > 0 {
			v = vs[0]
		}
	case keyCookie:
		v = cookieValue(r.Header["Cookie"], s.keyName)
	case keyClientIP:
		if s.clientIP != nil {
			v = s.clientIP(r)
		} else {
			v = hostOnly(r.RemoteAddr)
		}
	}
	return v, v != ""
}

// cookieValue finds a cookie in Cookie header lines the way
// http.Request.Cookie does, without its allocations (it builds a
// []*http.Cookie): the value is a substring of the header.
func cookieValue(lines []string, name string) string {
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.Trim(part, " \t")
			n, v, ok := strings.Cut(part, "=")
			if !ok || n != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return ""
}

// hostOnly returns the host part of a "host:port" RemoteAddr.
// net.SplitHostPort would allocate an error for an address without port.
func hostOnly(addr string) string {
	if strings.HasPrefix(addr, "[") {
		if end := strings.IndexByte(addr, ']'); end > 0 {
			return addr[1:end]
		}
		return addr
	}
	i := strings.LastIndexByte(addr, ':')
	if i < 0 || strings.IndexByte(addr, ':') != i {
		// No port, or a bare IPv6 address.
		return addr
	}
	return addr[:i]
}

// smoothSchedule lays out nginx's smooth weighted round robin: each step
// every endpoint gains its weight and the richest is picked and pays the
// total. Weights are divided by their GCD first: scaling all weights
// repeats the same cycle, so the shorter one is equivalent.
func smoothSchedule(weights []int64) []uint32 {
	var g int64
	for _, w := range weights {
		g = gcd(g, w)
	}
	ws := make([]int64, len(weights))
	var total int64
	for i, w := range weights {
		ws[i] = w / g
		total += ws[i]
	}
	if total > maxSchedule {
		var scaled int64
		for i, w := range ws {
			// Rounded rather than truncated to keep the ratios closer.
			ws[i] = max(1, (w*maxSchedule+total/2)/total)
			scaled += ws[i]
		}
		total = scaled
	}
	current := make([]int64, len(ws))
	out := make([]uint32, total)
	for k := range out {
		best := 0
		for i, w := range ws {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		out[k] = uint32(best)
	}
	return out
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// buildRing places each endpoint's points on the ring. Points depend only
// on the endpoint's Addr and its point count, and a larger count only adds
// points, so an endpoint joining, leaving or changing weight moves keys
// only to or from itself — unless the ring is at its cap, where the
// per-weight count shrinks for everyone.
func buildRing(eps []*Endpoint, weights []int64) ([]uint64, []uint32) {
	var sum int64
	for _, w := range weights {
		sum += w
	}
	counts := make([]int, len(eps))
	total := 0
	for i, w := range weights {
		if sum*pointsPerWeight <= maxRingPoints {
			counts[i] = int(w * pointsPerWeight)
		} else {
			counts[i] = int(max(1, w*maxRingPoints/sum))
		}
		total += counts[i]
	}
	points := make([]ringPoint, 0, total)
	var buf []byte
	for i, e := range eps {
		buf = append(buf[:0], e.Addr...)
		buf = append(buf, '#')
		n := len(buf)
		for k := range counts[i] {
			buf = strconv.AppendInt(buf[:n], int64(k), 10)
			points = append(points, ringPoint{xxhash.Sum64(buf), uint32(i)})
		}
	}
	points = sortRing(points, eps)
	ring := make([]uint64, len(points))
	owner := make([]uint32, len(points))
	for i, p := range points {
		ring[i], owner[i] = p.hash, p.owner
	}
	return ring, owner
}

type ringPoint struct {
	hash  uint64
	owner uint32
}

// sortRing orders points by hash. A comparison sort of a 1,000-endpoint
// ring took most of NewSet's ~17 ms; hashes are uniform, so distributing
// them into one bucket per point by their top bits leaves about one point
// per bucket and makes the sort linear. Crafted addresses that crowd one
// bucket only fall back to a comparison sort of that bucket.
func sortRing(points []ringPoint, eps []*Endpoint) []ringPoint {
	// Ties (hash collisions) are broken by Addr, not by position in eps,
	// so that every data plane builds the same ring whatever order its
	// endpoints arrived in.
	less := func(a, b ringPoint) int {
		if a.hash != b.hash {
			if a.hash < b.hash {
				return -1
			}
			return 1
		}
		return strings.Compare(eps[a.owner].Addr, eps[b.owner].Addr)
	}
	if len(points) < 64 {
		slices.SortFunc(points, less)
		return points
	}
	// Between n/2 and n buckets.
	shift := 64 - (bits.Len(uint(len(points))) - 1)
	bucket := func(p ringPoint) int { return int(p.hash >> shift) }
	// start[b] is where bucket b begins in the output; the extra entry
	// closes the last bucket.
	start := make([]int32, 1<<(64-shift)+1)
	for _, p := range points {
		start[bucket(p)+1]++
	}
	for b := 1; b < len(start); b++ {
		start[b] += start[b-1]
	}
	next := slices.Clone(start[:len(start)-1])
	out := make([]ringPoint, len(points))
	for _, p := range points {
		b := bucket(p)
		out[next[b]] = p
		next[b]++
	}
	for b := range len(start) - 1 {
		seg := out[start[b]:start[b+1]]
		if len(seg) > 8 {
			slices.SortFunc(seg, less)
			continue
		}
		for i := 1; i < len(seg); i++ {
			for j := i; j > 0 && less(seg[j], seg[j-1]) < 0; j-- {
				seg[j], seg[j-1] = seg[j-1], seg[j]
			}
		}
	}
	return out
}
