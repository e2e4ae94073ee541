package proxy

import (
	"sync"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// Applier changes the configuration a Handler serves: the one way a data
// plane applies a snapshot, used by the data plane's main (through the
// syncer) and by the tests, so that the order of the steps lives in one
// place.
type Applier struct {
	h    *Handler
	deps Deps
	// mu makes applies one at a time: each compiles against the table the
	// previous one put in service, and two racing swaps would retire what
	// the other's table still uses.
	mu sync.Mutex
}

// NewApplier returns the Applier of h; deps are what every compiled table
// uses (discovery, issuer options, the gRPC pool).
func NewApplier(h *Handler, deps Deps) *Applier { return &Applier{h: h, deps: deps} }

// Apply puts the whole snapshot s in service (ApplyChange without a
// Change).
func (a *Applier) Apply(s *snapshot.Snapshot) ([]config.Rejected, error) {
	return a.ApplyChange(s, nil)
}

// ApplyChange puts s in service in four steps:
//
//  1. compile s against the table in service: when ch says which objects
//     s changed from the snapshot that table was compiled from (a delta),
//     only those (compileChange, delta.go: work in proportion to the
//     change, not to the configuration); otherwise, or when the change
//     cannot be compiled on its own, the whole of s (Compile: incremental
//     too, services and issuers that did not change carry over with their
//     state, but a pass over every object);
//  2. start what the new table brought (discovery watches, health checks);
//  3. swap it in: requests that start from now on see s, requests in
//     flight finish on the table they loaded;
//  4. retire what the old table held that the new one does not.
//
// It returns the objects of s that were left out (Table.Rejected), which the
// syncer logs and reports to the control plane. On error (a problem of no
// one object, see Compile) nothing changed: the table in service keeps
// serving.
func (a *Applier) ApplyChange(s *snapshot.Snapshot, ch *snapshot.Change) ([]config.Rejected, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.h.Table()
	t := compileChange(s, ch, prev, a.deps)
	if t == nil {
		var err error
		if t, err = Compile(s, prev, a.deps); err != nil {
			return nil, err
		}
	}
	t.Start()
	a.h.Swap(t) // retires the old table's leftovers
	return t.Rejected(), nil
}

// Close retires the table in service, for a handler that stops serving:
// health checks, discovery watches and key refreshes end.
func (a *Applier) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t := a.h.Table(); t != nil {
		t.Retire(nil)
	}
}
