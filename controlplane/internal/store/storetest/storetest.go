// Package storetest is the contract every store.Store backend passes. A
// backend's test calls Run with a function that opens a fresh, empty store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// safety bounds any wait in the suite, so that a broken backend fails the
// test instead of hanging it. No test relies on it elapsing.
const safety = 30 * time.Second

// Option adds optional checks to Run.
type Option func(*options)

type options struct {
	reopen func(t *testing.T, old store.Store) store.Store
}

// WithReopen enables the durability test: reopen gets a store that Run has
// already closed and must open the same underlying storage again (the same
// file, the same KV prefix).
func WithReopen(reopen func(t *testing.T, old store.Store) store.Store) Option {
	return func(o *options) { o.reopen = reopen }
}

// Run runs the contract suite as subtests. open must return a new, empty
// store each time it is called; Run closes every store it opens.
func Run(t *testing.T, open func(t *testing.T) store.Store, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	fresh := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() { s.Close() })
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"EmptyStore", testEmpty},
		{"CommitLoad", testCommitLoad},
		{"Conflict", testConflict},
		{"InvalidCommit", testInvalidCommit},
		{"Audit", testAudit},
		{"WaitRevisionPast", testWaitPast},
		{"WaitRevisionWakes", testWaitWakes},
		{"WaitRevisionCancel", testWaitCancel},
		{"WaitRevisionClose", testWaitClose},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Epoch", testEpoch},
		{"LargeState", testLargeState},
		{"Touched", testTouched},
		{"Tokens", testTokens},
		{"Closed", testClosed},
		{"Secrets", testSecrets},
		{"Lease", testLease},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, fresh(t)) })
	}
	t.Run("Reopen", func(t *testing.T) {
		if o.reopen == nil {
			// Not a skip: the backend has no reopen to offer (say, an
			// in-memory fake), which is a property, not a missing server.
			t.Log("no WithReopen: durability not tested")
			return
		}
		testReopen(t, fresh(t), func(old store.Store) store.Store {
			s := o.reopen(t, old)
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), safety)
	t.Cleanup(cancel)
	return ctx
}

var cmpOpts = cmp.Options{cmpopts.EquateEmpty()}

// diff is cmp.Diff with a reflect.DeepEqual fast path: cmp takes seconds on
// a 10,000-route state under the race detector, DeepEqual milliseconds.
// (DeepEqual is stricter, so a DeepEqual match is a cmp match.)
func diff(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	return cmp.Diff(want, got, cmpOpts)
}

// Sample returns a small configuration of every kind of object, as revision
// rev would hold it, for tests that need realistic content.
func Sample(rev int64) config.Config {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC).Add(time.Duration(rev) * time.Minute)
	meta := config.Meta{Version: rev, Revision: rev, CreatedAt: at, UpdatedAt: at}
	return config.Config{
		Services: []config.Service{{
			Name:           "users",
			Targets:        []config.Target{{URL: "http://10.0.0.1:8080", Weight: 3}, {URL: "http://10.0.0.2:8080"}},
			ConnectTimeout: config.Duration(2 * time.Second),
			Meta:           meta,
		}},
		Routes: []*config.Route{{
			Name:         fmt.Sprintf("users-%d", rev),
			Paths:        []string{"/users/{id}", "/users/*"},
			Methods:      []string{"GET", "PUT"},
			Hosts:        []string{"api.example.com", "*.example.org"},
			Service:      "users",
			StripPrefix:  true,
			Timeout:      config.Duration(1500 * time.Millisecond),
			MaxBodyBytes: 1 << 20,
			Meta:         meta,
		}},
		Consumers: []config.Consumer{{Name: "ci", Groups: []string{"admin"}, Meta: meta}},
	}
}

func entryFor(rev int64) store.AuditEntry {
	return store.AuditEntry{
		Revision:   rev,
		Time:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(rev) * time.Second),
		Actor:      "token:ops (claims alice)",
		RemoteAddr: "192.0.2.1:4711",
		RequestID:  fmt.Sprintf("req-%d", rev),
		Action:     "update",
		Kind:       config.KindRoute,
		Name:       fmt.Sprintf("users-%d", rev),
		Version:    rev,
	}
}

