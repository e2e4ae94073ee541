package syncer

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// journalRun is a data plane's state dir fed the way the poll loop feeds
// it: a whole snapshot at revision 1, then one delta per revision, each
// adding a route and changing route r0000.
type journalRun struct {
	t    *testing.T
	dir  string
	j    *journal
	cfgs map[int64]*config.Config
	snap *snapshot.Snapshot
}

func newJournalRun(t *testing.T, maxEntries int) *journalRun {
	t.Helper()
	cfg := &config.Config{Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://h:1"}}, Meta: config.Meta{Version: 1, Revision: 1}}},
		Consumers: []config.Consumer{}, Issuers: []config.Issuer{}, Certificates: []config.Certificate{}}
	for i := range 50 {
		cfg.Routes = append(cfg.Routes, &config.Route{Name: fmt.Sprintf("r%04d", i), Paths: []string{fmt.Sprintf("/r%d", i)}, Service: "s", Meta: config.Meta{Version: 1, Revision: 1}})
	}
	snap, raw, err := snapshot.EncodeEpoch(1, snapshot.Epoch{ID: "e"}, cfg, time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	r := &journalRun{t: t, dir: filepath.Join(t.TempDir(), "state"), cfgs: map[int64]*config.Config{1: cfg}, snap: snap}
	r.j = &journal{dir: r.dir, maxEntries: maxEntries, minBytes: 1 << 30}
	t.Cleanup(r.j.wait)
	if err := r.j.save(raw, 1); err != nil {
		t.Fatal(err)
	}
	return r
}

// step applies one more revision and journals its delta.
func (r *journalRun) step() {
	r.t.Helper()
	prev := r.cfgs[r.snap.Revision]
	rev := r.snap.Revision + 1
	next := prev.Clone()
	next.Routes[0].Paths = []string{fmt.Sprintf("/moved/%d", rev)}
	next.Routes[0].Meta = config.Meta{Version: rev, Revision: rev}
	next.Routes = append(next.Routes, &config.Route{Name: fmt.Sprintf("w%04d", rev), Paths: []string{fmt.Sprintf("/w%d", rev)}, Service: "s", Meta: config.Meta{Version: 1, Revision: rev}})
	dg, err := snapshot.DigestOf(next)
	if err != nil {
		r.t.Fatal(err)
	}
	touched := snapshot.Changes(prev, next)
	raw, err := snapshot.EncodeDelta(snapshot.NewDelta(rev-1, rev, snapshot.Epoch{ID: "e"}, next, &touched, dg, time.Unix(rev, 0)))
	if err != nil {
		r.t.Fatal(err)
	}
	r.snap = &snapshot.Snapshot{Revision: rev, Epoch: snapshot.Epoch{ID: "e"}, Checksum: dg.String(), Config: *next}
	r.cfgs[rev] = next
	if err := r.j.appendDelta(raw, r.snap); err != nil {
		r.t.Fatal(err)
	}
}

// boot starts a syncer on the state dir and returns the revision it
// serves, checking that the configuration is exactly that revision's.
func (r *journalRun) boot() int64 {
	r.t.Helper()
	r.j.wait()
	var got *snapshot.Snapshot
	s := New(Options{StateDir: r.dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Apply: func(snap *snapshot.Snapshot, _ *snapshot.Change) ([]config.Rejected, error) {
			got = snap
			return nil, nil
		}})
	ok, err := s.Boot()
	if err != nil || !ok {
		r.t.Fatalf("boot: %v, %v", ok, err)
	}
	// The booted data plane writes the state dir from now on.
	r.j = s.journal
	r.j.maxEntries, r.j.minBytes = 1000, 1<<30
	r.t.Cleanup(r.j.wait)
	r.snap = got
	want, err := json.Marshal(r.cfgs[got.Revision])
	if err != nil {
		r.t.Fatal(err)
	}
	if g, _ := json.Marshal(&got.Config); string(g) != string(want) {
		r.t.Fatalf("booted at revision %d with\n%s\nwant\n%s", got.Revision, g, want)
	}
	// The checksum /status reports is the control plane's for that
	// configuration.
	_, full, err := snapshot.EncodeEpoch(got.Revision, got.Epoch, r.cfgs[got.Revision], got.CreatedAt)
	if err != nil {
		r.t.Fatal(err)
	}
	dec, _ := snapshot.Decode(full)
	if sum := s.Status().Checksum; sum != dec.Checksum {
		r.t.Fatalf("status checksum %s, want %s", sum, dec.Checksum)
	}
	return got.Revision
}

func (r *journalRun) stateRevision() int64 {
	r.t.Helper()
	raw, err := loadState(r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	s, err := snapshot.Decode(raw)
	if err != nil {
		r.t.Fatal(err)
	}
	return s.Revision
}

// TestJournalBootsAtTheLastDelta: a data plane that journaled its deltas
// boots at the last one, with exactly that revision's configuration,
// whether or not the journal was sealed into the state file meanwhile.
func TestJournalBootsAtTheLastDelta(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxEntries int
		steps      int
		stateRev   int64
		journals   int
	}{
		{"never sealed", 1000, 20, 1, 1},
		{"sealed every 8 deltas", 8, 20, 17, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newJournalRun(t, tc.maxEntries)
			for range tc.steps {
				r.step()
			}
			if got := r.boot(); got != int64(tc.steps)+1 {
				t.Fatalf("booted at revision %d, want %d", got, tc.steps+1)
			}
			if got := r.stateRevision(); got != tc.stateRev {
				t.Errorf("state file at revision %d, want %d", got, tc.stateRev)
			}
			if revs, _ := journals(r.dir); len(revs) != tc.journals {
				t.Errorf("journals %v, want %d", revs, tc.journals)
			}
		})
	}
}

