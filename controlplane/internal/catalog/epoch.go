package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/snapshot"
)

// ErrStoreReset means the store went back in time behind this control
// plane's back: it holds a lower revision, or another epoch, than the one the
// control plane last saw (a Consul agent restarted without its data, an older
// backup restored). Writes are refused until an operator adopts the store
// (Adopt) or restores it; the error wraps a *StoreReset that says what
// happened.
var ErrStoreReset = errors.New("store reset")

// ErrNoReset is returned by Adopt when the store is where this control plane
// left it: there is nothing to accept.
var ErrNoReset = errors.New("the store has not been reset")

// StoreReset describes a store found emptied or rolled back.
type StoreReset struct {
	Where string `json:"store"`
	// What the store holds now.
	StoreRevision int64  `json:"store_revision"`
	StoreEpoch    string `json:"store_epoch"`
	// What this control plane (or a data plane it serves) last saw.
	SeenRevision int64     `json:"seen_revision"`
	SeenEpoch    string    `json:"seen_epoch"`
	DetectedAt   time.Time `json:"detected_at"`
}

func (r *StoreReset) Error() string {
	return fmt.Sprintf("the store at %s is at revision %d of epoch %q, but revision %d of epoch %q was seen; "+
		"restore the store from a backup, or POST /v1/store/adopt to accept the store as it is "+
		"(then PUT /v1/config to re-seed it from an export)",
		r.Where, r.StoreRevision, quoteEpoch(r.StoreEpoch), r.SeenRevision, quoteEpoch(r.SeenEpoch))
}

func (r *StoreReset) Unwrap() error { return ErrStoreReset }

func quoteEpoch(id string) string {
	if id == "" {
		return "(none)"
	}
	return id
}

// mark is a revision of an epoch that was seen.
type mark struct {
	rev   int64
	epoch string
}

// wentBack reports whether the store state st cannot follow seen: a lower
// revision of the same epoch, or an epoch that neither continues seen's nor
// succeeds it. A store written before epochs ("" seen) may gain one.
func wentBack(seen mark, st *store.State) bool {
	switch {
	case st.Epoch.ID == seen.epoch:
		return st.Revision < seen.rev
	case seen.epoch == "":
		return st.Revision < seen.rev
	case st.Epoch.Prev == seen.epoch:
		return false // adopted by another replica: follow it
	default:
		return true
	}
}

// Reset returns the detected store reset, or nil.
func (c *Catalog) Reset() *StoreReset { return c.reset.Load() }

// Epoch returns the epoch of the current revision.
func (c *Catalog) Epoch() snapshot.Epoch { return c.Current().State.Epoch }

// check compares a freshly loaded store state with what was seen and flags a
// reset. It returns true when st may be published.
func (c *Catalog) check(st *store.State) bool {
	cur := c.Current()
	if cur == nil {
		return true
	}
	seen := mark{cur.State.Revision, cur.State.Epoch.ID}
	if w := c.witness.Load(); w != nil {
		if !wentBack(*w, st) {
			c.witness.CompareAndSwap(w, nil) // the store has it: a lagging replica
		} else if wentBack(*w, cur.State) {
			// A data plane runs a revision this control plane never saw (it
			// started after the store was reset): that is what was seen.
			seen = *w
		}
	}
	if !wentBack(seen, st) {
		return true
	}
	r := &StoreReset{
		Where: store.Describe(c.store), StoreRevision: st.Revision, StoreEpoch: st.Epoch.ID,
		SeenRevision: seen.rev, SeenEpoch: seen.epoch, DetectedAt: c.now().UTC(),
	}
	if old := c.reset.Load(); old == nil || old.StoreRevision != r.StoreRevision || old.StoreEpoch != r.StoreEpoch {
		c.reset.Store(r)
		c.log.Error("store reset: refusing writes until an operator restores the store or adopts it",
			"store", r.Where, "store_revision", r.StoreRevision, "store_epoch", r.StoreEpoch,
			"seen_revision", r.SeenRevision, "seen_epoch", r.SeenEpoch)
	}
	return false
}