// commitN commits revisions 1..n of Sample.
func commitN(t *testing.T, s store.Store, n int64) {
	t.Helper()
	for rev := int64(1); rev <= n; rev++ {
		if err := s.Commit(ctxFor(t), &store.State{Revision: rev, Config: Sample(rev)}, entryFor(rev)); err != nil {
			t.Fatalf("commit %d: %v", rev, err)
		}
	}
}

func mustLoad(t *testing.T, s store.Store) *store.State {
	t.Helper()
	st, err := s.Load(ctxFor(t))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return st
}

func mustAudit(t *testing.T, s store.Store, after int64, limit int) []store.AuditEntry {
	t.Helper()
	es, err := s.Audit(ctxFor(t), after, limit)
	if err != nil {
		t.Fatalf("audit(after=%d, limit=%d): %v", after, limit, err)
	}
	return es
}

func revisions(es []store.AuditEntry) []int64 {
	revs := make([]int64, len(es))
	for i, e := range es {
		revs[i] = e.Revision
	}
	return revs
}

func testEmpty(t *testing.T, s store.Store) {
	st := mustLoad(t, s)
	if st.Revision != 0 {
		t.Errorf("revision = %d, want 0", st.Revision)
	}
	// Non-nil, so that a new store's config encodes like any other.
	if st.Config.Services == nil || st.Config.Routes == nil || st.Config.Consumers == nil {
		t.Errorf("empty config has nil collections: %#v", st.Config)
	}
	if n := len(st.Config.Services) + len(st.Config.Routes) + len(st.Config.Consumers); n != 0 {
		t.Errorf("empty store holds %d objects", n)
	}
	if es := mustAudit(t, s, 0, 100); len(es) != 0 {
		t.Errorf("audit of empty store = %v", es)
	}
}

func testCommitLoad(t *testing.T, s store.Store) {
	for rev := int64(1); rev <= 3; rev++ {
		want := &store.State{Revision: rev, Config: Sample(rev)}
		if err := s.Commit(ctxFor(t), want, entryFor(rev)); err != nil {
			t.Fatalf("commit %d: %v", rev, err)
		}
		if diff := cmp.Diff(want, mustLoad(t, s), cmpOpts); diff != "" {
			t.Fatalf("load after commit %d (-want +got):\n%s", rev, diff)
		}
	}
	// A state with no objects at all comes back with empty collections.
	empty := &store.State{Revision: 4}
	if err := s.Commit(ctxFor(t), empty, entryFor(4)); err != nil {
		t.Fatalf("commit 4: %v", err)
	}
	got := mustLoad(t, s)
	if got.Revision != 4 || got.Config.Services == nil || got.Config.Routes == nil || got.Config.Consumers == nil {
		t.Errorf("load of empty revision 4 = %#v, want revision 4 with empty, non-nil collections", got)
	}
}

func testConflict(t *testing.T, s store.Store) {
	commitN(t, s, 2)
	before := mustLoad(t, s)
	auditBefore := mustAudit(t, s, 0, 100)
	for _, tc := range []struct {
		name string
		rev  int64
	}{
		{"stale", 2},
		{"older", 1},
		{"skipping", 4},
		{"far ahead", 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := &store.State{Revision: tc.rev, Config: Sample(99)}
			err := s.Commit(ctxFor(t), next, entryFor(tc.rev))
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("commit %d over revision 2: err = %v, want ErrConflict", tc.rev, err)
			}
			if diff := cmp.Diff(before, mustLoad(t, s), cmpOpts); diff != "" {
				t.Errorf("state changed by a conflicting commit (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(auditBefore, mustAudit(t, s, 0, 100), cmpOpts); diff != "" {
				t.Errorf("audit changed by a conflicting commit (-before +after):\n%s", diff)
			}
		})
	}
	// The conflicts left nothing behind that would stop the right commit.
	commitFrom(t, s, 2)
}

// commitFrom commits revision from+1 on top of revision from.
func commitFrom(t *testing.T, s store.Store, from int64) {
	t.Helper()
	rev := from + 1
	if err := s.Commit(ctxFor(t), &store.State{Revision: rev, Config: Sample(rev)}, entryFor(rev)); err != nil {
		t.Fatalf("commit %d: %v", rev, err)
	}
}

