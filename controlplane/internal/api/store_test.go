package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/problem"
	"github.com/portico-gw/portico/shared/snapshot"
	"github.com/portico-gw/portico/shared/testutil"
)

// newConsulServer is newTestServer on a Consul KV store of agent, with the
// catalog following the store (Run) as the control plane's main does.
func newConsulServer(t *testing.T, agent *testutil.Consul) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.OpenConsul(ctx, "consul://"+agent.Addr+"/portico")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cat, err := catalog.New(ctx, st, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cat.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		st.Close()
	})
	return serveCatalog(t, cat, log, false)
}

// TestStoreReset empties or rolls back a Consul KV store under a running
// control plane. Before epochs, every write answered 503 "too many
// concurrent writers" forever. Now writes answer a 409 store-reset problem
// that says what happened, reads keep working, the snapshot data planes get
// stays the last good one, and POST /v1/store/adopt starts a new epoch that
// a data plane polling in the old epoch gets at once.
func TestStoreReset(t *testing.T) {
	for _, tc := range []struct {
		name string
		// reset damages the store after revision 3 and returns the revision
		// the store is left at.
		reset func(t *testing.T, agent *testutil.Consul, save func() io.Reader) int64
		// adopt is the query of POST /v1/store/adopt; wantRoutes, the
		// routes the adopted revision holds.
		adopt      string
		wantRoutes int
	}{
		{"agent restarted empty", func(t *testing.T, agent *testutil.Consul, _ func() io.Reader) int64 {
			agent.RestartEmpty()
			return 0
		}, "", 0},
		{"agent restarted empty, re-seeded from the last seen configuration", func(t *testing.T, agent *testutil.Consul, _ func() io.Reader) int64 {
			agent.RestartEmpty()
			return 0
		}, "?config=last-seen", 2},
		{"older snapshot restored", func(t *testing.T, agent *testutil.Consul, save func() io.Reader) int64 {
			c, err := api.NewClient(&api.Config{Address: agent.Addr})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Snapshot().Restore(nil, save()); err != nil {
				t.Fatal(err)
			}
			return 2
		}, "?config=store", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := testutil.StartConsul(t)
			s := newConsulServer(t, agent)
			ctx, cancelCtx := context.WithTimeout(t.Context(), time.Minute)
			defer cancelCtx()
			s.mustStatus(t, 201, "PUT", "/v1/services/users", svcBody)
			s.mustStatus(t, 201, "PUT", "/v1/routes/a", `{"paths":["/a"],"service":"users"}`)
			// A backup at revision 2, for the rollback case.
			c, err := api.NewClient(&api.Config{Address: agent.Addr})
			if err != nil {
				t.Fatal(err)
			}
			backup, _, err := c.Snapshot().Save(nil)
			if err != nil {
				t.Fatal(err)
			}
			saved, err := io.ReadAll(backup)
			backup.Close()
			if err != nil {
				t.Fatal(err)
			}
			s.mustStatus(t, 201, "PUT", "/v1/routes/b", `{"paths":["/b"],"service":"users"}`)
			before := s.cat.Current().State
			if before.Revision != 3 || before.Epoch.ID == "" {
				t.Fatalf("before the reset: revision %d epoch %+v, want 3 and an epoch", before.Revision, before.Epoch)
			}

			storeRev := tc.reset(t, agent, func() io.Reader { return strings.NewReader(string(saved)) })

			// Writes are refused with a problem that says what happened;
			// the Run probe may see it first, or the write's own CAS.
			var prob problem.Problem
			testutil.Eventually(t, 15*time.Second, func() bool {
				code, _, body := s.call(t, "PUT", "/v1/routes/c", adminToken, `{"paths":["/c"],"service":"users"}`)
				if code != http.StatusConflict {
					return false
				}
				return json.Unmarshal(body, &prob) == nil && strings.HasSuffix(prob.Type, "store-reset")
			}, "writes refused with store-reset")
			for _, want := range []string{"revision 3", before.Epoch.ID, "/v1/store/adopt", "consul://" + agent.Addr} {
				if !strings.Contains(prob.Detail, want) {
					t.Errorf("problem detail %q does not mention %q", prob.Detail, want)
				}
			}
			// Reads serve the last good configuration.
			routes, rev, err := s.admin.Routes().List(ctx)
			if err != nil || rev != 3 || len(routes) != 2 {
				t.Fatalf("routes after the reset = %d at revision %d, %v; want the 2 of revision 3", len(routes), rev, err)
			}
			var st storeStatus
			_, body := s.mustStatus(t, 200, "GET", "/v1/store", "")
			if err := json.Unmarshal(body, &st); err != nil || st.Writable || st.Reset == nil ||
				st.Reset.StoreRevision != storeRev || st.Reset.SeenRevision != 3 {
				t.Fatalf("GET /v1/store = %s, %v", body, err)
			}
			// A data plane still at revision 3 is not handed anything older.
			code, _, _ := s.call(t, "GET", "/v1/snapshot?after=3&wait=100ms", dpToken, "",
				apiv1.HeaderNodeID, "dp-1", apiv1.HeaderAppliedRevision, "3", apiv1.HeaderEpoch, before.Epoch.ID)
			if code != http.StatusNotModified {
				t.Fatalf("poll at revision 3 during the reset = %d, want 304", code)
			}

			// The operator accepts the store as it is.
			_, body = s.mustStatus(t, 200, "POST", "/v1/store/adopt"+tc.adopt, "")
			if err := json.Unmarshal(body, &st); err != nil || !st.Writable || st.Revision != storeRev+1 ||
				st.Epoch == "" || st.Epoch == before.Epoch.ID || st.PrevEpoch != before.Epoch.ID {
				t.Fatalf("adopt = %s, %v; want revision %d in a new epoch after %s", body, err, storeRev+1, before.Epoch.ID)
			}
			if routes, _, err := s.admin.Routes().List(ctx); err != nil || len(routes) != tc.wantRoutes {
				t.Errorf("routes after adopt%s = %d, %v; want %d", tc.adopt, len(routes), err, tc.wantRoutes)
			}
			s.mustStatus(t, 409, "POST", "/v1/store/adopt", "") // nothing left to adopt
			s.mustStatus(t, 201, "PUT", "/v1/services/users2", svcBody)

			// A data plane in the old epoch gets the new one at once, though
			// its revision is lower than the one it runs.
			start := time.Now()
			code, h, raw := s.call(t, "GET", "/v1/snapshot?after=3&wait=5s", dpToken, "",
				apiv1.HeaderNodeID, "dp-1", apiv1.HeaderAppliedRevision, "3", apiv1.HeaderEpoch, before.Epoch.ID)
			if code != http.StatusOK || time.Since(start) >= 5*time.Second {
				t.Fatalf("poll in the old epoch after adopt = %d, want 200 before the wait ends", code)
			}
			snap, err := snapshot.Decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Epoch.ID != st.Epoch || h.Get(apiv1.HeaderEpoch) != st.Epoch || snap.Revision != storeRev+2 {
				t.Errorf("snapshot after adopt: revision %d epoch %+v (header %q), want revision %d of %s",
					snap.Revision, snap.Epoch, h.Get(apiv1.HeaderEpoch), storeRev+2, st.Epoch)
			}
			if !snap.Epoch.Supersedes(snap.Revision, before.Epoch, 3) {
				t.Errorf("the new epoch's snapshot does not supersede revision 3 of the old one")
			}
			audit, err := s.admin.Audit(ctx, 0, 100)
			if err != nil || len(audit.Entries) == 0 || !slicesContainAction(audit.Entries, "adopt") {
				t.Errorf("audit after adopt = %+v, %v; want an adopt entry", audit, err)
			}
		})
	}
}

