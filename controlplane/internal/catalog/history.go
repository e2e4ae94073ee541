package catalog

import (
	"fmt"
	"sync"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/snapshot"
)

// History bounds: how many published steps, and how many object names over
// all of them (names are at most config.MaxNameLen bytes, so this bounds the
// bytes too), the catalog remembers for deltas. A data plane further
// behind gets the full snapshot, which is what it would cost anyway.
const (
	maxHistorySteps = 1024
	maxHistoryNames = 200_000
	// maxCachedDeltas and maxCachedBytes bound the encoded deltas kept for
	// the current revision: data planes at the same base share one
	// encoding.
	maxCachedDeltas = 8
	maxCachedBytes  = 16 << 20
)

// history is the catalog's memory of what each published revision
// changed, so that the sync API can answer a data plane that is current
// with a snapshot.Delta instead of the whole configuration. It also keeps
// the digest (snapshot.Digest) of the latest published revision, advanced
// step by step. It is safe for concurrent use.
type history struct {
	mu    sync.Mutex
	steps []step
	names int
	// digest is that of the configuration at (epoch, rev).
	epoch  string
	rev    int64
	digest snapshot.Digest
	// cache holds encoded deltas to rev, by base revision; cached is its
	// size in bytes.
	cache  map[int64][]byte
	cached int
}

// step is one published change: the objects touched going from revision
// from to revision to (more than one apart when another replica's commits
// are picked up together).
type step struct {
	from, to int64
	touched  snapshot.Touched
}

// record notes that s is published after old (nil at first). It is called
// with the catalog's publish lock held, once per published revision, and
// costs a merge over the object names plus hashing the touched objects.
func (h *history) record(old *Published, s *store.State) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cache, h.cached = nil, 0
	continues := old != nil && old.State.Epoch.ID == s.Epoch.ID && h.epoch == s.Epoch.ID &&
		h.rev == old.State.Revision && s.Revision > old.State.Revision
	if !continues {
		// First revision, a new epoch, or a step we did not see: start over.
		h.reset(s)
		return
	}
	var t snapshot.Touched
	if s.Touched != nil && s.Revision == old.State.Revision+1 {
		t = *s.Touched // what apply found, against the published revision before
	} else {
		t = snapshot.Changes(&old.State.Config, &s.Config)
	}
	total := len(s.Config.Services) + len(s.Config.Routes) + len(s.Config.Consumers) + len(s.Config.Issuers) + len(s.Config.Certificates)
	var err error
	if t.Len() > total/2 {
		// A bulk change (an import): hashing everything once is cheaper
		// than taking out and putting back half of it, and no delta would
		// be worth sending across it anyway.
		h.reset(s)
		return
	}
	if h.digest, err = h.digest.Advance(&old.State.Config, &s.Config, &t); err != nil {
		h.reset(s)
		return
	}
	h.rev = s.Revision
	h.steps = append(h.steps, step{from: old.State.Revision, to: s.Revision, touched: t})
	h.names += t.Len()
	for len(h.steps) > maxHistorySteps || h.names > maxHistoryNames {
		h.names -= h.steps[0].touched.Len()
		h.steps[0] = step{}
		h.steps = h.steps[1:]
	}
}

// reset forgets every step and hashes s whole.
func (h *history) reset(s *store.State) {
	h.steps, h.names = nil, 0
	h.epoch, h.rev = s.Epoch.ID, s.Revision
	d, err := snapshot.DigestOf(&s.Config)
	if err != nil {
		// Not a digest we can vouch for: serve full snapshots only.
		h.epoch, h.rev = "", -1
		return
	}
	h.digest = d
}

// delta returns the encoded delta from base to p, or nil when the history
// cannot produce it (p is not the latest recorded revision, base is of
// another epoch or older than the history, or the delta would carry more
// than half the configuration).
func (h *history) delta(p *Published, base int64, epoch string, now time.Time) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := p.State
	if base <= 0 || base >= s.Revision || epoch != s.Epoch.ID || h.epoch != s.Epoch.ID || h.rev != s.Revision {
		return nil, nil
	}
	if b, ok := h.cache[base]; ok {
		return b, nil
	}
	i := len(h.steps)
	for i > 0 && h.steps[i-1].from >= base {
		i--
	}
	if i == len(h.steps) || h.steps[i].from != base {
		return nil, nil // base is not a revision the history starts a step at
	}
	var t snapshot.Touched
	for _, st := range h.steps[i:] {
		t.Merge(&st.touched)
	}
	total := len(s.Config.Services) + len(s.Config.Routes) + len(s.Config.Consumers) + len(s.Config.Issuers) + len(s.Config.Certificates)
	if t.Len() > total/2 {
		return nil, nil
	}
	b, err := snapshot.EncodeDelta(snapshot.NewDelta(base, s.Revision, s.Epoch, &s.Config, &t, h.digest, now))
	if err != nil {
		return nil, fmt.Errorf("delta %d..%d: %w", base, s.Revision, err)
	}
	if h.cache == nil || len(h.cache) >= maxCachedDeltas || h.cached+len(b) > maxCachedBytes {
		h.cache, h.cached = map[int64][]byte{}, 0
	}
	if len(b) <= maxCachedBytes {
		h.cache[base] = b
		h.cached += len(b)
	}
	return b, nil
}

// Delta returns the encoded delta that turns revision base of epoch into
// p, or nil when only the full snapshot will do.
func (c *Catalog) Delta(p *Published, base int64, epoch string) ([]byte, error) {
	return c.history.delta(p, base, epoch, c.now())
}
