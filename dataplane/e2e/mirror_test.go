package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestMirrorThatHangs: a real data plane mirrors every request of a route
// to a service that accepts connections and never answers. Every client
// request is answered by the primary service, as fast as without the
// mirror (the first answers come back while the copies hang); at most
// max_concurrent copies hold a connection, the rest are dropped and
// counted in portico_mirror_requests_total on the ops port.
func TestMirrorThatHangs(t *testing.T) {
	ctx := context.Background()
	primary := startUpstream(t, "users")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var held sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			held.Add(1)
			go func() {
				defer held.Done()
				<-stop // never answers
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { close(stop); ln.Close(); held.Wait() })

	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlane(t, "dp-1", cp.url, filepath.Join(dir, "dp-1"))
	for name, url := range map[string]string{"users": primary, "users-next": "http://" + ln.Addr().String()} {
		if _, _, err := cp.admin.Services().Put(ctx, name, svc(url)); err != nil {
			t.Fatal(err)
		}
	}
	r := route("/users/*", "users")
	r.Mirror = &config.Mirror{Service: "users-next", Percent: 100, MaxConcurrent: 4, Timeout: config.Duration(time.Minute)}
	if _, _, err := cp.admin.Routes().Put(ctx, "users", r); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return serves(dp.url+"/users/1", "users") }, "dp serving the mirrored route")

	client := &http.Client{Timeout: 10 * time.Second}
	const n = 100
	var slowest time.Duration
	for i := range n {
		start := time.Now()
		resp, err := client.Post(dp.url+"/users/"+strconv.Itoa(i), "application/json", strings.NewReader(`{"n":1}`))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		slowest = max(slowest, time.Since(start))
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return accepted.Load() >= 4 }, "copies reach the hanging mirror")
	dropped := regexp.MustCompile(`portico_mirror_requests_total\{outcome="dropped",route="users",service="users-next"\} (\d+)`)
	var got string
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, body := get(dp.ops + "/metrics")
		m := dropped.FindStringSubmatch(body)
		if m != nil {
			got = m[1]
		}
		// The serves() probe above was mirrored too.
		return m != nil && (m[1] == fmt.Sprint(n-4+1) || m[1] == fmt.Sprint(n-4))
	}, "dropped copies counted")
	if a := accepted.Load(); a != 4 {
		t.Fatalf("the hanging mirror holds %d connections, want max_concurrent 4", a)
	}
	t.Logf("%d requests answered by the primary (slowest %v) while 4 copies hang; %s copies dropped", n, slowest.Round(time.Millisecond), got)
}
