package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestSplitAcrossDataPlanes: a weighted split created through the admin
// API reaches two real data planes; over 2,000 requests without a key the
// canary's share is within statistical bounds of its weight; a sticky user
// lands on the same side on both data planes; moving the split from 10 to
// 50 reaches both with the usual propagation, and keeps every user who was
// on the canary there, moving only about 40% of the others.
func TestSplitAcrossDataPlanes(t *testing.T) {
	ctx := context.Background()
	v1, v2 := startUpstream(t, "users-v1"), startUpstream(t, "users-v2")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dps := []*dataPlane{
		startDataPlane(t, "dp-1", cp.url, filepath.Join(dir, "dp-1")),
		startDataPlane(t, "dp-2", cp.url, filepath.Join(dir, "dp-2")),
	}
	for name, url := range map[string]string{"users-v1": v1, "users-v2": v2} {
		if _, _, err := cp.admin.Services().Put(ctx, name, svc(url)); err != nil {
			t.Fatal(err)
		}
	}
	r := config.Route{Paths: []string{"/users/*"}, Sticky: "header:X-User-Id",
		Split: []config.SplitBackend{{Service: "users-v1", Weight: 90}, {Service: "users-v2", Weight: 10}}}
	if _, _, err := cp.admin.Routes().Put(ctx, "users", r); err != nil {
		t.Fatal(err)
	}
	side := func(dp *dataPlane, user string) string {
		t.Helper()
		var hdr []string
		if user != "" {
			hdr = []string{"X-User-Id", user}
		}
		code, _, body := getHdr(t, dp.url+"/users/1", hdr...)
		switch {
		case code != http.StatusOK:
			t.Fatalf("%s: status %d: %s", dp.id, code, body)
		case strings.Contains(body, `"service":"users-v1"`):
			return "v1"
		case strings.Contains(body, `"service":"users-v2"`):
			return "v2"
		}
		t.Fatalf("%s: answer from neither: %s", dp.id, body)
		return ""
	}
	for _, dp := range dps {
		testutil.Eventually(t, 10*time.Second, func() bool { code, _ := get(dp.url + "/users/1"); return code == 200 }, dp.id+" serving the split")
	}

	const n = 2000
	v2n := 0
	for i := range n {
		if side(dps[i%2], "") == "v2" {
			v2n++
		}
	}
	// Binomial(2000, 0.1): mean 200, sd 13.4; 4 sd either way.
	if sd := math.Sqrt(n * 0.1 * 0.9); math.Abs(float64(v2n)-n*0.1) > 4*sd {
		t.Fatalf("canary got %d of %d requests at weight 10, want %d ± %.0f", v2n, n, n/10, 4*sd)
	}
	t.Logf("canary at weight 10: %d of %d requests without a key (%.1f%%)", v2n, n, 100*float64(v2n)/n)

	const users = 500
	before := make([]string, users)
	onV2 := 0
	for i := range users {
		u := fmt.Sprintf("user-%d", i)
		before[i] = side(dps[0], u)
		if other := side(dps[1], u); other != before[i] {
			t.Fatalf("%s is on %s through dp-1 and %s through dp-2", u, before[i], other)
		}
		if before[i] == "v2" {
			onV2++
		}
	}

	r.Split[0].Weight, r.Split[1].Weight = 50, 50
	_, res, err := cp.admin.Routes().Put(ctx, "users", r)
	if err != nil {
		t.Fatal(err)
	}
	rev := res.Revision
	written := time.Now()
	testutil.Eventually(t, 10*time.Second, func() bool {
		d, err := cp.admin.Dataplanes(ctx)
		return err == nil && d.Converged && len(d.Nodes) == 2 && d.Nodes[0].AppliedRevision >= rev && d.Nodes[1].AppliedRevision >= rev
	}, "both data planes at the 50/50 revision")
	t.Logf("50/50 applied by both data planes %v after the write", time.Since(written).Round(time.Millisecond))
	moved := 0
	for i := range users {
		u := fmt.Sprintf("user-%d", i)
		now := side(dps[i%2], u)
		if other := side(dps[(i+1)%2], u); other != now {
			t.Fatalf("%s is on %s and %s after the change", u, now, other)
		}
		switch {
		case before[i] == "v2" && now != "v2":
			t.Fatalf("%s left the canary when it grew", u)
		case before[i] != now:
			moved++
		}
	}
	// Keys move only across the moved boundary, 0.5-0.9 of the unit
	// interval: 40% of users, binomial sd 2.2% at 500.
	if f := float64(moved) / users; math.Abs(f-0.4) > 0.09 {
		t.Fatalf("%d of %d users moved (%.1f%%), want about 40%%", moved, users, 100*f)
	}
	t.Logf("users on the canary at 10: %d of %d; moved to it at 50: %d; none left it", onV2, users, moved)
}
