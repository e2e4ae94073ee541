package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestDeltas: a data plane that is current receives deltas (only the
// changed objects) and ends up with exactly the control plane's
// configuration: its checksum equals that of the control plane's full
// snapshot at the same revision, which covers every byte of every object.
// A data plane that missed revisions catches up with one delta while the
// control plane remembers them, with the full snapshot when it does not,
// and one whose base is not what the control plane thinks (a tampered
// state file) fails the digest and falls back to the full snapshot.
// Counts and equality only: nothing here is timed.
func TestDeltas(t *testing.T) {
	ctx := context.Background()
	up1 := startUpstream(t, "delta-one")
	up2 := startUpstream(t, "delta-two")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	sync, err := client.New(cp.url, dpToken)
	if err != nil {
		t.Fatal(err)
	}
	dpDir := filepath.Join(dir, "dp-1")
	dp := startDataPlane(t, "dp-1", cp.url, dpDir)

	base := &config.Config{Services: []config.Service{svc(up1), svc(up1)}}
	base.Services[0].Name, base.Services[1].Name = "a", "b"
	for i := range 20 {
		base.Routes = append(base.Routes, new(route(fmt.Sprintf("/r%d/*", i), "a")))
		base.Routes[i].Name = fmt.Sprintf("r%d", i)
	}
	base.Routes = append(base.Routes, new(route("/rb/*", "b")))
	base.Routes[20].Name = "rb"
	if _, err := cp.admin.ImportConfig(ctx, base, false); err != nil {
		t.Fatal(err)
	}

	// converged waits until dp applied rev (from source) and checks that
	// its configuration is byte for byte the control plane's.
	converged := func(t *testing.T, rev int64, via string) {
		t.Helper()
		poll, err := sync.PollSnapshot(ctx, client.PollRequest{After: 0, Wait: time.Second, NodeID: "e2e-checker"})
		if err != nil {
			t.Fatal(err)
		}
		full, err := snapshot.Decode(poll.Snapshot)
		if err != nil {
			t.Fatal(err)
		}
		if full.Revision != rev {
			t.Fatalf("the control plane is at revision %d, the test wrote %d", full.Revision, rev)
		}
		// The state file is sealed (and the checksum known) just after the
		// revision is applied.
		testutil.Eventually(t, 20*time.Second, func() bool {
			st := dp.status(t)
			return st["applied_revision"] == float64(rev) && st["checksum"] == full.Checksum
		}, fmt.Sprintf("%s applying revision %d with the control plane's checksum %s", dp.id, rev, full.Checksum))
		st := dp.status(t)
		got := "full"
		if st["delta"] == true {
			got = "delta"
		}
		if st["source"] != "controlplane" || got != via {
			t.Fatalf("revision %d came from %v as %s, want from the control plane as %s", rev, st["source"], got, via)
		}
	}
	write := func(t *testing.T, f func() (*client.Response, error)) int64 {
		t.Helper()
		resp, err := f()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Revision
	}
	putRoute := func(name, path, service string) func() (*client.Response, error) {
		return func() (*client.Response, error) {
			r := route(path, service)
			_, resp, err := cp.admin.Routes().Put(ctx, name, r)
			return resp, err
		}
	}
	imported, _ := cp.admin.ExportConfig(ctx)
	converged(t, imported.Revision, "full")

	t.Run("current data plane gets deltas", func(t *testing.T) {
		// compiled is how the data plane compiles the delta (/status
		// compiled): a route change alone compiles that route only
		// (-1: the whole snapshot, incrementally).
		cases := []struct {
			name     string
			write    func() (*client.Response, error)
			serves   map[string]string // path → upstream ("" = 404)
			compiled int
		}{
			{"create a route", putRoute("new", "/new/*", "a"), map[string]string{"/new/x": "delta-one"}, 1},
			{"move a route", putRoute("r1", "/moved/*", "a"), map[string]string{"/moved/x": "delta-one", "/r1/x": ""}, 1},
			{"delete a route", func() (*client.Response, error) { return cp.admin.Routes().Delete(ctx, "r2") },
				map[string]string{"/r2/x": ""}, 0},
			{"change the service a route depends on", func() (*client.Response, error) {
				s := svc(up2)
				_, resp, err := cp.admin.Services().Put(ctx, "b", s)
				return resp, err
			}, map[string]string{"/rb/x": "delta-two", "/r3/x": "delta-one"}, -1},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				converged(t, write(t, tc.write), "delta")
				c, _ := dp.status(t)["compiled"].(map[string]any)
				if change := tc.compiled >= 0; c["change"] != change || change && c["routes"] != float64(tc.compiled) {
					t.Fatalf("/status compiled = %v, want a change compile of %d routes (-1: whole)", c, tc.compiled)
				}
				for path, want := range tc.serves {
					code, body := get(dp.url + path)
					if want == "" && code != 404 || want != "" && !serves(dp.url+path, want) {
						t.Fatalf("GET %s = %d %s, want %q", path, code, body, want)
					}
				}
			})
		}
	})

	t.Run("missed revisions still in the history: one delta", func(t *testing.T) {
		dp.term(t)
		var rev int64
		for i := range 3 {
			rev = write(t, putRoute(fmt.Sprintf("missed%d", i), fmt.Sprintf("/missed%d/*", i), "a"))
		}
		dp.restart("dataplane")
		waitHTTP(t, dp.ops+"/healthz", 200)
		converged(t, rev, "delta")
		if !serves(dp.url+"/missed2/x", "delta-one") {
			t.Fatal("the caught-up data plane does not serve /missed2")
		}
	})

	t.Run("missed revisions the history lost: full snapshot", func(t *testing.T) {
		dp.term(t)
		// An import that rewrites most objects starts the history over.
		cfg, err := cp.admin.ExportConfig(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range cfg.Config.Routes {
			cfg.Config.Routes[i].Timeout = config.Duration(7 * time.Second)
		}
		res, err := cp.admin.ImportConfig(ctx, cfg.Config, false)
		if err != nil {
			t.Fatal(err)
		}
		dp.restart("dataplane")
		waitHTTP(t, dp.ops+"/healthz", 200)
		converged(t, res.Revision, "full")
	})

	t.Run("a base that is not the control plane's: digest mismatch, full snapshot", func(t *testing.T) {
		dp.term(t)
		path := filepath.Join(dpDir, "snapshot.json")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		saved, err := snapshot.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		// A well-sealed state file whose configuration the control plane
		// never had at that revision.
		extra := route("/tampered/*", "a")
		extra.Name = "tampered"
		saved.Config.Routes = append(saved.Config.Routes, &extra)
		saved.Config.Sort()
		_, raw, err = snapshot.EncodeEpoch(saved.Revision, saved.Epoch, &saved.Config, saved.CreatedAt)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		dp.restart("dataplane")
		waitHTTP(t, dp.ops+"/healthz", 200)
		testutil.Eventually(t, 20*time.Second, func() bool { return serves(dp.url+"/tampered/x", "delta-one") },
			"the data plane serving its tampered state file")
		rev := write(t, putRoute("after-tamper", "/after-tamper/*", "a"))
		converged(t, rev, "full")
		if code, _ := get(dp.url + "/tampered/x"); code != 404 {
			t.Fatalf("GET /tampered/x = %d after the full snapshot, want 404", code)
		}
	})
}
