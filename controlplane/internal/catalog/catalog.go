// Package catalog is the control plane's view of the configuration: the
// latest committed state, kept in memory and published atomically, every
// change applied as validate → compare-and-swap in the store → publish, and
// the encoded snapshot that data planes long-poll for.
//
// It also guards against a store that went back in time (epoch.go): writes
// are refused with ErrStoreReset until an operator restores the store or
// adopts it (Adopt), and the last good configuration stays published.
package catalog

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// Errors that the admin API maps to HTTP statuses.
var (
	ErrNotFound = errors.New("not found")
	// ErrPrecondition: If-Match named a version that is not the current one,
	// or If-None-Match: * found an existing object.
	ErrPrecondition = errors.New("precondition failed")
)

// maxCommitAttempts bounds retries when other replicas keep winning the CAS.
const maxCommitAttempts = 16

// Published is one committed revision as readers see it. It is immutable.
type Published struct {
	State *store.State

	encodeOnce sync.Once
	encoded    []byte
	encodeErr  error

	gzipOnce sync.Once
	gzipped  []byte
	gzipErr  error

	tokens tokenIndex
}

// SnapshotGzip returns the gzip-compressed snapshot, built once: a
// 10,000-route snapshot shrinks tenfold, and every data plane fetches it.
func (p *Published) SnapshotGzip() ([]byte, error) {
	p.gzipOnce.Do(func() {
		raw, err := p.Snapshot()
		if err != nil {
			p.gzipErr = err
			return
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		if _, err := zw.Write(raw); err != nil {
			p.gzipErr = err
			return
		}
		if err := zw.Close(); err != nil {
			p.gzipErr = err
			return
		}
		p.gzipped = buf.Bytes()
	})
	return p.gzipped, p.gzipErr
}

// Snapshot returns the encoded snapshot of this revision, built once.
func (p *Published) Snapshot() ([]byte, error) {
	p.encodeOnce.Do(func() {
		_, p.encoded, p.encodeErr = snapshot.EncodeEpoch(p.State.Revision, p.State.Epoch, &p.State.Config, time.Now())
	})
	return p.encoded, p.encodeErr
}

// Catalog owns the current configuration of one control-plane process.
type Catalog struct {
	store store.Store
	log   *slog.Logger
	now   func() time.Time

	cur atomic.Pointer[Published]
	// changed is closed and replaced whenever a newer revision is published,
	// waking every long poll at once.
	mu      sync.Mutex
	changed chan struct{}
	// writeMu serialises this process's writers so that they do not waste
	// CAS rounds on each other; other replicas are handled by the CAS.
	writeMu sync.Mutex
	// checkedRoute is a route the running mutation checked against the
	// rest of its next configuration (under writeMu; see validateTouched).
	checkedRoute string
	// nextTokens, when a mutation sets it, is the token list of the
	// revision it makes (tokens.go; under writeMu); otherwise the
	// current one carries over.
	nextTokens *[]store.Token
	// shapes indexes the routes of the published revision by path shape
	// for Put's check (claims.go; under writeMu).
	shapes shapeIndex
	// history remembers what each published revision changed, for the
	// deltas the sync API sends to data planes that are current.
	history history

	// reset is set while the store is found emptied or rolled back (see
	// epoch.go); writes are refused meanwhile.
	reset atomic.Pointer[StoreReset]
	// witness is a revision a data plane runs that the store may have lost;
	// poke asks Run to check the store now.
	witness atomic.Pointer[mark]
	poke    chan struct{}
}

// probeEvery is how often Run checks that the store did not go back in time,
// which no wait for a higher revision would notice.
const probeEvery = 2 * time.Second

// New loads the current state from st.
func New(ctx context.Context, st store.Store, log *slog.Logger) (*Catalog, error) {
	c := &Catalog{store: st, log: log, now: time.Now, changed: make(chan struct{}), poke: make(chan struct{}, 1)}
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Current returns the latest published revision.
func (c *Catalog) Current() *Published { return c.cur.Load() }

func (c *Catalog) refresh(ctx context.Context) error {
	s, err := c.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("load configuration: %w", err)
	}
	canonicalCollections(&s.Config)
	if !c.check(s) {
		return nil // the last good state stays published; writes are refused
	}
	if r := c.reset.Swap(nil); r != nil {
		msg := "store back where it was: accepting writes again"
		if s.Epoch.ID != r.SeenEpoch {
			msg = "store adopted by another control plane: following its new epoch, accepting writes again"
		}
		c.log.Warn(msg, "store", r.Where, "revision", s.Revision, "epoch", s.Epoch.ID, "previous_epoch", s.Epoch.Prev)
	}
	if cur := c.Current(); cur != nil && cur.State.Epoch.ID != s.Epoch.ID {
		c.publishEpoch(s) // a successor epoch (checked): its revision may be lower
		return nil
	}
	c.publish(s)
	return nil
}

// canonicalCollections puts a configuration's collections in the form the
// catalog publishes and stores: none nil, each in name order. (The objects'
// own canonical form is config's Normalize, applied when they are written.)
func canonicalCollections(cfg *config.Config) { canonicalFrom(cfg, nil) }

// canonicalFrom is canonicalCollections for a configuration made from
// prev, which is canonical: the routes it shares with prev are not read to
// check their order (config.SortFrom).
func canonicalFrom(cfg, prev *config.Config) {
	cfg.FillEmpty()
	cfg.SortFrom(prev)
}

// publish makes s current unless a newer revision is already published.
func (c *Catalog) publish(s *store.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.cur.Load(); old != nil && old.State.Epoch.ID == s.Epoch.ID && old.State.Revision >= s.Revision {
		return
	}
	c.history.record(c.cur.Load(), s)
	c.cur.Store(&Published{State: s})
	close(c.changed)
	c.changed = make(chan struct{})
}

// Wait returns the published revision once it is greater than after, or nil
// when ctx ends first.
func (c *Catalog) Wait(ctx context.Context, after int64) *Published {
	return c.WaitEpoch(ctx, after, "")
}

// WaitEpoch is Wait for a data plane that runs epoch: a published revision
// of another epoch (not revision 0, which is not a snapshot) is returned at
// once, whatever its number.
func (c *Catalog) WaitEpoch(ctx context.Context, after int64, epoch string) *Published {
	for {
		c.mu.Lock()
		p, ch := c.cur.Load(), c.changed
		c.mu.Unlock()
		if p.State.Revision > after {
			return p
		}
		if epoch != "" && p.State.Epoch.ID != "" && p.State.Epoch.ID != epoch && p.State.Revision > 0 {
			return p
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		}
	}
}

// Run follows the store for revisions committed by other control-plane
// replicas until ctx ends. With the embedded store it only sees this
// process's own commits, which are already published.
func (c *Catalog) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		rev, err := c.waitOrProbe(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil && rev > c.Current().State.Revision {
			err = c.follow(ctx, rev)
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		c.log.Warn("following the store failed; retrying", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// follow loads the store after it reached rev. This process's own commit
// wakes the wait before apply has published it; waiting for the writer
// first spares a load of the whole configuration per write, which at
// 100,000 routes costs more than the write.
func (c *Catalog) follow(ctx context.Context, rev int64) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if rev <= c.Current().State.Revision {
		return nil
	}
	return c.refresh(ctx)
}

// waitOrProbe waits for a higher revision for up to probeEvery (less when a
// data plane's report pokes it), then probes the store for a reset. It
// returns the revision waited for, or 0 after a probe.
func (c *Catalog) waitOrProbe(ctx context.Context) (int64, error) {
	wctx, cancel := context.WithTimeout(ctx, probeEvery)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-c.poke:
			cancel()
		case <-done:
		}
	}()
	rev, err := c.store.WaitRevision(wctx, c.Current().State.Revision)
	if wctx.Err() == nil || ctx.Err() != nil {
		return rev, err
	}
	pctx, pcancel := context.WithTimeout(ctx, probeEvery)
	defer pcancel()
	return 0, c.probe(pctx)
}

// Change describes an accepted write.
type Change struct {
	Revision int64
	// NoOp is true when the write changed nothing and no revision was made.
	NoOp  bool
	Entry store.AuditEntry
}

// mutation edits next (a copy of the current config, at revision cur) and
// describes the change for the audit log. Returning noop=true means there
// is nothing to write.
//
// next is a shallow copy (nextOf): its collections are its own, but the
// slices, maps and pointers inside each object are shared with the
// published revision, which readers and data planes may hold. A mutation
// replaces objects, or fields of an object in next, and never writes into
// what they point to: a list inside an object is cloned before it is
// edited (apikeys.go). Deep-copying 100,000 routes per write cost more
// than the rest of the write.
type mutation func(cur *store.State, next *config.Config, now time.Time) (entry store.AuditEntry, noop bool, err error)

// apply runs m against the latest state and commits the result, retrying on
// CAS conflicts with a fresh state so that preconditions are always checked
// against what is really stored.
func (c *Catalog) apply(ctx context.Context, actor Actor, m mutation) (*Change, *store.State, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		if c.reset.Load() != nil {
			// Look again first: another replica may have adopted the
			// store, or an operator restored it, since Run last probed.
			if err := c.refresh(ctx); err != nil {
				return nil, nil, err
			}
			if r := c.reset.Load(); r != nil {
				return nil, nil, r
			}
		}
		cur := c.Current().State
		next := nextOf(&cur.Config)
		now := c.now().UTC()
		c.checkedRoute = ""
		c.nextTokens = nil
		entry, noop, err := m(cur, next, now)
		if err != nil {
			return nil, nil, err
		}
		if noop {
			return &Change{Revision: cur.Revision, NoOp: true}, cur, nil
		}
		canonicalFrom(next, &cur.Config)
		// What the write touched, found once for the validation, the store
		// (which writes only that) and the history of deltas.
		touched := snapshot.Changes(&cur.Config, next)
		// The whole config is checked again however the mutation was
		// validated: a state that fails here must never be stored.
		if err := validateTouched(&cur.Config, next, &touched, c.checkedRoute); err != nil {
			return nil, nil, err
		}
		ep := cur.Epoch
		if ep.ID == "" {
			// The first revision of a store (or the first since epochs
			// exist) names the store's history.
			ep = snapshot.Epoch{ID: store.NewEpochID()}
		}
		st := &store.State{Revision: cur.Revision + 1, Epoch: ep, Config: *next, Touched: &touched, Prev: &cur.Config, Tokens: cur.Tokens}
		if c.nextTokens != nil {
			st.Tokens = *c.nextTokens
		}
		entry.Revision = st.Revision
		entry.Time = now
		actor.fill(&entry)
		err = c.store.Commit(ctx, st, entry)
		if errors.Is(err, store.ErrConflict) {
			// Another replica committed first: reload and re-run the mutation.
			if err := c.refresh(ctx); err != nil {
				return nil, nil, err
			}
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("commit revision %d: %w", st.Revision, err)
		}
		c.publish(st)
		c.shapes.advance(cur, st, &touched)
		if c.shapes.shapes == nil && len(st.Config.Routes) > 0 {
			// Dropped or never built (the first import): built now, as
			// part of the write that dropped it, instead of in the next
			// single write (at 100,000 routes ~100 ms; make bench-scale's
			// first write after its import paid it).
			c.shapes.at(st)
		}
		return &Change{Revision: st.Revision, Entry: entry}, st, nil
	}
	return nil, nil, fmt.Errorf("commit: %w after %d attempts", store.ErrConflict, maxCommitAttempts)
}

// nextOf returns the copy of cur a mutation edits (see mutation).
func nextOf(cur *config.Config) *config.Config {
	next := *cur
	next.Services = grown(cur.Services)
	next.Routes = grown(cur.Routes)
	next.Consumers = grown(cur.Consumers)
	next.Issuers = grown(cur.Issuers)
	next.Certificates = grown(cur.Certificates)
	return &next
}

// grown copies s with room for one more: a write usually creates one
// object, and growing 100,000 routes by one copies them all again.
func grown[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)+1), s...)
}

// Actor identifies who makes a change, for the audit log.
type Actor struct {
	Principal  string
	Claimed    string
	RemoteAddr string
	RequestID  string
}

func (a Actor) fill(e *store.AuditEntry) {
	e.Actor = a.Principal
	if a.Claimed != "" {
		e.Actor += " (as " + a.Claimed + ")"
	}
	e.RemoteAddr = a.RemoteAddr
	e.RequestID = a.RequestID
}

// Audit returns audit entries after a revision.
func (c *Catalog) Audit(ctx context.Context, after int64, limit int) ([]store.AuditEntry, error) {
	return c.store.Audit(ctx, after, limit)
}