func testInvalidCommit(t *testing.T, s store.Store) {
	commitN(t, s, 1)
	for _, tc := range []struct {
		name  string
		next  *store.State
		entry store.AuditEntry
	}{
		{"nil state", nil, entryFor(2)},
		{"revision 0", &store.State{}, entryFor(0)},
		{"entry revision differs", &store.State{Revision: 2}, entryFor(3)},
		// Stores keep objects by name: the canonical form is in strict
		// name order.
		{"routes out of order", &store.State{Revision: 2, Config: config.Config{Routes: []*config.Route{{Name: "b"}, {Name: "a"}}}}, entryFor(2)},
		// With the previous configuration given (State.Prev), the routes
		// shared with it are not read, but a route put out of place, or
		// an unnamed one, still is.
		{"route moved, with prev", withPrev(func(r []*config.Route) []*config.Route { return append(r[1:3], r[0]) }), entryFor(2)},
		{"route added out of order, with prev", withPrev(func(r []*config.Route) []*config.Route {
			return slices.Insert(r, 1, &config.Route{Name: "z"})
		}), entryFor(2)},
		{"route named twice, with prev", withPrev(func(r []*config.Route) []*config.Route { return slices.Insert(r, 1, r[1]) }), entryFor(2)},
		{"unnamed route, with prev", withPrev(func(r []*config.Route) []*config.Route { return append(r, &config.Route{}) }), entryFor(2)},
		{"services named twice", &store.State{Revision: 2, Config: config.Config{Services: []config.Service{{Name: "a"}, {Name: "a"}}}}, entryFor(2)},
		{"consumer without a name", &store.State{Revision: 2, Config: config.Config{Consumers: []config.Consumer{{}}}}, entryFor(2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Commit(ctxFor(t), tc.next, tc.entry)
			if err == nil || errors.Is(err, store.ErrConflict) {
				t.Fatalf("err = %v, want a validation error other than ErrConflict", err)
			}
		})
	}
	if got := mustLoad(t, s).Revision; got != 1 {
		t.Errorf("revision = %d after invalid commits, want 1", got)
	}
}

// withPrev is a revision 2 made by edit from a revision 1 of three routes
// in order, with State.Prev set to it.
func withPrev(edit func([]*config.Route) []*config.Route) *store.State {
	prev := &config.Config{Routes: []*config.Route{{Name: "a"}, {Name: "b"}, {Name: "c"}}}
	return &store.State{Revision: 2, Config: config.Config{Routes: edit(slices.Clone(prev.Routes))}, Prev: prev}
}

func testAudit(t *testing.T, s store.Store) {
	const n = 10
	commitN(t, s, n)
	all := mustAudit(t, s, 0, 1000)
	want := make([]store.AuditEntry, n)
	for i := range want {
		want[i] = entryFor(int64(i + 1))
	}
	if diff := cmp.Diff(want, all, cmpOpts); diff != "" {
		t.Fatalf("audit entries (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		after int64
		limit int
		want  []int64
	}{
		{0, 3, []int64{1, 2, 3}},
		{0, n, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{4, 2, []int64{5, 6}},
		{7, 100, []int64{8, 9, 10}},
		{9, 1, []int64{10}},
		{n, 5, nil},
		{n + 100, 5, nil},
		{-5, 2, []int64{1, 2}},
	} {
		t.Run(fmt.Sprintf("after=%d,limit=%d", tc.after, tc.limit), func(t *testing.T) {
			got := revisions(mustAudit(t, s, tc.after, tc.limit))
			if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
				t.Errorf("revisions (-want +got):\n%s", diff)
			}
		})
	}
	for _, limit := range []int{0, -1} {
		if _, err := s.Audit(ctxFor(t), 0, limit); err == nil {
			t.Errorf("audit with limit %d: no error", limit)
		}
	}
}

func testWaitPast(t *testing.T, s store.Store) {
	commitN(t, s, 2)
	for _, after := range []int64{-1, 0, 1} {
		rev, err := s.WaitRevision(ctxFor(t), after)
		if err != nil || rev != 2 {
			t.Errorf("WaitRevision(%d) = %d, %v; want 2 at once", after, rev, err)
		}
	}
	// Nothing to wait for and nothing coming: only the deadline ends it.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if rev, err := s.WaitRevision(ctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitRevision(2) at revision 2 = %d, %v; want DeadlineExceeded", rev, err)
	}
}

