package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/consul/api"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/controlplane/internal/store/storetest"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// One agent serves every Consul test of the package, each under its own KV
// prefix. It starts with the first test that needs it, so that the bolt tests
// run without Consul, and TestMain stops it.
var (
	agentOnce sync.Once
	agent     *testutil.Consul
	agentErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if agent != nil {
		if err := agent.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stop consul agent:", err)
		}
	}
	os.Exit(code)
}

func consulAgent(t *testing.T) *testutil.Consul {
	t.Helper()
	agentOnce.Do(func() { agent, agentErr = testutil.LaunchConsul() })
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agent
}

var prefixSeq atomic.Int64

// uniquePrefix derives a KV prefix from the test's name, readable when
// browsing the agent, and unique even for a test run twice.
func uniquePrefix(t *testing.T) string {
	name := regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(t.Name(), "-")
	return fmt.Sprintf("portico-test/%s-%d", name, prefixSeq.Add(1))
}

func openConsul(t *testing.T, addr, prefix string) *store.Consul {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := store.OpenConsul(ctx, "consul://"+addr+"/"+prefix)
	if err != nil {
		t.Fatalf("OpenConsul: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rawClient(t *testing.T, addr string) *api.KV {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = addr
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c.KV()
}

func TestConsul(t *testing.T) {
	addr := consulAgent(t).Addr
	storetest.Run(t,
		func(t *testing.T) store.Store { return openConsul(t, addr, uniquePrefix(t)) },
		storetest.WithReopen(func(t *testing.T, old store.Store) store.Store {
			return openConsul(t, addr, old.(*store.Consul).Prefix())
		}),
	)
}

func commit(t *testing.T, s store.Store, st *store.State) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return s.Commit(ctx, st, store.AuditEntry{Revision: st.Revision, Actor: "test", Action: "update"})
}

func load(t *testing.T, s store.Store) *store.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return st
}

func withRoute(rev int64, name string) *store.State {
	return &store.State{Revision: rev, Config: config.Config{Routes: []*config.Route{{Name: name, Paths: []string{"/" + name}, Service: "s"}}}}
}

// TestConsulReplicas runs two stores on one prefix, as two control-plane
// replicas would.
func TestConsulReplicas(t *testing.T) {
	addr := consulAgent(t).Addr
	prefix := uniquePrefix(t)
	a, b := openConsul(t, addr, prefix), openConsul(t, addr, prefix)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	woken := make(chan int64, 1)
	go func() {
		rev, err := b.WaitRevision(ctx, 0)
		if err != nil {
			t.Errorf("B: WaitRevision(0): %v", err)
		}
		woken <- rev
	}()
	if err := commit(t, a, withRoute(1, "from-a")); err != nil {
		t.Fatalf("A: commit 1: %v", err)
	}
	if rev := <-woken; rev != 1 {
		t.Fatalf("B woke at revision %d, want 1", rev)
	}
	if got := load(t, b); got.Revision != 1 || got.Config.Routes[0].Name != "from-a" {
		t.Fatalf("B loads %+v, want A's revision 1", got)
	}

	// B computed revision 2 from revision 1, but A committed 2 first.
	stale := load(t, b)
	if err := commit(t, a, withRoute(2, "from-a-2")); err != nil {
		t.Fatalf("A: commit 2: %v", err)
	}
	err := commit(t, b, withRoute(stale.Revision+1, "from-b"))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("B: stale commit: %v, want ErrConflict", err)
	}
	for name, s := range map[string]store.Store{"A": a, "B": b} {
		if got := load(t, s); got.Revision != 2 || got.Config.Routes[0].Name != "from-a-2" {
			t.Errorf("%s loads revision %d %v, want A's revision 2", name, got.Revision, got.Config.Routes)
		}
	}
	// B's chunks for revision 2 were removed; only A's remain.
	dirs, _, err := rawClient(t, addr).Keys(fmt.Sprintf("%s/state/%020d/", prefix, 2), "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 1 {
		t.Errorf("chunk directories of revision 2: %v, want only the winner's", dirs)
	}
	// B catches up and commits.
	if err := commit(t, b, withRoute(3, "from-b")); err != nil {
		t.Fatalf("B: commit 3: %v", err)
	}
	if rev, err := a.WaitRevision(ctx, 2); err != nil || rev != 3 {
		t.Errorf("A: WaitRevision(2) = %d, %v; want 3", rev, err)
	}
}

