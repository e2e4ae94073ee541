package grpcpass_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
)

// TestRefusals: what the gateway refuses on its own reaches a gRPC client
// as a gRPC status (trailers-only: HTTP 200, grpc-status and grpc-message,
// no body), from every stage that refuses, and never reaches the service.
func TestRefusals(t *testing.T) {
	srv := startEcho(t)
	key, id, hash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, otherID, otherHash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Services: []config.Service{
			{Name: "echo", Protocol: config.ProtocolGRPC, Targets: []config.Target{{URL: "http://" + srv.addr}}},
			// Consul without a watcher: no instance, ever.
			{Name: "nowhere", Protocol: config.ProtocolGRPC, Consul: &config.ConsulSource{Service: "nowhere"}},
		},
		Consumers: []config.Consumer{
			{Name: "app", APIKeys: []config.APIKey{{ID: id, Hash: hash, Prefix: apikey.Prefix(key)}}},
			{Name: "other", APIKeys: []config.APIKey{{ID: otherID, Hash: otherHash, Prefix: apikey.Prefix(otherKey)}}},
		},
		Routes: []*config.Route{
			{Name: "auth", Paths: []string{"/grpc.testing.TestService/UnaryCall"}, Service: "echo",
				Auth: &config.RouteAuth{APIKey: true, Consumers: []string{"app"}}},
			{Name: "limited", Paths: []string{"/grpc.testing.TestService/EmptyCall"}, Service: "echo",
				RateLimit: &config.RateLimit{Limit: 1, Window: config.Duration(time.Hour)}},
			{Name: "small", Paths: []string{"/grpc.testing.TestService/StreamingInputCall"}, Service: "echo", MaxBodyBytes: 1024},
			{Name: "one-at-a-time", Paths: []string{"/grpc.testing.TestService/FullDuplexCall"}, Service: "echo", MaxInFlight: 1},
			{Name: "nowhere", Paths: []string{"/grpc.testing.TestService/CacheableUnaryCall"}, Service: "nowhere"},
		},
	}
	g := newGateway(t, cfg)
	for _, secure := range []bool{false, true} {
		c := g.client(t, secure)
		withKey := func(k string) context.Context {
			return metadata.AppendToOutgoingContext(context.Background(), "x-api-key", k)
		}
		before := srv.calls.Load()
		check := func(name string, err error, want codes.Code) {
			t.Helper()
			if got := codeOf(t, err); got != want {
				t.Errorf("secure=%v %s: %v, want %v", secure, name, err, want)
			}
		}
		_, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
		check("no API key", err, codes.Unauthenticated)
		_, err = c.UnaryCall(withKey("pk_invalid"), &testgrpc.SimpleRequest{})
		check("a wrong API key", err, codes.Unauthenticated)
		_, err = c.UnaryCall(withKey(otherKey), &testgrpc.SimpleRequest{})
		check("a consumer the route does not allow", err, codes.PermissionDenied)
		_, err = c.CacheableUnaryCall(context.Background(), &testgrpc.SimpleRequest{})
		check("no instance", err, codes.Unavailable)
		_, err = c.UnimplementedCall(context.Background(), &testgrpc.Empty{})
		check("no route", err, codes.Unimplemented)

		stream, err := c.StreamingInputCall(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte("z"), 4096)}})
		_, err = stream.CloseAndRecv()
		check("a message over max_body_bytes", err, codes.ResourceExhausted)
		if got := srv.calls.Load() - before; got > 1 {
			// Only the over-large message's call may have reached the
			// server (its headers, if they went out before the message
			// was read), and no message of it did.
			t.Errorf("secure=%v: %d refused calls reached the service", secure, got)
		}

		// An allowed consumer gets through, and the service learns who
		// it is from the gateway.
		if _, err := c.UnaryCall(withKey(key), &testgrpc.SimpleRequest{}); err != nil {
			t.Fatalf("secure=%v: the allowed consumer: %v", secure, err)
		}
		if got := srv.methodMD("/grpc.testing.TestService/UnaryCall").Get("x-consumer-name"); len(got) != 1 || got[0] != "app" {
			t.Errorf("x-consumer-name = %v", got)
		}
	}

	// The rate limit (route-wide, shared by both listeners' calls).
	c := g.client(t, false)
	if _, err := c.EmptyCall(context.Background(), &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	// grpc-go hands a trailers-only answer's fields to the client as
	// trailer metadata.
	var trl metadata.MD
	_, err = c.EmptyCall(context.Background(), &testgrpc.Empty{}, grpc.Trailer(&trl))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || st.Message() == "" {
		t.Errorf("over the rate limit: %v", err)
	}
	if len(trl.Get("retry-after")) != 1 || len(trl.Get("ratelimit-policy")) != 1 {
		t.Errorf("the refusal's fields (Retry-After, RateLimit-*) are lost: %v", trl)
	}

	// The throttle: while one stream holds the route's slot, another is
	// refused UNAVAILABLE.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hold, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Recv(); err != nil {
		t.Fatal(err)
	}
	second, err := c.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Recv(); codeOf(t, err) != codes.Unavailable {
		t.Errorf("over max_in_flight: %v", err)
	}
}

