// Package syncer keeps a data plane's configuration in step with the control
// plane: it long-polls for snapshots, verifies and applies each one, writes
// it to the state dir, and at boot applies the saved one so that a data plane
// restarted while the control plane is down still serves. Once it holds a
// configuration it asks for deltas (only the objects changed since its
// applied revision), applies them to that configuration and checks the
// digest of the result, falling back to the full snapshot on any mismatch
// (delta.go).
//
// A snapshot replaces the applied one only if it is newer: a higher revision
// of the same epoch, or any revision of an epoch the control plane started
// after a store reset (never the epoch the data plane left); see
// snapshot.Epoch.Supersedes. An older one (a control plane on a store that
// went back in time) is refused with one warning, and the data plane keeps
// serving what it has.
package syncer

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// Poller is the part of the control-plane client the syncer needs.
type Poller interface {
	PollSnapshot(ctx context.Context, req client.PollRequest) (*client.Poll, error)
}

// Applier compiles and installs a snapshot (proxy.Applier.Apply) and
// returns the objects of it that could not be applied (the rest serves);
// the syncer logs each new one and reports the list on every poll. An error
// leaves the previous configuration serving. ch is set when s came from a
// delta: it names the snapshot the delta applied to (the one installed
// before) and the objects it touched, so that only those are compiled; nil
// for a whole snapshot.
type Applier func(s *snapshot.Snapshot, ch *snapshot.Change) ([]config.Rejected, error)

// Options configure a Syncer.
type Options struct {
	Poller   Poller
	Apply    Applier
	StateDir string // empty: applied snapshots are not persisted
	NodeID   string
	Version  string
	Wait     time.Duration // long-poll wait asked of the control plane
	Log      *slog.Logger
	// OnApplied is called after each applied snapshot (for metrics).
	OnApplied func(rev int64)
	// OnTicketKeys is called with the cluster's TLS session-ticket keys
	// on every answer that carries them (tlsedge.Certificates.
	// SetTicketKeys); nil: ignored.
	OnTicketKeys func(apiv1.TicketKeys)
	// TLS tells, on every poll, what the TLS listener serves (reported
	// to the control plane: GET /v1/dataplanes, a certificate's
	// served_by); nil or a nil answer: no TLS listener.
	TLS func() *apiv1.DataplaneTLS
}

// Syncer runs the poll loop. Its Status methods are safe to call anytime.
type Syncer struct {
	o           Options
	applied     atomic.Int64
	sum         atomic.Pointer[sealedSum]
	source      atomic.Pointer[string]
	lastContact atomic.Int64 // unix nanoseconds of the last answered poll
	connected   atomic.Bool
	// rejected is the newest revision that failed to apply; polling after
	// it avoids fetching the same bad snapshot in a loop.
	rejected atomic.Int64
	// peers is the cluster size the control plane last reported.
	peers atomic.Int64
	// epoch is the applied snapshot's epoch; refused is the last snapshot
	// refused as older than the applied one, logged once.
	epoch   atomic.Pointer[snapshot.Epoch]
	refused atomic.Pointer[refusal]
	// objects are the objects of the applied revision that were rejected.
	objects atomic.Pointer[[]config.Rejected]
	// base is the applied configuration deltas apply to (delta.go).
	base base
	// journal writes the state dir (journal.go).
	journal *journal
}

