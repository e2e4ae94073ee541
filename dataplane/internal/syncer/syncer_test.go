package syncer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

func encoded(t *testing.T, rev int64, routes ...string) []byte {
	t.Helper()
	cfg := &config.Config{Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://h:1"}}}}}
	for _, r := range routes {
		cfg.Routes = append(cfg.Routes, &config.Route{Name: r, Paths: []string{"/" + r}, Service: "s"})
	}
	cfg.Sort()
	_, raw, err := snapshot.Encode(rev, cfg, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestStateFileRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "state")
	if raw, err := loadState(dir); raw != nil || err != nil {
		t.Fatalf("empty state dir = %q, %v", raw, err)
	}
	for rev := int64(1); rev <= 3; rev++ {
		if err := saveState(dir, encoded(t, rev, "a")); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := snapshot.Decode(raw)
	if err != nil || s.Revision != 3 {
		t.Fatalf("loaded %v, %v", s, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("state dir holds %d files, want only the snapshot (no temp files left)", len(entries))
	}
}

// scripted stands in for the control plane's poll answers. It is a stub on
// purpose: it must hand out a snapshot the real control plane would never
// send (one that fails to compile) to show the data plane keeps serving. The
// real control plane is exercised end to end in dataplane/e2e.
type scripted struct {
	answers chan answer
	asked   chan client.PollRequest
}

type answer struct {
	raw []byte
	err error
}

func (s *scripted) PollSnapshot(ctx context.Context, req client.PollRequest) (*client.Poll, error) {
	select {
	case s.asked <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case a := <-s.answers:
		if a.err != nil {
			return nil, a.err
		}
		return &client.Poll{Snapshot: a.raw, Dataplanes: 3}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func TestSyncerAppliesRejectsAndPersists(t *testing.T) {
	dir := t.TempDir()
	p := &scripted{answers: make(chan answer), asked: make(chan client.PollRequest)}
	applied := make(chan int64, 10)
	sy := New(Options{
		Poller:   p,
		StateDir: dir,
		NodeID:   "n1",
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Apply: func(s *snapshot.Snapshot, _ *snapshot.Change) ([]config.Rejected, error) {
			if _, bad := s.Config.Route("bad"); bad {
				return nil, errors.New("refusing route bad")
			}
			applied <- s.Revision
			return nil, nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = sy.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	step := func(wantAfter, wantApplied int64, a answer) {
		t.Helper()
		req := <-p.asked
		if req.After != wantAfter || req.AppliedRevision != wantApplied || req.NodeID != "n1" {
			t.Fatalf("poll = %+v, want after=%d applied=%d", req, wantAfter, wantApplied)
		}
		p.answers <- a
	}
	step(0, 0, answer{raw: encoded(t, 1, "a")})
	if rev := <-applied; rev != 1 {
		t.Fatalf("applied %d", rev)
	}
	step(1, 1, answer{}) // 304
	step(1, 1, answer{raw: encoded(t, 2, "a", "bad")})
	// Rejected: still serving 1, but the next poll waits past 2.
	step(2, 1, answer{err: errors.New("connection refused")})
	step(2, 1, answer{raw: encoded(t, 3, "a", "b")})
	if rev := <-applied; rev != 3 {
		t.Fatalf("applied %d", rev)
	}
	step(3, 3, answer{})
	st := sy.Status()
	if st.AppliedRevision != 3 || st.RejectedRev != 2 || !st.Connected || st.Source != "controlplane" || st.ClusterSize != 3 {
		t.Fatalf("status = %+v", st)
	}
	// What was applied last is on disk, and a fresh syncer boots from it.
	boot := New(Options{StateDir: dir, Apply: func(*snapshot.Snapshot, *snapshot.Change) ([]config.Rejected, error) { return nil, nil }})
	ok, err := boot.Boot()
	if err != nil || !ok || boot.Applied() != 3 || boot.Status().Source != "state" {
		t.Fatalf("boot = %v, %v, status %+v", ok, err, boot.Status())
	}
}

func TestBootIgnoresCorruptState(t *testing.T) {
	dir := t.TempDir()
	raw := encoded(t, 5, "a")
	if err := os.WriteFile(filepath.Join(dir, stateFileName), raw[:len(raw)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	sy := New(Options{StateDir: dir, Apply: func(*snapshot.Snapshot, *snapshot.Change) ([]config.Rejected, error) {
		t.Fatal("applied a corrupt snapshot")
		return nil, nil
	}})
	ok, err := sy.Boot()
	if ok || err == nil {
		t.Fatalf("boot from a truncated file = %v, %v; want an error", ok, err)
	}
}

func encodedEpoch(t *testing.T, rev int64, ep snapshot.Epoch) []byte {
	t.Helper()
	cfg := &config.Config{Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://h:1"}}}}}
	_, raw, err := snapshot.EncodeEpoch(rev, ep, cfg, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestSyncerEpochs: a data plane keeps its snapshot when a control plane
// hands it an older one (its store went back in time), takes a lower
// revision only in a new epoch, never goes back to the epoch it left, and
// reports and persists the epoch it runs.
func TestSyncerEpochs(t *testing.T) {
	dir := t.TempDir()
	p := &scripted{answers: make(chan answer), asked: make(chan client.PollRequest)}
	applied := make(chan int64, 10)
	sy := New(Options{
		Poller: p, StateDir: dir, NodeID: "n1",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Apply: func(s *snapshot.Snapshot, _ *snapshot.Change) ([]config.Rejected, error) {
			applied <- s.Revision
			return nil, nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = sy.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	a := snapshot.Epoch{ID: "A"}
	b := snapshot.Epoch{ID: "B", Prev: "A"}
	c := snapshot.Epoch{ID: "C", Prev: "B"}
	steps := []struct {
		name        string
		send        []byte
		wantApplied int64 // 0: refused, the applied revision stays
		wantEpoch   string
	}{
		{"first", encodedEpoch(t, 5, a), 5, "A"},
		{"lower revision, same epoch", encodedEpoch(t, 3, a), 0, "A"},
		{"same revision", encodedEpoch(t, 5, a), 0, "A"},
		{"new epoch, lower revision", encodedEpoch(t, 2, b), 2, "B"},
		{"the epoch left behind", encodedEpoch(t, 9, a), 0, "B"},
		{"higher revision, same epoch", encodedEpoch(t, 3, b), 3, "B"},
		{"another new epoch", encodedEpoch(t, 1, c), 1, "C"},
	}
	rev, epoch := int64(0), ""
	for _, st := range steps {
		req := <-p.asked
		if req.AppliedRevision != rev || req.AppliedEpoch != epoch {
			t.Fatalf("%s: poll reports revision %d epoch %q, want %d %q", st.name, req.AppliedRevision, req.AppliedEpoch, rev, epoch)
		}
		p.answers <- answer{raw: st.send}
		if st.wantApplied != 0 {
			if got := <-applied; got != st.wantApplied {
				t.Fatalf("%s: applied %d, want %d", st.name, got, st.wantApplied)
			}
			rev = st.wantApplied
		}
		epoch = st.wantEpoch
	}
	if req := <-p.asked; req.AppliedRevision != 1 || req.AppliedEpoch != "C" {
		t.Fatalf("last poll = %+v", req)
	}
	if got := sy.Status(); got.AppliedRevision != 1 || got.Epoch != "C" {
		t.Fatalf("status = %+v", got)
	}
	select {
	case r := <-applied:
		t.Fatalf("an older snapshot was applied: revision %d", r)
	default:
	}
	// The state file records the epoch: a restarted data plane reports it.
	boot := New(Options{StateDir: dir, Apply: func(*snapshot.Snapshot, *snapshot.Change) ([]config.Rejected, error) { return nil, nil }})
	if ok, err := boot.Boot(); !ok || err != nil || boot.Epoch() != c || boot.Applied() != 1 {
		t.Fatalf("boot = %v, %v: revision %d epoch %+v", ok, err, boot.Applied(), boot.Epoch())
	}
}