// TestConsulSameRevisionRace has two replicas write the same revision at
// once, many times: exactly one must win, and the state must be the winner's
// exactly, never a mix of both writers' chunks.
func TestConsulSameRevisionRace(t *testing.T) {
	addr := consulAgent(t).Addr
	prefix := uniquePrefix(t)
	replicas := []store.Store{openConsul(t, addr, prefix), openConsul(t, addr, prefix)}
	// Large enough that encoding it keeps both writers busy long enough to
	// read the same head and write their chunks before either commits.
	base := storetest.LargeConfig(3_000)
	for rev := int64(1); rev <= 5; rev++ {
		states := make([]*store.State, len(replicas))
		errs := make([]error, len(replicas))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, s := range replicas {
			states[i] = &store.State{Revision: rev, Config: *base.Clone()}
			states[i].Config.Consumers = append(states[i].Config.Consumers, config.Consumer{Name: fmt.Sprintf("zz-replica-%d", i)})
			wg.Go(func() {
				<-start
				errs[i] = commit(t, s, states[i])
			})
		}
		close(start)
		wg.Wait()
		var winner *store.State
		for i, err := range errs {
			switch {
			case err == nil && winner == nil:
				winner = states[i]
			case err == nil:
				t.Fatalf("revision %d: both replicas committed", rev)
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("revision %d: replica %d: %v", rev, i, err)
			}
		}
		if winner == nil {
			t.Fatalf("revision %d: both replicas got ErrConflict", rev)
		}
		for i, s := range replicas {
			got := load(t, s)
			if reflect.DeepEqual(winner, got) {
				continue // cmp is slow on a state this size
			}
			if diff := cmp.Diff(winner, got, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("revision %d: replica %d loads something else than the winner's state (-want +got):\n%s", rev, i, diff)
			}
		}
	}
}