type waitResult struct {
	rev int64
	err error
}

// waitAsync starts WaitRevision(after) in a goroutine; the test's safety
// context guarantees it ends.
func waitAsync(ctx context.Context, s store.Store, after int64) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		rev, err := s.WaitRevision(ctx, after)
		ch <- waitResult{rev, err}
	}()
	return ch
}

func testWaitWakes(t *testing.T, s store.Store) {
	commitN(t, s, 1)
	woken := waitAsync(ctxFor(t), s, 1)
	select {
	case r := <-woken:
		t.Fatalf("WaitRevision(1) returned %d, %v before any commit", r.rev, r.err)
	default:
	}
	commitFrom(t, s, 1)
	select {
	case r := <-woken:
		if r.err != nil || r.rev < 2 {
			t.Fatalf("WaitRevision(1) = %d, %v; want >= 2", r.rev, r.err)
		}
	case <-time.After(safety):
		t.Fatal("WaitRevision(1) did not wake up after commit 2")
	}

	// Several waiters, all woken by the one commit.
	var waiters []<-chan waitResult
	for range 4 {
		waiters = append(waiters, waitAsync(ctxFor(t), s, 2))
	}
	commitFrom(t, s, 2)
	for i, w := range waiters {
		if r := <-w; r.err != nil || r.rev != 3 {
			t.Errorf("waiter %d: WaitRevision(2) = %d, %v; want 3", i, r.rev, r.err)
		}
	}
}

func testWaitCancel(t *testing.T, s store.Store) {
	commitN(t, s, 1)
	ctx, cancel := context.WithCancel(ctxFor(t))
	res := waitAsync(ctx, s, 1)
	cancel()
	if r := <-res; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("WaitRevision after cancel = %d, %v; want context.Canceled", r.rev, r.err)
	}
	// The store is still usable.
	commitFrom(t, s, 1)
}

func testWaitClose(t *testing.T, s store.Store) {
	commitN(t, s, 1)
	res := waitAsync(ctxFor(t), s, 1)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if r := <-res; !errors.Is(r.err, store.ErrClosed) {
		t.Fatalf("WaitRevision across Close = %d, %v; want ErrClosed", r.rev, r.err)
	}
}