// Witness records what a data plane reports it runs. A control plane started
// on a store that was emptied or rolled back has never seen the lost
// revisions, but its data planes have: the next store check (Run, a write)
// treats a data plane ahead of the store in the store's own epoch, or on an
// epoch the store does not know while the store is empty, as a reset. It
// does no I/O; it is called on every poll.
func (c *Catalog) Witness(rev int64, epoch string) {
	if epoch == "" || rev <= 0 {
		return
	}
	cur := c.Current().State
	ahead := (epoch == cur.Epoch.ID && rev > cur.Revision) || (cur.Revision == 0 && cur.Epoch.ID == "")
	if !ahead {
		return
	}
	for {
		old := c.witness.Load()
		if old != nil && (old.epoch != epoch || old.rev >= rev) {
			return // the first witness stands; one is enough
		}
		if c.witness.CompareAndSwap(old, &mark{rev, epoch}) {
			select {
			case c.poke <- struct{}{}:
			default:
			}
			return
		}
	}
}

// Adopt accepts the store after a reset: it starts a new epoch whose
// predecessor is the one that was seen, at the store's revision + 1, so that
// data planes (which take a lower revision only in a new epoch) and other
// control-plane replicas (which follow an epoch that succeeds the one they
// saw) move to it. The new revision holds the store's configuration as it
// is, or with lastSeen the configuration this control plane last published
// (what the data planes run: committed and validated before, so re-seeding
// with it loses nothing the data planes had). Only an operator calls it;
// nothing adopts a store by itself.
func (c *Catalog) Adopt(ctx context.Context, actor Actor, lastSeen bool) (*Change, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	r := c.reset.Load()
	if r == nil {
		return nil, ErrNoReset
	}
	st, err := c.store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("adopt: load the store: %w", err)
	}
	canonicalCollections(&st.Config)
	now := c.now().UTC()
	next := &store.State{
		Revision: st.Revision + 1,
		Epoch:    snapshot.Epoch{ID: store.NewEpochID(), Prev: r.SeenEpoch},
		Config:   st.Config,
		Tokens:   st.Tokens,
	}
	entry := store.AuditEntry{
		Revision: next.Revision, Time: now, Action: "adopt",
		Summary: fmt.Sprintf("adopted the store as it was (revision %d of epoch %s) as epoch %s; revision %d of epoch %s was lost",
			st.Revision, quoteEpoch(st.Epoch.ID), next.Epoch.ID, r.SeenRevision, quoteEpoch(r.SeenEpoch)),
	}
	if lastSeen {
		seen := c.Current().State
		next.Config = *seen.Config.Clone()
		next.Tokens = seen.Tokens
		entry.Summary = fmt.Sprintf("re-seeded the store (found at revision %d of epoch %s) with revision %d of epoch %s, "+
			"this control plane's last published configuration, as epoch %s",
			st.Revision, quoteEpoch(st.Epoch.ID), seen.Revision, quoteEpoch(seen.Epoch.ID), next.Epoch.ID)
	}
	actor.fill(&entry)
	if err := c.store.Commit(ctx, next, entry); err != nil {
		return nil, fmt.Errorf("adopt: commit revision %d: %w", next.Revision, err)
	}
	c.witness.Store(nil)
	c.reset.Store(nil)
	c.publishEpoch(next)
	c.log.Warn("store adopted: a new epoch starts", "store", r.Where, "revision", next.Revision,
		"epoch", next.Epoch.ID, "previous_epoch", next.Epoch.Prev, "lost_revision", r.SeenRevision)
	return &Change{Revision: next.Revision, Entry: entry}, nil
}

// publishEpoch publishes s even if its revision is lower than the current
// one: only for a state already checked to start or follow a new epoch.
func (c *Catalog) publishEpoch(s *store.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur.Store(&Published{State: s})
	close(c.changed)
	c.changed = make(chan struct{})
}

// probe checks the store's revision without loading it, and reloads when
// it differs from the published one: a store emptied under a control plane
// never wakes WaitRevision, whose wait is for a higher revision.
func (c *Catalog) probe(ctx context.Context) error {
	rev, err := c.store.WaitRevision(ctx, -1)
	if err != nil {
		return err
	}
	cur := c.Current().State
	if rev != cur.Revision || c.witness.Load() != nil || c.reset.Load() != nil {
		return c.refresh(ctx)
	}
	return nil
}

// Store returns the store the catalog writes to.
func (c *Catalog) Store() store.Store { return c.store }
