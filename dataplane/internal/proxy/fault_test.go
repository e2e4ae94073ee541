package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// TestFaultInjection through the real handler: an abort answers the
// configured status as a fault-injected problem without calling the
// service; a header-limited drill leaves other clients alone; a delayed
// request is held (observed as a client deadline that fires first) and
// marked, and an undelayed one is not.
func TestFaultInjection(t *testing.T) {
	up := echoUpstream(t, "users")
	cfg := &config.Config{
		Services: []config.Service{{Name: "users", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{
			{Name: "down", Paths: []string{"/down/*"}, Service: "users",
				Fault: &config.Fault{Abort: &config.FaultAbort{Percent: 100, Status: 503}}},
			{Name: "drill", Paths: []string{"/drill/*"}, Service: "users",
				Fault: &config.Fault{Abort: &config.FaultAbort{Percent: 100, Status: 429}, Header: "X-Drill"}},
			{Name: "slow", Paths: []string{"/slow/*"}, Service: "users",
				Fault: &config.Fault{Delay: &config.FaultDelay{Percent: 100, Duration: config.Duration(time.Minute)}, Header: "X-Drill"}},
		},
	}
	_, gw := newGateway(t, cfg)

	code, h, body := do(t, "GET", gw+"/down/1", nil)
	if code != 503 || h.Get("X-Portico-Fault") != "abort" || !strings.Contains(body, "fault-injected") || strings.Contains(body, "users GET") {
		t.Fatalf("abort: %d %v %s", code, h, body)
	}
	if code, h, body := do(t, "GET", gw+"/drill/1", nil); code != 200 || h.Get("X-Portico-Fault") != "" || !strings.HasPrefix(body, "users GET /drill/1") {
		t.Fatalf("a request without the drill header: %d %v %s", code, h, body)
	}
	if code, _, body := do(t, "GET", gw+"/drill/1", nil, "X-Drill", "1"); code != 429 || !strings.Contains(body, "fault-injected") {
		t.Fatalf("a drill request: %d %s", code, body)
	}
	// The delay is a minute: a client deadline of 300 ms must fire first.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", gw+"/slow/1", nil)
	req.Header.Set("X-Drill", "1")
	if resp, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		if resp != nil {
			resp.Body.Close()
		}
		t.Fatalf("a delayed request came back: %v", err)
	}
	if code, h, _ := do(t, "GET", gw+"/slow/1", nil); code != 200 || h.Get("X-Portico-Fault") != "" {
		t.Fatalf("an undelayed request: %d %v", code, h)
	}
}
