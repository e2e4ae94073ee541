package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
)

func TestReportAndAnalytics(t *testing.T) {
	s := newTestServer(t, false)
	now := time.Now().UTC()
	rep := func(node string, requests, errors int64) string {
		var h apiv1.Histogram
		for range requests {
			h.Observe(3 * time.Millisecond)
		}
		r := apiv1.Report{NodeID: node, Start: now.Add(-10 * time.Second), End: now,
			Routes: []apiv1.RouteCounters{{Route: "users", Requests: requests, Errors: errors, Latency: h}}}
		b, _ := json.Marshal(r)
		return string(b)
	}
	for _, r := range []string{rep("dp-1", 30, 3), rep("dp-2", 10, 0)} {
		if code, _, body := s.call(t, "POST", "/v1/report", dpToken, r); code != 204 {
			t.Fatalf("report = %d %s", code, body)
		}
	}
	// Reports take the data-plane token, analytics the admin token.
	if code, _, _ := s.call(t, "POST", "/v1/report", adminToken, rep("x", 1, 0)); code != 401 {
		t.Fatalf("report with the admin token = %d", code)
	}
	code, _, body := s.call(t, "POST", "/v1/report", dpToken, strings.Replace(rep("dp-3", 5, 0), `"requests":5`, `"requests":6`, 1))
	if code != 422 || !strings.Contains(string(body), `"field":"routes[0]`) {
		t.Fatalf("inconsistent report = %d %s, want 422 naming the field", code, body)
	}
	_, body = s.mustStatus(t, 200, "GET", "/v1/analytics?window=5m", "")
	var a apiv1.Analytics
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	if a.Totals.Requests != 40 || a.Totals.Errors != 3 || len(a.Routes) != 1 || len(a.Dataplanes) != 2 {
		t.Fatalf("analytics = %s", body)
	}
	if p50 := a.Routes[0].P50; p50 < 2.5 || p50 > 3.6 {
		t.Fatalf("p50 = %v ms, want about 3", p50)
	}
	s.mustStatus(t, 400, "GET", "/v1/analytics?window=2h", "")
	s.mustStatus(t, 400, "GET", "/v1/analytics?window=soon", "")

	// ?step= adds the window as points: all routes, then the busiest.
	_, body = s.mustStatus(t, 200, "GET", "/v1/analytics?window=1m&step=20s", "")
	var series apiv1.Analytics
	if err := json.Unmarshal(body, &series); err != nil {
		t.Fatal(err)
	}
	if series.Step != "20s" || len(series.Series) != 2 || series.Series[0].Route != "" || series.Series[1].Route != "users" {
		t.Fatalf("series = %s", body)
	}
	var sum int64
	for _, p := range series.Series[1].Points {
		sum += p.Requests
	}
	if sum != 40 {
		t.Errorf("users points sum to %d requests, want 40", sum)
	}
	for _, bad := range []string{"step=15s", "step=soon", "window=1h&step=10s"} {
		_, body := s.mustStatus(t, 400, "GET", "/v1/analytics?"+bad, "")
		if !strings.Contains(string(body), `"field":"step"`) {
			t.Errorf("%s: %s, want a problem naming step", bad, body)
		}
	}
}