// testConcurrentWriters runs the read-modify-write loop every writer of the
// control plane runs. Each commit adds one consumer to the state it read, so
// a lost update shows as a missing consumer, not only as a missing revision.
func testConcurrentWriters(t *testing.T, s store.Store) {
	const writers, commits = 8, 20
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	conflicts := make([]int, writers)
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < commits; {
				cur, err := s.Load(ctx)
				if err != nil {
					t.Errorf("writer %d: load: %v", w, err)
					return
				}
				next := &store.State{Revision: cur.Revision + 1, Config: *cur.Config.Clone()}
				name := fmt.Sprintf("w%d-%02d", w, i)
				next.Config.Consumers = append(next.Config.Consumers, config.Consumer{Name: name})
				next.Config.Sort()
				entry := store.AuditEntry{Revision: next.Revision, Actor: fmt.Sprintf("writer-%d", w), Action: "create", Kind: config.KindConsumer, Name: name}
				err = s.Commit(ctx, next, entry)
				switch {
				case errors.Is(err, store.ErrConflict):
					conflicts[w]++
				case err != nil:
					t.Errorf("writer %d: commit %d: %v", w, next.Revision, err)
					return
				default:
					i++
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("conflicts per writer: %v", conflicts)

	const total = writers * commits
	st := mustLoad(t, s)
	if st.Revision != total {
		t.Errorf("final revision = %d, want %d", st.Revision, total)
	}
	if len(st.Config.Consumers) != total {
		t.Errorf("final state has %d consumers, want %d: updates were lost", len(st.Config.Consumers), total)
	}
	es := mustAudit(t, s, 0, 10*total)
	if len(es) != total {
		t.Fatalf("%d audit entries, want %d", len(es), total)
	}
	perActor := map[string]int{}
	for i, e := range es {
		if e.Revision != int64(i+1) {
			t.Fatalf("audit entry %d has revision %d: revisions 1..%d must each appear once, in order", i, e.Revision, total)
		}
		perActor[e.Actor]++
	}
	for w := range writers {
		if n := perActor[fmt.Sprintf("writer-%d", w)]; n != commits {
			t.Errorf("writer-%d has %d audit entries, want %d", w, n, commits)
		}
	}
}

// LargeConfig returns a configuration of n routes (two paths each) over a
// hundred services: several MB of JSON at n = 10,000, beyond the size limits
// of a single value in most KV stores.
func LargeConfig(n int) config.Config {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var c config.Config
	for i := range 100 {
		c.Services = append(c.Services, config.Service{
			Name:    fmt.Sprintf("svc-%03d", i),
			Targets: []config.Target{{URL: fmt.Sprintf("http://10.1.%d.1:8080", i)}, {URL: fmt.Sprintf("http://10.1.%d.2:8080", i), Weight: 2}},
			Meta:    config.Meta{Version: 1, Revision: 1, CreatedAt: at, UpdatedAt: at},
		})
	}
	for i := range n {
		c.Routes = append(c.Routes, &config.Route{
			Name:    fmt.Sprintf("route-%05d", i),
			Paths:   []string{fmt.Sprintf("/api/v1/tenant-%05d/items/{id}", i), fmt.Sprintf("/api/v1/tenant-%05d/static/*", i)},
			Methods: []string{"GET", "POST"},
			Hosts:   []string{fmt.Sprintf("t%05d.example.com", i)},
			Service: fmt.Sprintf("svc-%03d", i%100),
			Timeout: config.Duration(time.Duration(i%30+1) * time.Second),
			Meta:    config.Meta{Version: int64(i%7 + 1), Revision: 1, CreatedAt: at, UpdatedAt: at.Add(time.Duration(i) * time.Millisecond)},
		})
	}
	for i := range 500 {
		c.Consumers = append(c.Consumers, config.Consumer{Name: fmt.Sprintf("consumer-%03d", i), Groups: []string{"g1", "g2"}})
	}
	return c
}

func testLargeState(t *testing.T, s store.Store) {
	big := &store.State{Revision: 1, Config: LargeConfig(10_000)}
	entry := store.AuditEntry{Revision: 1, Actor: "import", Action: "import", Summary: "10000 routes"}
	if err := s.Commit(ctxFor(t), big, entry); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if diff := diff(big, mustLoad(t, s)); diff != "" {
		t.Fatalf("large state (-want +got):\n%s", diff)
	}
	// Replace it with a changed large state, then a small one: old data must
	// not leak into the new revision.
	big2 := &store.State{Revision: 2, Config: *big.Config.Clone()}
	big2.Config.Routes = big2.Config.Routes[:9_000]
	big2.Config.Routes[42].Paths = []string{"/changed"}
	if err := s.Commit(ctxFor(t), big2, store.AuditEntry{Revision: 2, Actor: "import", Action: "import"}); err != nil {
		t.Fatalf("commit 2: %v", err)
	}
	if diff := diff(big2, mustLoad(t, s)); diff != "" {
		t.Fatalf("large state 2 (-want +got):\n%s", diff)
	}
	small := &store.State{Revision: 3, Config: Sample(3)}
	if err := s.Commit(ctxFor(t), small, entryFor(3)); err != nil {
		t.Fatalf("commit 3: %v", err)
	}
	if diff := cmp.Diff(small, mustLoad(t, s), cmpOpts); diff != "" {
		t.Fatalf("small state after large (-want +got):\n%s", diff)
	}
}

// testTouched commits states that say what they changed (State.Touched),
// as the catalog does: creations, changes and deletions of every kind and
// of the global section must all be stored, and a commit that starts a new
// epoch is stored whole whatever it says it touched (it was not computed
// from the stored revision).
func testTouched(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	cur := &store.State{Revision: 1, Epoch: snapshot.Epoch{ID: "e1"}, Config: LargeConfig(300)}
	cur.Config.Issuers = []config.Issuer{{Name: "idp", Issuer: "https://idp.example"}}
	if err := s.Commit(ctx, cur, store.AuditEntry{Revision: 1, Action: "import"}); err != nil {
		t.Fatalf("commit 1: %v", err)
	}
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	steps := []func(c *config.Config){
		func(c *config.Config) { // change a route, delete one, add one
			c.Routes[7].Paths = []string{"/changed"}
			c.Routes[7].Meta.Version++
			c.Routes = slices.Delete(c.Routes, 11, 12)
			c.Routes = append(c.Routes, &config.Route{Name: "zz-new", Paths: []string{"/new"}, Service: "svc-000", Meta: config.Meta{Version: 1, CreatedAt: at}})
		},
		func(c *config.Config) { // a service, a consumer, an issuer and the global section
			c.Services[3].Targets = []config.Target{{URL: "http://10.9.9.9:80"}}
			c.Consumers = slices.Delete(c.Consumers, 0, 1)
			c.Issuers[0].Audiences = []string{"api"}
			c.Global.RateLimit = &config.RateLimit{Limit: 10, Window: config.Duration(time.Second)}
		},
		func(c *config.Config) { // everything of one kind goes
			c.Issuers = nil
			c.Global.RateLimit = nil
		},
	}
	for i, step := range steps {
		next := &store.State{Revision: cur.Revision + 1, Epoch: cur.Epoch, Config: *cur.Config.Clone()}
		step(&next.Config)
		for j := range next.Config.Routes {
			next.Config.Routes[j].Meta.Revision = max(next.Config.Routes[j].Meta.Revision, 1)
		}
		changed := snapshot.Changes(&cur.Config, &next.Config)
		changed.Services["svc-003"] = struct{}{} // its version did not move here
		changed.Issuers["idp"] = struct{}{}
		changed.Routes["route-00007"] = struct{}{}
		next.Touched = &changed
		if err := s.Commit(ctx, next, store.AuditEntry{Revision: next.Revision, Action: "update"}); err != nil {
			t.Fatalf("step %d: commit: %v", i, err)
		}
		next.Touched = nil
		if d := diff(next, mustLoad(t, s)); d != "" {
			t.Fatalf("step %d: load after a commit of what it touched (-want +got):\n%s", i, d)
		}
		cur = next
	}
	// A new epoch names its predecessor and claims to touch nothing: it is
	// still stored whole.
	adopt := &store.State{Revision: cur.Revision + 1, Epoch: snapshot.Epoch{ID: "e2", Prev: "e1"}, Config: Sample(9)}
	adopt.Touched = &snapshot.Touched{}
	if err := s.Commit(ctx, adopt, store.AuditEntry{Revision: adopt.Revision, Action: "adopt"}); err != nil {
		t.Fatalf("commit in a new epoch: %v", err)
	}
	adopt.Touched = nil
	if d := cmp.Diff(adopt, mustLoad(t, s), cmpOpts); d != "" {
		t.Fatalf("load after a new epoch (-want +got):\n%s", d)
	}
}

// testTokens: admin tokens are committed with the state, kept by commits
// that change only configuration (with Touched, as the catalog writes),
// changed and removed by commits that change them, and refused out of
// name order like every collection.
func testTokens(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	at := time.Date(2026, 7, 8, 9, 10, 11, 0, time.UTC)
	exp := at.Add(24 * time.Hour)
	tok := func(name, role string, kinds ...config.Kind) store.Token {
		return store.Token{Token: apiv1.Token{TokenSpec: apiv1.TokenSpec{Name: name, Role: role, Kinds: kinds, ExpiresAt: &exp},
			Prefix: "pat_AbCd", CreatedAt: at, CreatedBy: "admin", Revision: 1}, Hash: "sha256:" + strings.Repeat(name[:1], 64)}
	}
	steps := []struct {
		name   string
		tokens []store.Token
		edit   func(c *config.Config)
	}{
		{"first tokens", []store.Token{tok("ci", "write", config.KindRoute), tok("ops", "admin")}, nil},
		{"configuration only", []store.Token{tok("ci", "write", config.KindRoute), tok("ops", "admin")}, func(c *config.Config) {
			c.Routes[0].Paths = []string{"/other"}
			c.Routes[0].Meta.Version++
		}},
		{"one revoked, one added", []store.Token{tok("audit", "read"), tok("ops", "admin")}, nil},
		{"all revoked", nil, nil},
	}
	cur := &store.State{Revision: 0, Epoch: snapshot.Epoch{ID: "e1"}, Config: Sample(1)}
	for _, step := range steps {
		next := &store.State{Revision: cur.Revision + 1, Epoch: cur.Epoch, Config: *cur.Config.Clone(), Tokens: step.tokens}
		if step.edit != nil {
			step.edit(&next.Config)
		}
		changed := snapshot.Changes(&cur.Config, &next.Config)
		next.Touched = &changed
		if err := s.Commit(ctx, next, store.AuditEntry{Revision: next.Revision, Action: "update"}); err != nil {
			t.Fatalf("%s: commit: %v", step.name, err)
		}
		next.Touched = nil
		if d := diff(next, mustLoad(t, s)); d != "" {
			t.Fatalf("%s: load (-want +got):\n%s", step.name, d)
		}
		cur = next
	}
	bad := &store.State{Revision: cur.Revision + 1, Epoch: cur.Epoch, Config: cur.Config, Tokens: []store.Token{tok("ops", "admin"), tok("ci", "read")}}
	if err := s.Commit(ctx, bad, store.AuditEntry{Revision: bad.Revision}); err == nil || errors.Is(err, store.ErrConflict) {
		t.Fatalf("commit of tokens out of name order = %v, want a refusal that is not a conflict", err)
	}
}

func testClosed(t *testing.T, s store.Store) {
	commitN(t, s, 1)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	ctx := ctxFor(t)
	if _, err := s.Load(ctx); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Load after Close: %v, want ErrClosed", err)
	}
	if err := s.Commit(ctx, &store.State{Revision: 2}, store.AuditEntry{Revision: 2}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Commit after Close: %v, want ErrClosed", err)
	}
	if _, err := s.WaitRevision(ctx, 0); !errors.Is(err, store.ErrClosed) {
		t.Errorf("WaitRevision after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Audit(ctx, 0, 10); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Audit after Close: %v, want ErrClosed", err)
	}
}

func testReopen(t *testing.T, s store.Store, reopen func(old store.Store) store.Store) {
	commitN(t, s, 3)
	if err := s.(store.Secrets).PutSecret(ctxFor(t), "reopen", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	want := mustLoad(t, s)
	wantAudit := mustAudit(t, s, 0, 100)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s2 := reopen(s)
	if diff := cmp.Diff(want, mustLoad(t, s2), cmpOpts); diff != "" {
		t.Errorf("state after reopen (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantAudit, mustAudit(t, s2, 0, 100), cmpOpts); diff != "" {
		t.Errorf("audit after reopen (-before +after):\n%s", diff)
	}
	if rev, err := s2.WaitRevision(ctxFor(t), 2); err != nil || rev != 3 {
		t.Errorf("WaitRevision(2) after reopen = %d, %v; want 3", rev, err)
	}
	if err := s2.Commit(ctxFor(t), &store.State{Revision: 3}, entryFor(3)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("commit of revision 3 again after reopen: %v, want ErrConflict", err)
	}
	if v, ok, err := s2.(store.Secrets).GetSecret(ctxFor(t), "reopen"); err != nil || !ok || string(v) != "kept" {
		t.Errorf("secret after reopen = %q, %v, %v; want kept", v, ok, err)
	}
	commitFrom(t, s2, 3)
	if got := mustLoad(t, s2).Revision; got != 4 {
		t.Errorf("revision = %d after commit 4, want 4", got)
	}
}

// testEpoch checks the store's identity: the epoch is stored with each
// revision, and a commit may only stay in the stored epoch or start a new
// one that names the stored one as its predecessor (an operator's adopt).
// A control plane holding an epoch the store no longer has must not be able
// to write into it.
func testEpoch(t *testing.T, s store.Store) {
	if ep := mustLoad(t, s).Epoch; ep != (snapshot.Epoch{}) {
		t.Fatalf("new store has epoch %+v, want none", ep)
	}
	a := snapshot.Epoch{ID: "epoch-a"}
	b := snapshot.Epoch{ID: "epoch-b", Prev: "epoch-a"}
	commit := func(rev int64, ep snapshot.Epoch) error {
		return s.Commit(ctxFor(t), &store.State{Revision: rev, Epoch: ep, Config: Sample(rev)}, entryFor(rev))
	}
	for rev := int64(1); rev <= 2; rev++ {
		if err := commit(rev, a); err != nil {
			t.Fatalf("commit %d in %+v: %v", rev, a, err)
		}
	}
	if got := mustLoad(t, s); got.Epoch != a || got.Revision != 2 {
		t.Fatalf("load = revision %d epoch %+v, want 2 %+v", got.Revision, got.Epoch, a)
	}
	for _, tc := range []struct {
		name string
		ep   snapshot.Epoch
	}{
		{"another epoch", snapshot.Epoch{ID: "epoch-x"}},
		{"no epoch", snapshot.Epoch{}},
		{"successor of another", snapshot.Epoch{ID: "epoch-x", Prev: "epoch-y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := commit(3, tc.ep); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("commit 3 in %+v over epoch-a: err = %v, want ErrConflict", tc.ep, err)
			}
			if got := mustLoad(t, s); got.Epoch != a || got.Revision != 2 {
				t.Errorf("refused commit changed the store: revision %d epoch %+v", got.Revision, got.Epoch)
			}
		})
	}
	if err := commit(3, b); err != nil {
		t.Fatalf("commit 3 in %+v (successor of the stored epoch): %v", b, err)
	}
	if got := mustLoad(t, s); got.Epoch != b || got.Revision != 3 {
		t.Fatalf("load = revision %d epoch %+v, want 3 %+v", got.Revision, got.Epoch, b)
	}
	// The epoch that was left cannot come back.
	if err := commit(4, a); !errors.Is(err, store.ErrConflict) {
		t.Errorf("commit 4 back in %+v: err = %v, want ErrConflict", a, err)
	}
	if err := commit(4, b); err != nil {
		t.Errorf("commit 4 in %+v: %v", b, err)
	}
}

// testSecrets: the control plane's own secrets (ACME account keys) are
// kept beside the configuration, never in a revision.
func testSecrets(t *testing.T, s store.Store) {
	sec, ok := s.(store.Secrets)
	if !ok {
		t.Fatalf("%T does not keep secrets (store.Secrets)", s)
	}
	ctx := ctxFor(t)
	if v, ok, err := sec.GetSecret(ctx, "acme-account-x"); err != nil || ok || v != nil {
		t.Fatalf("absent secret = %q, %v, %v", v, ok, err)
	}
	for _, v := range []string{"first", "second"} {
		if err := sec.PutSecret(ctx, "acme-account-x", []byte(v)); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := sec.GetSecret(ctx, "acme-account-x"); err != nil || !ok || string(got) != v {
			t.Fatalf("secret = %q, %v, %v; want %q", got, ok, err, v)
		}
	}
	if err := sec.PutSecret(ctx, "a/b", []byte("x")); err == nil {
		t.Error("a secret name with '/' was accepted")
	}
	if err := sec.PutSecret(ctx, "big", make([]byte, store.MaxSecretBytes+1)); err == nil {
		t.Error("an oversized secret was accepted")
	}
	commitN(t, s, 1)
	st := mustLoad(t, s)
	if st.Revision != 1 {
		t.Errorf("a secret made a revision: %d", st.Revision)
	}
}

// testLease: a lease is held until released (or ctx ends).
func testLease(t *testing.T, s store.Store) {
	l, ok := s.(store.Leases)
	if !ok {
		t.Fatalf("%T has no leases (store.Leases)", s)
	}
	ctx, cancel := context.WithCancel(ctxFor(t))
	held, release, err := l.Lead(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if held.Err() != nil {
		t.Fatal("lease lost at once")
	}
	release()
	<-held.Done()
	// Taken again after release; lost with ctx.
	held, release, err = l.Lead(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	cancel()
	<-held.Done()
	if _, _, err := l.Lead(ctx, "acme"); err == nil {
		t.Error("Lead with an ended ctx succeeded")
	}
}