// New returns a Syncer.
func New(o Options) *Syncer {
	if o.Wait <= 0 {
		o.Wait = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Syncer{o: o, journal: &journal{dir: o.StateDir}}
}

// Boot applies the snapshot saved in the state dir, if any. It returns
// whether one was applied. A corrupt file is reported and ignored: the
// control plane will send a good one.
func (s *Syncer) Boot() (bool, error) {
	if s.o.StateDir == "" {
		return false, nil
	}
	removeTemps(s.o.StateDir)
	raw, err := loadState(s.o.StateDir)
	if err != nil || raw == nil {
		return false, err
	}
	snap, err := snapshot.Decode(raw)
	if err != nil {
		return false, fmt.Errorf("state dir %s: %w", s.o.StateDir, err)
	}
	s.journal.start, s.journal.snapBytes = snap.Revision, int64(len(raw))
	if next, n := s.replay(snap); next != nil {
		if err := s.install(next, nil, "state"); err == nil {
			s.journal.start, s.journal.entries = next.Revision, n
			return true, nil
		}
		s.o.Log.Warn("the journaled deltas did not apply; serving the state file's snapshot", "revision", snap.Revision, "err", err)
	}
	s.base.next = nil
	if err := s.install(snap, nil, "state"); err != nil {
		return false, fmt.Errorf("state dir %s: %w", s.o.StateDir, err)
	}
	return true, nil
}

func (s *Syncer) install(snap *snapshot.Snapshot, ch *snapshot.Change, source string) error {
	rejected, err := s.o.Apply(snap, ch)
	if err != nil {
		return err
	}
	s.applied.Store(snap.Revision)
	s.epoch.Store(&snap.Epoch)
	s.keep(snap)
	s.sum.Store(newSealedSum(snap))
	s.source.Store(&source)
	s.noteRejected(snap.Revision, rejected)
	if s.o.OnApplied != nil {
		s.o.OnApplied(snap.Revision)
	}
	return nil
}

// Run polls until ctx ends. Errors never stop it: the data plane keeps
// serving its last configuration and retries with jittered backoff.
func (s *Syncer) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.pollOnce(ctx)
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		if s.connected.Swap(false) {
			s.o.Log.Warn("lost the control plane; serving the last applied configuration",
				"revision", s.applied.Load(), "err", err)
		} else {
			s.o.Log.Debug("control plane poll failed", "err", err, "backoff", backoff)
		}
		// Full jitter keeps a fleet of data planes from reconnecting in step.
		sleep := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (s *Syncer) pollOnce(ctx context.Context) error {
	applied := s.applied.Load()
	poll, err := s.o.Poller.PollSnapshot(ctx, client.PollRequest{
		After:           s.pollAfter(applied),
		Deltas:          s.wantDeltas(),
		Wait:            s.o.Wait,
		NodeID:          s.o.NodeID,
		NodeVersion:     s.o.Version,
		AppliedRevision: applied,
		AppliedEpoch:    s.Epoch().ID,
		Rejected:        s.RejectedObjects(),
		TLS:             s.tls(),
	})
	if err != nil {
		return err
	}
	if poll.Dataplanes > 0 {
		s.peers.Store(int64(poll.Dataplanes))
	}
	s.ticketKeys(poll)
	raw := poll.Snapshot
	s.lastContact.Store(time.Now().UnixNano())
	if !s.connected.Swap(true) {
		s.o.Log.Info("connected to the control plane", "applied_revision", applied)
	}
	if poll.Delta != nil {
		return s.applyDelta(poll.Delta, applied)
	}
	if raw == nil {
		return nil
	}
	s.base.needFull = false
	snap, err := snapshot.Decode(raw)
	if err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	if cur := s.Epoch(); !snap.Epoch.Supersedes(snap.Revision, cur, applied) {
		if snap.Revision == applied && snap.Epoch.ID == cur.ID {
			return nil
		}
		// Older than what serves: a control plane on a store that went
		// back in time, or one that has not yet followed a new epoch.
		// Keep serving, and do not poll it in a tight loop.
		s.refuseOlder(snap, cur, applied)
		select {
		case <-ctx.Done():
		case <-time.After(refuseBackoff):
		}
		return nil
	}
	start := time.Now()
	if err := s.install(snap, nil, "controlplane"); err != nil {
		s.rejected.Store(snap.Revision)
		s.o.Log.Error("rejected snapshot; still serving the previous configuration",
			"revision", snap.Revision, "serving", applied, "err", err)
		return nil
	}
	s.o.Log.Info("applied snapshot", "revision", snap.Revision, "previous", applied,
		"apply_ms", float64(time.Since(start).Microseconds())/1000)
	if s.o.StateDir != "" {
		if err := s.journal.save(raw, snap.Revision); err != nil {
			// Serving goes on; only a restart without a control plane suffers.
			s.o.Log.Error("could not save the applied snapshot", "err", err)
		}
	}
	return nil
}

// noteRejected takes the applied revision's rejections and logs, loudly,
// each one that is new (or has a new reason): one line per failure, not one
// per revision, so that a lasting problem does not flood the log.
func (s *Syncer) noteRejected(rev int64, rejected []config.Rejected) {
	list := slices.Clone(rejected)
	old := s.RejectedObjects()
	for _, r := range list {
		if !slices.Contains(old, r) {
			s.o.Log.Error("configuration object rejected: it is left out and its routes answer 503",
				"kind", r.Kind, "name", r.Name, "reason", r.Reason, "revision", rev)
		}
	}
	for _, r := range old {
		if !slices.ContainsFunc(list, func(n config.Rejected) bool { return n.Kind == r.Kind && n.Name == r.Name }) {
			s.o.Log.Info("configuration object applied again", "kind", r.Kind, "name", r.Name, "revision", rev)
		}
	}
	s.objects.Store(&list)
}

// RejectedObjects lists the objects of the applied revision that could not
// be applied.
func (s *Syncer) RejectedObjects() []config.Rejected {
	if p := s.objects.Load(); p != nil {
		return *p
	}
	return nil
}

// refuseBackoff spaces polls answered with an older snapshot.
const refuseBackoff = time.Second

type refusal struct {
	rev   int64
	epoch string
}

func (s *Syncer) refuseOlder(snap *snapshot.Snapshot, cur snapshot.Epoch, applied int64) {
	r := &refusal{snap.Revision, snap.Epoch.ID}
	if old := s.refused.Swap(r); old != nil && *old == *r {
		return
	}
	s.o.Log.Warn("refused a snapshot older than the applied one; still serving the applied configuration "+
		"(the control plane's store went back in time: an operator must restore it or adopt it, which starts a new epoch)",
		"revision", snap.Revision, "epoch", snap.Epoch.ID, "applied_revision", applied, "applied_epoch", cur.ID)
}

// Epoch returns the epoch of the applied snapshot (zero before any).
func (s *Syncer) Epoch() snapshot.Epoch {
	if p := s.epoch.Load(); p != nil {
		return *p
	}
	return snapshot.Epoch{}
}

// Status is the syncer's view for /status.
type Status struct {
	AppliedRevision int64     `json:"applied_revision"`
	Epoch           string    `json:"epoch,omitempty"`
	Checksum        string    `json:"checksum,omitempty"`
	Source          string    `json:"source,omitempty"` // "state" or "controlplane"
	Connected       bool      `json:"controlplane_connected"`
	LastContact     time.Time `json:"last_contact,omitzero"`
	RejectedRev     int64     `json:"rejected_revision,omitempty"`
	ClusterSize     int       `json:"cluster_size"`
	// RejectedObjects are the objects of the applied revision left out.
	RejectedObjects []config.Rejected `json:"rejected_objects,omitempty"`
	// Delta: the applied revision came from the control plane as a delta
	// (snapshot.Delta), not as a full snapshot.
	Delta bool `json:"delta,omitempty"`
}

// Status reports what is applied and how the link to the control plane is.
func (s *Syncer) Status() Status {
	st := Status{AppliedRevision: s.applied.Load(), Connected: s.connected.Load(), RejectedRev: s.rejected.Load(), ClusterSize: s.Peers(),
		RejectedObjects: s.RejectedObjects()}
	st.Epoch = s.Epoch().ID
	if c := s.sum.Load(); c != nil {
		st.Checksum = c.get()
	}
	if src := s.source.Load(); src != nil {
		st.Source = *src
		if st.Source == "delta" {
			st.Source, st.Delta = "controlplane", true
		}
	}
	if n := s.lastContact.Load(); n != 0 {
		st.LastContact = time.Unix(0, n).UTC()
	}
	return st
}

// Peers returns the number of data planes in the cluster as last reported
// by the control plane (at least 1).
func (s *Syncer) Peers() int { return int(max(s.peers.Load(), 1)) }

// Applied returns the applied revision (0 before any).
func (s *Syncer) Applied() int64 { return s.applied.Load() }

// ticketKeys hands the poll's session-ticket keys to OnTicketKeys. A value
// that cannot be read is reported (without the value) and the keys in use
// stay.
func (s *Syncer) ticketKeys(poll *client.Poll) {
	if s.o.OnTicketKeys == nil {
		return
	}
	if poll.TicketKeysErr != nil {
		s.o.Log.Warn("the control plane's TLS session-ticket keys cannot be read; keeping the keys in use", "err", poll.TicketKeysErr)
		return
	}
	if len(poll.TicketKeys) > 0 {
		s.o.OnTicketKeys(poll.TicketKeys)
	}
}

func (s *Syncer) tls() *apiv1.DataplaneTLS {
	if s.o.TLS == nil {
		return nil
	}
	return s.o.TLS()
}
