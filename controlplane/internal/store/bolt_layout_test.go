package store_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.etcd.io/bbolt"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/controlplane/internal/store/storetest"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// TestBoltOldLayoutUpgrades opens a file of the layout before one key per
// object (the whole State as JSON in meta/state), as a control plane of the
// previous version left it: the state, its epoch and the audit log come
// back the same, and later commits of what they touched build on it.
func TestBoltOldLayoutUpgrades(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	old := &store.State{Revision: 2, Epoch: snapshot.Epoch{ID: "e-new", Prev: "e-old"}, Config: storetest.LargeConfig(50)}
	old.Config.Issuers = []config.Issuer{{Name: "idp", Issuer: "https://idp.example", Algorithms: []string{"RS256"}}}
	entries := []store.AuditEntry{{Revision: 1, Action: "import"}, {Revision: 2, Action: "adopt"}}
	writeOldLayout(t, path, old, entries)

	s := openBolt(t, path)
	ctx := context.Background()
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	opts := cmpopts.EquateEmpty()
	if d := cmp.Diff(old, got, opts); d != "" {
		t.Fatalf("state of the old layout (-want +got):\n%s", d)
	}
	if es, err := s.Audit(ctx, 0, 10); err != nil || !slices.EqualFunc(es, entries, func(a, b store.AuditEntry) bool { return a.Revision == b.Revision && a.Action == b.Action }) {
		t.Fatalf("audit of the old layout = %v, %v", es, err)
	}
	next := &store.State{Revision: 3, Epoch: old.Epoch, Config: *old.Config.Clone()}
	next.Config.Routes[4].Paths = []string{"/moved"}
	next.Config.Routes[4].Meta.Version++
	touched := snapshot.Changes(&old.Config, &next.Config)
	next.Touched = &touched
	if err := s.Commit(ctx, next, store.AuditEntry{Revision: 3, Action: "update"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openBolt(t, path)
	defer s.Close()
	next.Touched = nil
	if got, err := s.Load(ctx); err != nil || cmp.Diff(next, got, opts) != "" {
		t.Fatalf("after a commit on the upgraded file and a reopen: %v (-want +got):\n%s", err, cmp.Diff(next, got, opts))
	}
}

// writeOldLayout writes a bbolt file as the previous layout did.
func writeOldLayout(t *testing.T, path string, st *store.State, entries []store.AuditEntry) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		audit, err := tx.CreateBucket([]byte("audit"))
		if err != nil {
			return err
		}
		for _, e := range entries {
			v, _ := json.Marshal(e)
			if err := audit.Put(binary.BigEndian.AppendUint64(nil, uint64(e.Revision)), v); err != nil {
				return err
			}
		}
		if err := meta.Put([]byte("state"), raw); err != nil {
			return err
		}
		if err := meta.Put([]byte("epoch"), []byte(st.Epoch.ID)); err != nil {
			return err
		}
		return meta.Put([]byte("revision"), binary.BigEndian.AppendUint64(nil, uint64(st.Revision)))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// crashState is the configuration revision rev holds in
// TestBoltKill9KeepsAcknowledgedCommits: the base routes, the routes
// w<k> for the last five revisions k (each commit adds one and deletes the
// one five before), and route-00000 carrying the revision in its path.
func crashState(rev int64) *store.State {
	st := &store.State{Revision: rev, Epoch: snapshot.Epoch{ID: "crash"}, Config: storetest.LargeConfig(2000)}
	st.Config.Routes[0].Paths = []string{fmt.Sprintf("/rev/%d", rev)}
	st.Config.Routes[0].Meta.Version = rev
	for k := max(2, rev-4); k <= rev && rev >= 2; k++ {
		st.Config.Routes = append(st.Config.Routes, &config.Route{Name: fmt.Sprintf("w%06d", k), Paths: []string{fmt.Sprintf("/w/%d", k)}, Service: "svc-000",
			Meta: config.Meta{Version: 1, Revision: k}})
	}
	return st
}

// TestBoltKill9KeepsAcknowledgedCommits runs a writer process that commits
// revision after revision, each writing only what it touched, and prints
// each revision once Commit returned; it is killed with SIGKILL mid-stream.
// Reopened, the file holds at least the last acknowledged revision, and
// exactly the configuration of the revision it holds, several times over.
func TestBoltKill9KeepsAcknowledgedCommits(t *testing.T) {
	if path := os.Getenv("PORTICO_CRASH_WRITER"); path != "" {
		crashWriter(path)
		return
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestBoltKill9KeepsAcknowledgedCommits$")
		cmd.Env = append(os.Environ(), "PORTICO_CRASH_WRITER="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var acked int64
		sc := bufio.NewScanner(out)
		target := int64(30 * (round + 1))
		for sc.Scan() {
			rev, err := strconv.ParseInt(sc.Text(), 10, 64)
			if err != nil {
				continue // the test binary's own output
			}
			acked = rev
			if acked >= target {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		_ = cmd.Wait()
		if acked < target {
			t.Fatalf("round %d: the writer stopped at revision %d before the kill", round, acked)
		}
		s := openBolt(t, path)
		got, err := s.Load(context.Background())
		if err != nil {
			t.Fatalf("round %d: load after SIGKILL: %v", round, err)
		}
		if got.Revision < acked {
			t.Fatalf("round %d: revision %d acknowledged, %d stored: an acknowledged commit was lost", round, acked, got.Revision)
		}
		if d := cmp.Diff(crashState(got.Revision), got, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("round %d: revision %d is not the configuration committed as it (-want +got):\n%s", round, got.Revision, d)
		}
		if es, err := s.Audit(context.Background(), got.Revision-1, 5); err != nil || len(es) != 1 || es[0].Revision != got.Revision {
			t.Fatalf("round %d: audit at the stored revision %d = %v, %v", round, got.Revision, es, err)
		}
		t.Logf("round %d: killed after acknowledging %d; reopened at %d", round, acked, got.Revision)
		s.Close()
	}
}

// crashWriter is the process TestBoltKill9KeepsAcknowledgedCommits kills.
func crashWriter(path string) {
	s, err := store.OpenBolt(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	cur, err := s.Load(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if cur.Revision > 0 {
		cur = crashState(cur.Revision) // as the reader checks it is
	}
	deadline := time.Now().Add(time.Minute)
	for rev := cur.Revision + 1; time.Now().Before(deadline); rev++ {
		next := crashState(rev)
		if rev > 1 {
			touched := snapshot.Changes(&cur.Config, &next.Config)
			next.Touched = &touched
		}
		if err := s.Commit(ctx, next, store.AuditEntry{Revision: rev, Action: "update"}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(rev)
		cur = next
	}
	os.Exit(0)
}
