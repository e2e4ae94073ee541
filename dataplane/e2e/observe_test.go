package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestTraceExport: a request through a data plane configured with the
// standard OTEL_* variables shows up in a real Jaeger, as one trace that
// continues the client's and reaches the upstream.
func TestTraceExport(t *testing.T) {
	ctx := context.Background()
	jaeger := testutil.StartJaeger(t)
	var mu sync.Mutex
	var upstreamTraceparent string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamTraceparent = r.Header.Get("traceparent")
		mu.Unlock()
	}))
	t.Cleanup(up.Close)
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlaneEnv(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + jaeger.OTLPHTTP,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_SERVICE_NAME=portico-dataplane-e2e",
		"OTEL_BSP_SCHEDULE_DELAY=100",
	}, "dp", cp.url, filepath.Join(dir, "dp"))
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up.URL)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "traced", config.Route{Paths: []string{"/traced/{id}"}, Service: "s"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { code, _ := get(dp.url + "/traced/1"); return code == 200 }, "route live")

	traceID := "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("GET", dp.url+"/traced/42", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := httpc.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("traced request: %v %v", resp, err)
	}
	resp.Body.Close()
	mu.Lock()
	got := upstreamTraceparent
	mu.Unlock()
	if len(got) < 36 || got[3:35] != traceID {
		t.Fatalf("upstream received traceparent %q, want trace %s", got, traceID)
	}
	tr := jaeger.WaitTrace(t, "portico-dataplane-e2e", traceID, 20*time.Second)
	names := map[string]bool{}
	for _, s := range tr.Spans {
		names[s.OperationName] = true
	}
	if !names["GET /traced/{id}"] || !names["GET"] {
		t.Fatalf("trace %s spans %v: want the server span and an upstream attempt span", traceID, names)
	}
	t.Logf("trace %s in Jaeger with spans %v", traceID, names)
}

// TestClusterAnalytics: the control plane's analytics add up the traffic
// sent through two data planes, per route and per data plane.
func TestClusterAnalytics(t *testing.T) {
	ctx := context.Background()
	up := startUpstream(t, "svc")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp1 := startDataPlane(t, "dp-1", cp.url, filepath.Join(dir, "dp-1"), "--report-interval", "500ms")
	dp2 := startDataPlane(t, "dp-2", cp.url, filepath.Join(dir, "dp-2"), "--report-interval", "500ms")
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"alpha", "beta"} {
		if _, _, err := cp.admin.Routes().Put(ctx, r, config.Route{Paths: []string{"/" + r}, Service: "s"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, dp := range []*dataPlane{dp1, dp2} {
		testutil.Eventually(t, 10*time.Second, func() bool {
			d, err := cp.admin.Dataplanes(ctx)
			return err == nil && d.Converged && len(d.Nodes) == 2
		}, dp.id+" converged")
	}
	// Known traffic: dp-1 30×alpha + 5 unrouted, dp-2 20×alpha + 10×beta.
	send := func(dp *dataPlane, path string, n, want int) {
		for range n {
			if code, _ := get(dp.url + path); code != want {
				t.Fatalf("%s %s = %d, want %d", dp.id, path, code, want)
			}
		}
	}
	send(dp1, "/alpha", 30, 200)
	send(dp1, "/nowhere", 5, 404)
	send(dp2, "/alpha", 20, 200)
	send(dp2, "/beta", 10, 200)
	testutil.Eventually(t, 15*time.Second, func() bool {
		a, err := cp.admin.Analytics(ctx, 5*time.Minute)
		if err != nil {
			t.Logf("analytics: %v", err)
			return false
		}
		routes := map[string]int64{}
		for _, r := range a.Routes {
			routes[r.Route] = r.Requests
		}
		nodes := map[string]int64{}
		for _, n := range a.Dataplanes {
			nodes[n.NodeID] = n.Requests
		}
		ok := a.Totals.Requests == 65 && routes["alpha"] == 50 && routes["beta"] == 10 &&
			nodes["dp-1"] == 35 && nodes["dp-2"] == 30 && a.Totals.ClientErrors == 5
		if !ok {
			t.Logf("not yet: totals %d, routes %v, nodes %v", a.Totals.Requests, routes, nodes)
		}
		return ok
	}, fmt.Sprintf("analytics totals matching the %d requests sent", 65))
}
