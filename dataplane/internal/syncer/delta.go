package syncer

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/portico-gw/portico/shared/snapshot"
)

// Deltas. The syncer keeps the whole configuration it applied (the base)
// and, once it has one, asks the control plane for deltas (client
// PollRequest.Deltas): the objects changed since the applied revision
// instead of the whole configuration. A delta is applied to the base, and
// the digest of the result (snapshot.Digest, advanced over the touched
// objects only) must equal the one the control plane sent; otherwise the
// base was not the control plane's idea of it, and the next poll asks for
// the full snapshot at once (After 0, no deltas). A delta that applies is
// installed like a snapshot, with the snapshot.Change it made (the base and
// the names Delta.Apply touched), so that the data plane compiles only
// those (proxy.Applier.ApplyChange), and the state dir gets the whole
// resulting configuration as a sealed snapshot, so a restart without a
// control plane serves it.

// base is the applied configuration deltas apply to. Only the poll loop
// (and Boot before it) touches it.
type base struct {
	snap *snapshot.Snapshot
	// digest is snap's digest once known. After a full snapshot it is
	// computed in the background (pending): hashing 100,000 objects takes
	// a good fraction of a second, better spent while no write is waiting
	// than on the first delta's path.
	digest  *snapshot.Digest
	pending *pendingDigest
	// next is the digest of the configuration being installed, when the
	// caller knows it (a delta): keep takes it instead of hashing.
	next *snapshot.Digest
	// needFull: the last delta did not apply; ask for the whole snapshot.
	needFull bool
}

// pendingDigest is a digest being computed by its own goroutine, which
// ends when the hashing does (it holds no resource and waits on nothing).
type pendingDigest struct {
	done chan struct{}
	d    snapshot.Digest
	err  error
}

// keep makes snap, just installed, the base of the next delta, with the
// digest applyDelta advanced or, after a full snapshot, one being hashed.
func (s *Syncer) keep(snap *snapshot.Snapshot) {
	if d := s.base.next; d != nil {
		s.base = base{snap: snap, digest: d}
		return
	}
	p := &pendingDigest{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.d, p.err = snapshot.DigestOf(&snap.Config)
	}()
	s.base = base{snap: snap, pending: p}
}

// pollAfter is the revision the next poll waits to pass: the applied one
// (or a rejected one after it), or 0 when a full snapshot is needed now.
func (s *Syncer) pollAfter(applied int64) int64 {
	if s.base.needFull {
		return 0
	}
	return max(applied, s.rejected.Load())
}

// wantDeltas says whether the next poll may be answered with a delta.
func (s *Syncer) wantDeltas() bool { return s.base.snap != nil && !s.base.needFull }

// applyDelta applies an encoded delta to the base and installs the result.
// A delta that does not fit the base sets needFull and is not an error of
// the link: the next poll fetches the full snapshot at once.
func (s *Syncer) applyDelta(raw []byte, applied int64) error {
	start := time.Now()
	d, err := snapshot.DecodeDelta(raw)
	if err != nil {
		return s.fallBack(applied, 0, err)
	}
	b := s.base.snap
	if b == nil || d.Base != b.Revision || d.Epoch.ID != b.Epoch.ID {
		return s.fallBack(applied, d.Revision, fmt.Errorf("delta %d..%d does not start at the applied revision", d.Base, d.Revision))
	}
	if s.base.digest == nil {
		p := s.base.pending
		<-p.done
		if p.err != nil {
			return s.fallBack(applied, d.Revision, p.err)
		}
		s.base.digest = &p.d
	}
	cfg, touched, err := d.Apply(&b.Config)
	if err != nil {
		return s.fallBack(applied, d.Revision, err)
	}
	got, err := s.base.digest.Advance(&b.Config, cfg, touched)
	if err != nil {
		return s.fallBack(applied, d.Revision, err)
	}
	if got.String() != d.Digest {
		return s.fallBack(applied, d.Revision, fmt.Errorf("%w: delta %d..%d says %s, applied to revision %d it gives %s",
			snapshot.ErrDigest, d.Base, d.Revision, d.Digest, b.Revision, got))
	}
	snap := &snapshot.Snapshot{Revision: d.Revision, Epoch: d.Epoch, Checksum: d.Digest, CreatedAt: d.CreatedAt, Config: *cfg}
	s.base.next = &got
	err = s.install(snap, &snapshot.Change{Base: b, Touched: touched}, "delta")
	s.base.next = nil
	if err != nil {
		s.rejected.Store(snap.Revision)
		s.o.Log.Error("rejected snapshot; still serving the previous configuration",
			"revision", snap.Revision, "serving", applied, "err", err)
		return nil
	}
	s.o.Log.Info("applied delta", "revision", snap.Revision, "previous", applied, "objects", touched.Len(),
		"apply_ms", float64(time.Since(start).Microseconds())/1000)
	if s.o.StateDir != "" {
		if err := s.journal.appendDelta(raw, snap); err != nil {
			// Serving goes on; only a restart without a control plane suffers.
			s.o.Log.Error("could not save the applied delta", "err", err)
		}
	}
	return nil
}

