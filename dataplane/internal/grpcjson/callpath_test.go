package grpcjson

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// A gRPC call follows the service's retries like any call: attempts: 1 is
// exactly one attempt; a call no server saw goes to another instance
// whatever the method; a status a server answered is tried again only for
// an idempotent request whose status is listed in on_statuses.
func TestCallHonoursRetries(t *testing.T) {
	noEjection := &config.OutlierDetection{Disabled: true}
	noBreaker := &config.CircuitBreaker{Disabled: true}
	for _, tc := range []struct {
		name    string
		retries *config.Retries
		method  string
		refused bool // one instance refuses connections, the other serves
		// per request: calls the servers saw, and the status answered
		calls  int
		status int
	}{
		{"server UNAVAILABLE, attempts 1", &config.Retries{Attempts: 1, OnStatuses: []int{503}}, "GET", false, 1, 503},
		{"server UNAVAILABLE, attempts 3: the other instance", &config.Retries{Attempts: 3, OnStatuses: []int{503}}, "GET", false, 2, 503},
		{"server UNAVAILABLE, not listed", &config.Retries{Attempts: 3}, "GET", false, 1, 503},
		{"server UNAVAILABLE, POST is not resent", &config.Retries{Attempts: 3, OnStatuses: []int{503}}, "POST", false, 1, 503},
		{"connection refused, attempts 3", &config.Retries{Attempts: 3}, "POST", true, 1, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startShop(t, serverOpts{reflection: reflectNone})
			b := startShop(t, serverOpts{reflection: reflectNone})
			addrs, id := []string{a.addr, b.addr}, "unavailable"
			if tc.refused {
				addrs, id = []string{testutil.RefusedAddr(t), b.addr}, "1"
			}
			up := newService(t, config.Service{Retries: tc.retries, OutlierDetection: noEjection, CircuitBreaker: noBreaker}, upstream.Deps{}, addrs...)
			m := mustMethod(t, "shop.v1.Orders/GetOrder", shopDescriptorSet(t), up, newPool(t, PoolOptions{}))
			for i := range 4 {
				before := a.calls.Load() + b.calls.Load()
				res := serve(t, m, tc.method, "/orders/"+id, "", map[string]string{"id": id})
				if res.status != tc.status {
					t.Fatalf("request %d: %d %s", i, res.status, res.raw)
				}
				if n := a.calls.Load() + b.calls.Load() - before; n != int64(tc.calls) {
					t.Fatalf("request %d: %d calls, want %d", i, n, tc.calls)
				}
			}
		})
	}
	// With retries off, a refusing instance fails the requests it gets.
	t.Run("connection refused, attempts 1", func(t *testing.T) {
		live := startShop(t, serverOpts{reflection: reflectNone})
		up := newService(t, config.Service{Retries: &config.Retries{Attempts: 1}, OutlierDetection: noEjection, CircuitBreaker: noBreaker},
			upstream.Deps{}, testutil.RefusedAddr(t), live.addr)
		m := mustMethod(t, "shop.v1.Orders/GetOrder", shopDescriptorSet(t), up, newPool(t, PoolOptions{}))
		codes := map[int]int{}
		for range 4 {
			codes[serve(t, m, "GET", "/orders/1", "", map[string]string{"id": "1"}).status]++
		}
		if codes[200] != 2 || codes[503] != 2 || live.calls.Load() != 2 {
			t.Fatalf("statuses %v, %d calls: want 2×200 and 2×503 (round robin, no retry)", codes, live.calls.Load())
		}
	})
}

// gRPC retries are paid from the service's retry budget.
func TestCallRetryBudget(t *testing.T) {
	a := startShop(t, serverOpts{reflection: reflectNone})
	b := startShop(t, serverOpts{reflection: reflectNone})
	clock := testutil.NewClock(time.Unix(1000, 0)) // no refill by time
	up := newService(t, config.Service{
		Retries:          &config.Retries{Attempts: 3, OnStatuses: []int{503}, BudgetPercent: 10, MinPerSecond: 2},
		OutlierDetection: &config.OutlierDetection{Disabled: true},
		CircuitBreaker:   &config.CircuitBreaker{Disabled: true},
	}, upstream.Deps{Now: clock.Now}, a.addr, b.addr)
	m := mustMethod(t, "shop.v1.Orders/GetOrder", shopDescriptorSet(t), up, newPool(t, PoolOptions{}))
	for range 20 {
		serve(t, m, "GET", "/orders/unavailable", "", map[string]string{"id": "unavailable"})
	}
	// 2 granted up front, 0.1 per request: retries at requests 1, 2, 10, 20.
	if n := a.calls.Load() + b.calls.Load(); n != 24 {
		t.Fatalf("%d calls for 20 requests, want 24", n)
	}
}