func slicesContainAction(es []apiv1.AuditEntry, action string) bool {
	for _, e := range es {
		if e.Action == action {
			return true
		}
	}
	return false
}

// TestStoreResetSeenByDataplane: a control plane started on a store that was
// emptied while it was down has never seen the lost revisions, but the data
// planes polling it have; their report is enough to refuse writes.
func TestStoreResetSeenByDataplane(t *testing.T) {
	agent := testutil.StartConsul(t)
	s := newConsulServer(t, agent)
	code, _, _ := s.call(t, "GET", "/v1/snapshot?after=7&wait=100ms", dpToken, "",
		apiv1.HeaderNodeID, "dp-1", apiv1.HeaderAppliedRevision, "7", apiv1.HeaderEpoch, "EPOCHOFTHEPAST00")
	if code != http.StatusNotModified {
		t.Fatalf("poll from a data plane ahead of an empty store = %d, want 304", code)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		code, _, _ := s.call(t, "PUT", "/v1/services/users", adminToken, svcBody)
		return code == http.StatusConflict
	}, "writes refused after a data plane reported revision 7 of an epoch the empty store does not have")
	s.mustStatus(t, 400, "POST", "/v1/store/adopt?config=guess", "")
	s.mustStatus(t, 200, "POST", "/v1/store/adopt", "")
	s.mustStatus(t, 201, "PUT", "/v1/services/users", svcBody)
	if ep := s.cat.Current().State.Epoch; ep.Prev != "EPOCHOFTHEPAST00" {
		t.Errorf("adopted epoch %+v, want one after the data plane's", ep)
	}
}

// TestStoreResetReplicaFollowsAdopt: two control planes on one Consul
// store; after the agent restarts empty and one of them adopts the store,
// the other writes at once, without an adopt of its own.
func TestStoreResetReplicaFollowsAdopt(t *testing.T) {
	agent := testutil.StartConsul(t)
	a, b := newConsulServer(t, agent), newConsulServer(t, agent)
	a.mustStatus(t, 201, "PUT", "/v1/services/users", svcBody)
	// b must have seen a's write before the reset: a replica that never saw
	// revision 1 finds an empty store as consistent as the one it knew.
	want := a.cat.Current().State.Revision
	testutil.Eventually(t, 15*time.Second, func() bool { return b.cat.Current().State.Revision >= want }, "b follows a's write")
	agent.RestartEmpty()
	for _, s := range []*testServer{a, b} {
		testutil.Eventually(t, 15*time.Second, func() bool {
			code, _, _ := s.call(t, "PUT", "/v1/services/orders", adminToken, svcBody)
			return code == http.StatusConflict
		}, "writes refused with store-reset")
	}
	a.mustStatus(t, 200, "POST", "/v1/store/adopt?config=last-seen", "")
	b.mustStatus(t, 201, "PUT", "/v1/services/orders", svcBody)
	if ea, eb := a.cat.Current().State.Epoch, b.cat.Current().State.Epoch; ea.ID != eb.ID || ea.ID == "" {
		t.Errorf("epochs after adopt: %+v and %+v, want the same new one", ea, eb)
	}
}