// TestConsulLayout checks what other tools (and operators browsing Consul)
// see: the head record, chunk sizes within Consul's value limit, one audit
// key per revision, and old chunks collected.
func TestConsulLayout(t *testing.T) {
	addr := consulAgent(t).Addr
	prefix := uniquePrefix(t)
	s := openConsul(t, addr, prefix)
	kv := rawClient(t, addr)

	big := &store.State{Revision: 1, Config: noisyConfig(8_000)}
	if err := commit(t, s, big); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(big, load(t, s), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("multi-chunk state (-want +got):\n%s", diff)
	}
	pair, _, err := kv.Get(prefix+"/head", nil)
	if err != nil || pair == nil {
		t.Fatalf("head: %v, %v", pair, err)
	}
	var head struct {
		Revision int64  `json:"revision"`
		Chunks   int    `json:"chunks"`
		SHA256   string `json:"sha256"`
		ID       string `json:"id"`
	}
	if err := json.Unmarshal(pair.Value, &head); err != nil {
		t.Fatalf("head %s: %v", pair.Value, err)
	}
	// noisyConfig compresses badly enough to need several chunks.
	if head.Revision != 1 || head.Chunks < 2 || len(head.SHA256) != 64 || head.ID == "" {
		t.Errorf("head = %+v, want revision 1 in several chunks", head)
	}
	chunks, _, err := kv.List(fmt.Sprintf("%s/state/%020d/%s/", prefix, 1, head.ID), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != head.Chunks {
		t.Errorf("%d chunks stored, head says %d", len(chunks), head.Chunks)
	}
	for i, c := range chunks {
		if want := fmt.Sprintf("%s/state/%020d/%s/%06d", prefix, 1, head.ID, i); c.Key != want {
			t.Errorf("chunk key %s, want %s", c.Key, want)
		}
		if len(c.Value) > 256<<10 {
			t.Errorf("chunk %s is %d bytes, over 256 KiB", c.Key, len(c.Value))
		}
	}

	for rev := int64(2); rev <= 8; rev++ {
		if err := commit(t, s, withRoute(rev, "r")); err != nil {
			t.Fatal(err)
		}
	}
	dirs, _, err := kv.Keys(prefix+"/state/", "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for rev := 6; rev <= 8; rev++ {
		want = append(want, fmt.Sprintf("%s/state/%020d/", prefix, rev))
	}
	if diff := cmp.Diff(want, dirs); diff != "" {
		t.Errorf("state revisions kept (-want +got):\n%s", diff)
	}
	audit, _, err := kv.Keys(prefix+"/audit/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 8 || audit[7] != fmt.Sprintf("%s/audit/%020d", prefix, 8) {
		t.Errorf("audit keys = %v", audit)
	}
}

// noisyConfig is n routes whose hosts are random, so that unlike
// storetest.LargeConfig it stays large after compression.
func noisyConfig(n int) config.Config {
	rnd := rand.New(rand.NewPCG(1, 2))
	c := config.Config{Routes: make([]*config.Route, n)}
	for i := range c.Routes {
		c.Routes[i] = &config.Route{
			Name:    fmt.Sprintf("route-%05d", i),
			Paths:   []string{fmt.Sprintf("/r/%d/*", i)},
			Hosts:   []string{fmt.Sprintf("%016x%016x.example.com", rnd.Uint64(), rnd.Uint64()), fmt.Sprintf("%016x.example.org", rnd.Uint64())},
			Service: "s",
		}
	}
	return c
}

// TestConsulAuditGap covers audit entries deleted behind the store's back
// (by hand, or a retention policy): reading around the gap still works.
func TestConsulAuditGap(t *testing.T) {
	addr := consulAgent(t).Addr
	prefix := uniquePrefix(t)
	s := openConsul(t, addr, prefix)
	for rev := int64(1); rev <= 6; rev++ {
		if err := commit(t, s, withRoute(rev, "r")); err != nil {
			t.Fatal(err)
		}
	}
	kv := rawClient(t, addr)
	for _, rev := range []int{2, 3} {
		if _, err := kv.Delete(fmt.Sprintf("%s/audit/%020d", prefix, rev), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		after int64
		limit int
		want  []int64
	}{
		{0, 3, []int64{1, 4, 5}},
		{1, 2, []int64{4, 5}},
		{3, 10, []int64{4, 5, 6}},
	} {
		es, err := s.Audit(t.Context(), tc.after, tc.limit)
		if err != nil {
			t.Fatalf("Audit(%d, %d): %v", tc.after, tc.limit, err)
		}
		var got []int64
		for _, e := range es {
			got = append(got, e.Revision)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Audit(%d, %d) revisions (-want +got):\n%s", tc.after, tc.limit, diff)
		}
	}
}

// TestConsulOutage stops the agent under a waiting replica: the wait must
// ride out the outage and report the first commit after it.
func TestConsulOutage(t *testing.T) {
	c := testutil.StartConsul(t) // its own agent: the shared one stays up
	prefix := uniquePrefix(t)
	a, b := openConsul(t, c.Addr, prefix), openConsul(t, c.Addr, prefix)
	if err := commit(t, a, withRoute(1, "before")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	type result struct {
		rev int64
		err error
	}
	woken := make(chan result, 1)
	go func() {
		rev, err := b.WaitRevision(ctx, 1)
		woken <- result{rev, err}
	}()

	c.Stop()
	if _, err := a.Load(ctx); err == nil {
		t.Error("Load succeeded with the agent down")
	}
	select {
	case r := <-woken:
		t.Fatalf("WaitRevision returned during the outage: %d, %v", r.rev, r.err)
	default:
	}
	c.Restart()

	if got := load(t, a); got.Revision != 1 || got.Config.Routes[0].Name != "before" {
		t.Fatalf("after restart A loads %+v, want revision 1", got)
	}
	if err := commit(t, a, withRoute(2, "after")); err != nil {
		t.Fatalf("commit after restart: %v", err)
	}
	if r := <-woken; r.err != nil || r.rev != 2 {
		t.Fatalf("WaitRevision across the outage = %d, %v; want 2", r.rev, r.err)
	}
}

func TestOpenConsulSpec(t *testing.T) {
	addr := consulAgent(t).Addr
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	good := []struct {
		spec, prefix string
	}{
		{"consul://" + addr + "/portico", "portico"},
		{"consul://" + addr + "/portico/prod/eu-1", "portico/prod/eu-1"},
		{"consul://" + addr + "//portico/prod/", "portico/prod"},
	}
	for _, tc := range good {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := store.Open(ctx, tc.spec)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			c, ok := s.(*store.Consul)
			if !ok {
				t.Fatalf("Open returned %T", s)
			}
			if c.Prefix() != tc.prefix || c.Addr() != addr {
				t.Errorf("Prefix, Addr = %q, %q; want %q, %q", c.Prefix(), c.Addr(), tc.prefix, addr)
			}
		})
	}

	bad := []struct {
		spec, wantErr string
	}{
		{"consul://", "host:port"},
		{"consul:///portico", "host:port"},
		{"consul://" + addr, "prefix is empty"},
		{"consul://" + addr + "/", "prefix is empty"},
		{"consul://" + addr + "///", "prefix is empty"},
		{"consul://127.0.0.1/portico", "host:port"},
		{"consul://:8500/portico", "host:port"},
		{"consul://127.0.0.1:http/portico", "port"},
		{"consul://127.0.0.1:0/portico", "port"},
		{"consul://127.0.0.1:8500/a//b", "empty"},
		{"consul://127.0.0.1:8500/a/../b", ".."},
		{"consul://user:secret@127.0.0.1:8500/portico", "CONSUL_HTTP_TOKEN"},
		{"consul://127.0.0.1:8500/portico?token=x", "query"},
		{"consul:127.0.0.1:8500/portico", "consul://"},
		{"consul://127.0.0.1:8500/%zz", "consul://"},
	}
	for _, tc := range bad {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := store.OpenConsul(ctx, tc.spec)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}

	t.Run("unreachable agent", func(t *testing.T) {
		spec := fmt.Sprintf("consul://127.0.0.1:%d/portico", testutil.FreePort(t))
		s, err := store.OpenConsul(ctx, spec)
		if err == nil {
			s.Close()
			t.Fatal("OpenConsul of an agent that is not there succeeded")
		}
		if !strings.Contains(err.Error(), spec) {
			t.Errorf("error %q does not name the spec", err)
		}
	})
}

// TestConsulLeaseOneAtATime: two control planes sharing a Consul store take
// the ACME lease in turn, never both at once.
func TestConsulLeaseOneAtATime(t *testing.T) {
	agent := consulAgent(t)
	prefix := uniquePrefix(t)
	a, b := openConsul(t, agent.Addr, prefix), openConsul(t, agent.Addr, prefix)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	heldA, releaseA, err := a.Lead(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	var releaseB func()
	go func() {
		var err error
		_, releaseB, err = b.Lead(ctx, "acme")
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("the second control plane took a held lease (err %v)", err)
	case <-time.After(2 * time.Second):
		// Not a timed assertion of speed: B must still be waiting while A holds.
	}
	if heldA.Err() != nil {
		t.Fatal("A lost the lease while B waited")
	}
	releaseA()
	if err := <-got; err != nil {
		t.Fatalf("B after A released: %v", err)
	}
	releaseB()
}
