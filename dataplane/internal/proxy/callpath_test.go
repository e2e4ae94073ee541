package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/portico-gw/portico/dataplane/internal/demoshop"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// The three ways a route calls a service — the reverse proxy, aggregation
// and JSON→gRPC — share one call path (upstream.Call). These tests give
// each the same service settings and the same kind of instance and expect
// the same behaviour from all three.

// callPaths are the routes of callPathConfig: how to ask each path.
var callPaths = []struct{ name, target string }{
	{"reverse proxy", "/fwd/x"},
	{"aggregation", "/agg"},
	{"grpc", "/orders/unavailable"},
}

// callPathConfig routes /fwd/* (reverse proxy) and /agg (aggregation, one
// backend at /x) to HTTP services fwd and agg, and /orders/{id} to gRPC
// service grpc, all with the settings in svc. The gRPC service has a
// descriptor set: a reflection lookup would be calls of its own.
func callPathConfig(t *testing.T, svc config.Service, http, grpcAddrs []string) *config.Config {
	t.Helper()
	set, err := demoshop.DescriptorSet()
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string, proto string, addrs []string) config.Service {
		s := svc
		s.Name, s.Protocol = name, proto
		for _, a := range addrs {
			s.Targets = append(s.Targets, config.Target{URL: "http://" + a})
		}
		return s
	}
	g := mk("grpc", config.ProtocolGRPC, grpcAddrs)
	g.GRPC = &config.ServiceGRPC{DescriptorSet: set}
	return &config.Config{
		Services: []config.Service{mk("fwd", "", http), mk("agg", "", http), g},
		Routes: []*config.Route{
			{Name: "fwd", Paths: []string{"/fwd/*"}, Service: "fwd"},
			{Name: "agg", Paths: []string{"/agg"}, Aggregate: []config.AggregateBackend{{Service: "agg", Path: "/x", Key: "x"}}},
			{Name: "grpc", Paths: []string{"/orders/{id}"}, Service: "grpc", GRPC: &config.RouteGRPC{Method: "shop.v1.Orders/GetOrder"}},
		},
	}
}

// grpcShop starts a real gRPC server (demoshop) and counts its calls; hold,
// when set, runs in each call before it is answered.
func grpcShop(t *testing.T, hold func()) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	calls := new(atomic.Int64)
	if err := demoshop.Register(srv, demoshop.Options{OnCall: func(metadata.MD) {
		calls.Add(1)
		if hold != nil {
			hold()
		}
	}}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), calls
}

func hostOf(rawURL string) string { return strings.TrimPrefix(rawURL, "http://") }

// `attempts: 1` makes exactly one attempt on every path against failing
// instances; `attempts: 3` tries the other instance. Both instances fail
// (HTTP 503; gRPC UNAVAILABLE), 503 is listed in on_statuses and the
// requests are GETs, so every path may retry.
func TestEveryPathHonoursAttempts(t *testing.T) {
	for _, tc := range []struct {
		attempts, want int
	}{{1, 1}, {2, 2}, {3, 2}} {
		a, b := newCounting(t, "a"), newCounting(t, "b")
		a.status.Store(503)
		b.status.Store(503)
		ga, gaCalls := grpcShop(t, nil)
		gb, gbCalls := grpcShop(t, nil)
		_, gw := newGateway(t, callPathConfig(t, config.Service{
			Retries:          &config.Retries{Attempts: tc.attempts, OnStatuses: []int{503}},
			OutlierDetection: &config.OutlierDetection{Disabled: true},
			CircuitBreaker:   &config.CircuitBreaker{Disabled: true},
		}, []string{hostOf(a.srv.URL), hostOf(b.srv.URL)}, []string{ga, gb}))
		hits := func() int64 { return a.hits.Load() + b.hits.Load() + gaCalls.Load() + gbCalls.Load() }
		for _, p := range callPaths {
			t.Run(fmt.Sprintf("%s/attempts %d", p.name, tc.attempts), func(t *testing.T) {
				for range 3 {
					before := hits()
					if code, _, body := do(t, "GET", gw+p.target, nil); code < 500 {
						t.Fatalf("%d %s, want a failure", code, body)
					}
					if n := hits() - before; n != int64(tc.want) {
						t.Fatalf("%d attempts reached the instances, want %d", n, tc.want)
					}
				}
			})
		}
	}
}