// replay applies, at boot, the journaled deltas that follow snap (read from
// the state file), composed into one, and returns the resulting snapshot
// and how many deltas it took, or nil when there are none or they do not
// give the digest the last one names. It leaves the digest of the result
// for keep.
func (s *Syncer) replay(snap *snapshot.Snapshot) (*snapshot.Snapshot, int) {
	ds, c, err := replay(s.o.StateDir, snap)
	if len(ds) == 0 {
		if err != nil {
			s.o.Log.Warn("could not read the journal of deltas; serving the state file's snapshot", "err", err)
		}
		s.journal.tidy(false, nil)
		return nil, 0
	}
	fail := func(err error) (*snapshot.Snapshot, int) {
		s.o.Log.Warn("the journal of deltas does not apply to the state file; serving the state file's snapshot",
			"revision", snap.Revision, "journal_revision", ds[len(ds)-1].Revision, "err", err)
		s.journal.tidy(false, nil)
		return nil, 0
	}
	d, err := snapshot.Compose(&snap.Config, ds)
	if err != nil {
		return fail(err)
	}
	cfg, touched, err := d.Apply(&snap.Config)
	if err != nil {
		return fail(err)
	}
	from, err := snapshot.DigestOf(&snap.Config)
	if err != nil {
		return fail(err)
	}
	got, err := from.Advance(&snap.Config, cfg, touched)
	if err != nil {
		return fail(err)
	}
	if got.String() != d.Digest {
		return fail(fmt.Errorf("%w: the journal says %s, applied it gives %s", snapshot.ErrDigest, d.Digest, got))
	}
	s.base.next = &got
	s.journal.tidy(true, c)
	return &snapshot.Snapshot{Revision: d.Revision, Epoch: d.Epoch, Checksum: d.Digest, CreatedAt: d.CreatedAt, Config: *cfg}, len(ds)
}

// sealedSum is the checksum /status reports: that of the control plane's
// full snapshot of the applied configuration. A full snapshot carries it;
// for one built from deltas it is computed on first demand (hashing the
// whole configuration as json.Marshal encodes it, writeSealed), not per
// delta.
type sealedSum struct {
	once sync.Once
	snap *snapshot.Snapshot
	sum  string
}

func newSealedSum(snap *snapshot.Snapshot) *sealedSum {
	l := &sealedSum{snap: snap}
	if strings.HasPrefix(snap.Checksum, "sha256:") {
		l.sum = snap.Checksum
	}
	return l
}

func (l *sealedSum) get() string {
	l.once.Do(func() {
		if l.sum == "" {
			l.sum, _ = writeSealed(io.Discard, l.snap)
		}
	})
	return l.sum
}

// fallBack gives up on a delta: the next poll asks for the full snapshot.
func (s *Syncer) fallBack(applied, rev int64, err error) error {
	s.base.needFull = true
	s.o.Log.Warn("could not apply a delta; asking for the full snapshot", "applied_revision", applied,
		"delta_revision", rev, "err", err)
	return nil
}