// TestResilience: the service's call path applies to gRPC calls:
// instances nothing reached are retried elsewhere, failing instances are
// ejected, the breaker opens and answers UNAVAILABLE by itself, and a
// stream that reached an instance is never sent again.
func TestResilience(t *testing.T) {
	t.Run("refused instance retried", func(t *testing.T) {
		live := startEcho(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		g := newGateway(t, passConfig(nil, func(s *config.Service) {
			s.Retries = &config.Retries{Attempts: 2}
			s.OutlierDetection = &config.OutlierDetection{Disabled: true}
			s.CircuitBreaker = &config.CircuitBreaker{Disabled: true}
		}, dead, live.addr))
		c := g.client(t, false)
		for i := range 6 {
			// Streams too: nothing reached the dead instance.
			stream, err := c.StreamingInputCall(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: []byte("abc")}}); err != nil {
				t.Fatal(err)
			}
			if resp, err := stream.CloseAndRecv(); err != nil || resp.GetAggregatedPayloadSize() != 3 {
				t.Fatalf("call %d: %v %v", i, resp, err)
			}
		}
		if got := live.calls.Load(); got != 6 {
			t.Errorf("the live instance had %d calls, want 6", got)
		}
	})

	t.Run("a stream that reached an instance is not sent again", func(t *testing.T) {
		a, b := startEcho(t), startEcho(t)
		g := newGateway(t, passConfig(nil, func(s *config.Service) {
			s.Retries = &config.Retries{Attempts: 3, OnStatuses: []int{502, 503, 504}}
			s.OutlierDetection = &config.OutlierDetection{Disabled: true}
			s.CircuitBreaker = &config.CircuitBreaker{Disabled: true}
		}, a.addr, b.addr))
		a.failAll.Store(true)
		b.failAll.Store(true)
		c := g.client(t, false)
		for range 4 {
			stream, err := c.FullDuplexCall(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			_ = stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}})
			if _, err := stream.Recv(); codeOf(t, err) != codes.Unavailable {
				t.Errorf("%v", err)
			}
		}
		if got := a.calls.Load() + b.calls.Load(); got != 4 {
			t.Errorf("4 streams made %d calls: a stream was sent twice", got)
		}
	})

	t.Run("outlier ejection", func(t *testing.T) {
		bad, good := startEcho(t), startEcho(t)
		bad.failAll.Store(true)
		g := newGateway(t, passConfig(nil, func(s *config.Service) {
			s.OutlierDetection = &config.OutlierDetection{ConsecutiveFailures: 2, BaseEjection: config.Duration(time.Hour), MaxEjectedPercent: 50}
			s.CircuitBreaker = &config.CircuitBreaker{Disabled: true}
		}, bad.addr, good.addr))
		c := g.client(t, false)
		failed := 0
		for range 20 {
			if _, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}); err != nil {
				if codeOf(t, err) != codes.Unavailable {
					t.Fatal(err)
				}
				failed++
			}
		}
		if bad.calls.Load() != 2 || failed != 2 || good.calls.Load() != 18 {
			t.Errorf("bad instance %d calls, good %d, %d failed: want the bad one ejected after 2", bad.calls.Load(), good.calls.Load(), failed)
		}
	})

	t.Run("circuit breaker", func(t *testing.T) {
		srv := startEcho(t)
		srv.failAll.Store(true)
		g := newGateway(t, passConfig(nil, func(s *config.Service) {
			s.OutlierDetection = &config.OutlierDetection{Disabled: true}
			s.CircuitBreaker = &config.CircuitBreaker{FailureRatio: 0.5, MinRequests: 4, Interval: config.Duration(time.Minute), OpenTimeout: config.Duration(time.Hour)}
		}, srv.addr))
		c := g.client(t, false)
		for range 4 {
			if _, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}); codeOf(t, err) != codes.Unavailable {
				t.Fatal(err)
			}
		}
		// Open: refused without reaching the service.
		_, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() == "instance failing" {
			t.Errorf("open breaker: %v", err)
		}
		if got := srv.calls.Load(); got != 4 {
			t.Errorf("the service had %d calls, want 4 (the breaker's refusal must not reach it)", got)
		}
	})
}

// TestNotGRPCService: a service that answers with a plain HTTP status (a
// proxy in front of it, a server that does not speak gRPC on this path)
// reaches the client as the gRPC status the protocol derives from it.
func TestNotGRPCService(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   codes.Code
	}{{503, codes.Unavailable}, {404, codes.Unimplemented}, {401, codes.Unauthenticated}, {500, codes.Unknown}} {
		h2c := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte("<html>not gRPC</html>"))
		})}
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		h2c.Protocols = &p
		addr := serve(t, h2c, false)
		g := newGateway(t, passConfig(nil, func(s *config.Service) { s.CircuitBreaker = &config.CircuitBreaker{Disabled: true} }, addr))
		_, err := g.client(t, false).EmptyCall(context.Background(), &testgrpc.Empty{})
		st := status.Convert(err)
		if st.Code() != tc.want || !strings.Contains(st.Message(), strconv.Itoa(tc.status)) {
			t.Errorf("HTTP %d: %v, want %v", tc.status, err, tc.want)
		}
	}
}