// TestJournalCrashes: what a crash can leave behind boots at the last
// delta that is whole and follows the state file, never at a revision
// that was not applied.
func TestJournalCrashes(t *testing.T) {
	t.Run("last line cut short", func(t *testing.T) {
		r := newJournalRun(t, 1000)
		for range 5 {
			r.step()
		}
		path := filepath.Join(r.dir, journalName(1))
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, fi.Size()-10); err != nil {
			t.Fatal(err)
		}
		if got := r.boot(); got != 5 {
			t.Fatalf("booted at %d, want 5 (the last whole delta)", got)
		}
		// Deltas applied after that boot are not lost behind the torn line.
		for range 3 {
			r.step()
		}
		if got := r.boot(); got != 8 {
			t.Fatalf("booted again at %d, want 8", got)
		}
	})
	t.Run("first line cut short, then more deltas", func(t *testing.T) {
		r := newJournalRun(t, 1000)
		r.step()
		if err := os.Truncate(filepath.Join(r.dir, journalName(1)), 10); err != nil {
			t.Fatal(err)
		}
		if got := r.boot(); got != 1 {
			t.Fatalf("booted at %d, want 1", got)
		}
		r.cfgs = map[int64]*config.Config{1: r.cfgs[1]}
		for range 2 {
			r.step()
		}
		if got := r.boot(); got != 3 {
			t.Fatalf("booted again at %d, want 3", got)
		}
	})
	t.Run("sealed, old journal not yet removed", func(t *testing.T) {
		r := newJournalRun(t, 4)
		for range 3 {
			r.step()
		}
		old, err := os.ReadFile(filepath.Join(r.dir, journalName(1)))
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			r.step() // the 4th seals revision 5, the 5th and 6th go to journal 5
		}
		r.j.wait()
		if err := os.WriteFile(filepath.Join(r.dir, journalName(1)), old, 0o600); err != nil {
			t.Fatal(err)
		}
		if got := r.boot(); got != 7 {
			t.Fatalf("booted at %d, want 7", got)
		}
	})
	t.Run("a journal that does not follow the state file", func(t *testing.T) {
		r := newJournalRun(t, 1000)
		for range 3 {
			r.step()
		}
		// The state file replaced by another configuration at revision 1
		// (a digest mismatch for every delta after it).
		cfg := r.cfgs[1].Clone()
		cfg.Routes = append(cfg.Routes[:1], cfg.Routes[2:]...) // r0001, which no delta touches
		_, raw, err := snapshot.EncodeEpoch(1, snapshot.Epoch{ID: "e"}, cfg, time.Unix(1, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := saveState(r.dir, raw); err != nil {
			t.Fatal(err)
		}
		r.cfgs[1] = cfg
		if got := r.boot(); got != 1 {
			t.Fatalf("booted at %d, want 1 (the state file alone)", got)
		}
	})
	t.Run("a whole snapshot starts over", func(t *testing.T) {
		r := newJournalRun(t, 1000)
		for range 3 {
			r.step()
		}
		_, raw, err := snapshot.EncodeEpoch(4, snapshot.Epoch{ID: "e"}, r.cfgs[4], time.Unix(4, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.j.save(raw, 4); err != nil {
			t.Fatal(err)
		}
		if revs, _ := journals(r.dir); len(revs) != 0 {
			t.Fatalf("journals %v after a whole snapshot, want none", revs)
		}
		r.step()
		if got := r.boot(); got != 5 {
			t.Fatalf("booted at %d, want 5", got)
		}
	})
}