// A client that goes away is not counted against the instance or by the
// breaker; a call that runs out of the route's time is counted by the
// breaker (not by outlier detection: the attempt was cut short).
func TestClientGoneIsNotCounted(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	hold := func() {
		arrived <- struct{}{}
		<-release
	}
	a := startShop(t, serverOpts{reflection: reflectNone, onCall: hold})
	b := startShop(t, serverOpts{reflection: reflectNone, onCall: hold})
	defer close(release)
	up := newService(t, config.Service{
		OutlierDetection: &config.OutlierDetection{ConsecutiveFailures: 1, MaxEjectedPercent: 100},
		CircuitBreaker:   &config.CircuitBreaker{MinRequests: 1, FailureRatio: 0.1},
	}, upstream.Deps{}, a.addr, b.addr)
	m := mustMethod(t, "shop.v1.Orders/GetOrder", shopDescriptorSet(t), up, newPool(t, PoolOptions{}))

	for range 4 {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-arrived
			cancel()
		}()
		w := httptest.NewRecorder()
		m.Serve(w, httptest.NewRequestWithContext(ctx, "GET", "/orders/1", nil), map[string]string{"id": "1"})
		if w.Code != 499 {
			t.Fatalf("client gone: %d %s", w.Code, w.Body)
		}
	}
	if st := up.Status(); st.Breaker != "closed" || st.Available != st.Endpoints {
		t.Fatalf("after clients left: %+v, want the breaker closed and every instance available", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	go func() { <-arrived }()
	w := httptest.NewRecorder()
	m.Serve(w, httptest.NewRequestWithContext(ctx, "GET", "/orders/1", nil), map[string]string{"id": "1"})
	if w.Code != 504 {
		t.Fatalf("route timeout: %d %s", w.Code, w.Body)
	}
	if st := up.Status(); st.Breaker != "open" || st.Available != st.Endpoints {
		t.Fatalf("after a route timeout: %+v, want the breaker open and no instance ejected", st)
	}
}

// ServeCall reports the instance that answered and the attempts made, for
// the access log: a retry after a refused connection is two attempts.
func TestServeCallReportsAttempts(t *testing.T) {
	live := startShop(t, serverOpts{reflection: reflectNone})
	up := newService(t, config.Service{OutlierDetection: &config.OutlierDetection{Disabled: true}}, upstream.Deps{},
		testutil.RefusedAddr(t), live.addr)
	m := mustMethod(t, "shop.v1.Orders/GetOrder", shopDescriptorSet(t), up, newPool(t, PoolOptions{}))
	retried := 0
	for range 2 {
		w := httptest.NewRecorder()
		addr, n := m.ServeCall(w, httptest.NewRequest("GET", "/orders/1", nil), map[string]string{"id": "1"})
		if w.Code != 200 || addr != live.addr {
			t.Fatalf("%d from %q, want 200 from %s", w.Code, addr, live.addr)
		}
		switch n {
		case 1:
		case 2:
			retried++
		default:
			t.Fatalf("%d attempts", n)
		}
	}
	// Round robin: at least one of the two met the refusing instance first.
	if retried == 0 {
		t.Fatal("no request reported its retry")
	}
	w := httptest.NewRecorder()
	if addr, n := m.ServeCall(w, httptest.NewRequest("POST", "/orders/1", strings.NewReader("{")), nil); n != 0 || addr != "" || w.Code != 400 {
		t.Fatalf("a request the gateway refused: %d, %q, %d attempts", w.Code, addr, n)
	}
}

// The service's timeout bounds each gRPC attempt: a GET whose instance
// does not answer in time goes to the other one; a POST answers 504.
func TestAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	stuck := startShop(t, serverOpts{reflection: reflectNone, onCall: func() { <-release }})
	live := startShop(t, serverOpts{reflection: reflectNone})
	up := newService(t, config.Service{
		Timeout:          config.Duration(50 * time.Millisecond),
		OutlierDetection: &config.OutlierDetection{Disabled: true},
		CircuitBreaker:   &config.CircuitBreaker{Disabled: true},
	}, upstream.Deps{}, stuck.addr, live.addr)
	m := mustMethod(t, "shop.v1.Orders/GetOrder", shopDescriptorSet(t), up, newPool(t, PoolOptions{}))
	for i := range 4 {
		if res := serve(t, m, "GET", "/orders/1", "", map[string]string{"id": "1"}); res.status != 200 {
			t.Fatalf("GET %d: %d %s", i, res.status, res.raw)
		}
	}
	if stuck.calls.Load() == 0 {
		t.Fatal("the stuck instance was never tried")
	}
	codes := map[int]int{}
	for range 4 {
		res := serve(t, m, "POST", "/orders/1", `{"id":"1"}`, nil)
		codes[res.status]++
		if res.status == 504 {
			wantProblem(t, res, 504, "upstream-timeout", "DEADLINE_EXCEEDED")
		}
	}
	if codes[504] == 0 || codes[200] == 0 || codes[504]+codes[200] != 4 {
		t.Fatalf("POST statuses %v, want 504 from the stuck instance (not resent) and 200 from the live one", codes)
	}
}