// pathOutcome classifies an answer of callPathConfig's routes.
func pathOutcome(code int, body string) string {
	switch {
	case strings.Contains(body, "circuit"):
		return "open"
	case code == 200:
		return "ok"
	}
	return "fail"
}

// Outlier detection and the breaker see every path's outcomes the same
// way: one instance refuses connections, the other serves (retries off, so
// each failure reaches the client).
func TestEveryPathFeedsOutlierAndBreaker(t *testing.T) {
	for _, tc := range []struct {
		name string
		svc  config.Service
		want string // outcomes of consecutive requests
	}{
		{"outlier ejection", config.Service{
			OutlierDetection: &config.OutlierDetection{ConsecutiveFailures: 2, BaseEjection: config.Duration(time.Minute)},
			CircuitBreaker:   &config.CircuitBreaker{Disabled: true},
		}, "fail ok fail ok ok ok ok"}, // ejected after its second failure
		{"circuit breaker", config.Service{
			OutlierDetection: &config.OutlierDetection{Disabled: true},
			CircuitBreaker:   &config.CircuitBreaker{MinRequests: 3, FailureRatio: 0.6, OpenTimeout: config.Duration(time.Minute)},
		}, "fail ok fail open open"}, // 2 of 3 failed
	} {
		for _, p := range callPaths {
			t.Run(tc.name+"/"+p.name, func(t *testing.T) {
				live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					_, _ = w.Write([]byte(`{"ok":true}`))
				}))
				t.Cleanup(live.Close)
				g, _ := grpcShop(t, nil)
				svc := tc.svc
				svc.Retries = &config.Retries{Attempts: 1}
				refused := testutil.RefusedAddr(t)
				_, gw := newGateway(t, callPathConfig(t, svc, []string{refused, hostOf(live.URL)}, []string{refused, g}))
				target := strings.Replace(p.target, "unavailable", "1", 1)
				var got []string
				for range strings.Count(tc.want, " ") + 1 {
					code, _, body := do(t, "GET", gw+target, nil)
					got = append(got, pathOutcome(code, body))
				}
				if s := strings.Join(got, " "); s != tc.want {
					t.Fatalf("outcomes %q, want %q", s, tc.want)
				}
			})
		}
	}
}

// A client that goes away is not counted by the breaker on any path: the
// breaker below opens on a single counted failure.
func TestEveryPathSparesClientGone(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(slow.Close)
	g, _ := grpcShop(t, func() {
		arrived <- struct{}{}
		<-release
	})
	h, gw := newGateway(t, callPathConfig(t, config.Service{
		OutlierDetection: &config.OutlierDetection{Disabled: true},
		CircuitBreaker:   &config.CircuitBreaker{MinRequests: 1, FailureRatio: 0.1, OpenTimeout: config.Duration(time.Minute)},
	}, []string{hostOf(slow.URL)}, []string{g}))
	for _, p := range callPaths {
		t.Run(p.name, func(t *testing.T) {
			target := strings.Replace(p.target, "unavailable", "1", 1)
			for range 3 {
				ctx, cancel := context.WithCancel(context.Background())
				go func() {
					<-arrived
					cancel()
				}()
				req, err := http.NewRequestWithContext(ctx, "GET", gw+target, nil)
				if err != nil {
					t.Fatal(err)
				}
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
					t.Fatalf("answered %d although the client left", resp.StatusCode)
				}
				testutil.Eventually(t, 5*time.Second, func() bool {
					return promtestutil.ToFloat64(h.metrics.inFlight) == 0
				}, "the abandoned request finished")
			}
			// Not counted: the breaker is still closed and lets this one
			// through to the (still slow) instance.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				<-arrived
				cancel()
			}()
			req, _ := http.NewRequestWithContext(ctx, "GET", gw+target, nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				defer resp.Body.Close()
				t.Fatalf("answered %d at once: the breaker counted a client that left", resp.StatusCode)
			}
		})
	}
}
