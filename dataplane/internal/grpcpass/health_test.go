package grpcpass_test

import (
	"context"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestHealthCheck: a gRPC service's active health check is the gRPC
// health checking protocol (health_check.path names the service): an
// instance that says NOT_SERVING leaves the rotation, and comes back when
// it serves again.
func TestHealthCheck(t *testing.T) {
	a, b := startEcho(t), startEcho(t)
	const svc = "grpc.testing.TestService"
	g := newGateway(t, passConfig(nil, func(s *config.Service) {
		s.HealthCheck = &config.HealthCheck{Path: "/" + svc, Interval: config.Duration(100 * time.Millisecond), HealthyThreshold: 1, UnhealthyThreshold: 1}
		s.OutlierDetection = &config.OutlierDetection{Disabled: true}
	}, a.addr, b.addr))
	c := g.client(t, false)
	spread := func() (int64, int64) {
		a0, b0 := a.calls.Load(), b.calls.Load()
		for range 10 {
			if _, err := c.EmptyCall(context.Background(), &testgrpc.Empty{}); err != nil {
				t.Fatal(err)
			}
		}
		return a.calls.Load() - a0, b.calls.Load() - b0
	}
	if na, nb := spread(); na == 0 || nb == 0 {
		t.Fatalf("both serve: a %d, b %d calls", na, nb)
	}
	a.health.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	testutil.Eventually(t, 10*time.Second, func() bool {
		na, _ := spread()
		return na == 0
	}, "the NOT_SERVING instance left the rotation")
	a.health.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	testutil.Eventually(t, 10*time.Second, func() bool {
		na, _ := spread()
		return na > 0
	}, "the instance came back")
	// A service the server does not know is not healthy either.
	g.apply(t, passConfig(nil, func(s *config.Service) {
		s.HealthCheck = &config.HealthCheck{Path: "/no.such.Service", Interval: config.Duration(100 * time.Millisecond), HealthyThreshold: 1, UnhealthyThreshold: 1}
		s.OutlierDetection = &config.OutlierDetection{Disabled: true}
	}, a.addr, b.addr))
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, err := c.EmptyCall(context.Background(), &testgrpc.Empty{})
		return err != nil
	}, "no instance is healthy for an unknown service")
}
