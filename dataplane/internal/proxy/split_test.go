package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestSplitThroughHandler: a split route sends requests to its services by
// weight through the reverse proxy; a sticky cookie keeps a user on one
// side, across a weight change that allows it; a service drained to 0
// gets nothing.
func TestSplitThroughHandler(t *testing.T) {
	v1, v2 := echoUpstream(t, "v1"), echoUpstream(t, "v2")
	cfg := &config.Config{
		Services: []config.Service{
			{Name: "v1", Targets: []config.Target{{URL: v1.URL}}},
			{Name: "v2", Targets: []config.Target{{URL: v2.URL}}},
		},
		Routes: []*config.Route{{Name: "users", Paths: []string{"/users/*"}, Sticky: "cookie:uid",
			Split: []config.SplitBackend{{Service: "v1", Weight: 90}, {Service: "v2", Weight: 10}}}},
	}
	h, gw := newGateway(t, cfg)
	side := func(uid string) string {
		t.Helper()
		var hdr []string
		if uid != "" {
			hdr = []string{"Cookie", "uid=" + uid}
		}
		code, _, body := do(t, "GET", gw+"/users/1", nil, hdr...)
		if code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		return strings.Fields(body)[0]
	}
	const users = 400
	before := map[string]string{}
	counts := map[string]int{}
	for i := range users {
		uid := fmt.Sprintf("u%d", i)
		before[uid] = side(uid)
		counts[before[uid]]++
		if again := side(uid); again != before[uid] {
			t.Fatalf("%s went to %s, then %s", uid, before[uid], again)
		}
	}
	// 10% of 400: 40 ± 6 (one standard deviation); 15-70 is far outside
	// chance.
	if counts["v2"] < 15 || counts["v2"] > 70 {
		t.Fatalf("v2 got %d of %d users at weight 10/100", counts["v2"], users)
	}
	anon := map[string]int{}
	for range 400 {
		anon[side("")]++
	}
	if anon["v1"] == 0 || anon["v2"] == 0 {
		t.Fatalf("requests without the cookie all went to one side: %v", anon)
	}

	next := cfg.Clone()
	next.Routes[0].Split[0].Weight, next.Routes[0].Split[1].Weight = 50, 50
	next.Routes[0].Version, next.Routes[0].Revision = 2, 2
	applyCfg(t, h, 2, next)
	moved := 0
	for uid, was := range before {
		now := side(uid)
		switch {
		case was == "v2" && now != "v2":
			t.Fatalf("%s left v2 when v2 grew to 50", uid)
		case was != now:
			moved++
		}
	}
	if moved < users/5 || moved > users*3/5 {
		t.Fatalf("%d of %d users moved from 90/10 to 50/50, want about 40%%", moved, users)
	}

	drained := next.Clone()
	drained.Routes[0].Split[0].Weight, drained.Routes[0].Split[1].Weight = 1, 0
	drained.Routes[0].Version, drained.Routes[0].Revision = 3, 3
	applyCfg(t, h, 3, drained)
	for uid := range before {
		if got := side(uid); got != "v1" {
			t.Fatalf("%s reached drained %s", uid, got)
		}
	}
}
