package extauthz

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/portico-gw/portico/shared/config"
)

// authzServer is an ext_authz v3 server answering what the test sets and
// recording each CheckRequest.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
	mu     sync.Mutex
	last   *authv3.CheckRequest
	answer *authv3.CheckResponse
}

func (s *authzServer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = req
	return s.answer, nil
}

func startAuthz(t *testing.T) (*authzServer, string) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	s := &authzServer{}
	authv3.RegisterAuthorizationServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return s, lis.Addr().String()
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
}

// TestGRPCCheck: the CheckRequest Envoy would send, and how answers map to
// decisions.
func TestGRPCCheck(t *testing.T) {
	s, addr := startAuthz(t)
	cl := NewClient(Options{Log: slog.New(slog.DiscardHandler)})
	t.Cleanup(cl.Close)
	r := config.Route{Name: "reports", Paths: []string{"/*"}, Service: "s", ExtAuthz: &config.ExtAuthz{GRPC: &config.ExtAuthzGRPC{Address: addr},
		UpstreamHeaders: []string{"X-User-Tier"}, ClientHeaders: []string{"X-Policy"}}}
	st := Compile(&r, cl)

	s.answer = &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
			header("x-user-tier", "gold"), header("x-other", "dropped")}}}}
	w, up := run(st, func(r *http.Request) { r.Header.Set("X-User-Tier", "platinum") })
	if w.Code != 200 || strings.Join(up.got.Values("X-User-Tier"), ",") != "gold" || up.got.Get("X-Other") != "" {
		t.Fatalf("allow: %d, upstream got %v", w.Code, up.got)
	}
	a := s.last.GetAttributes()
	h := a.GetRequest().GetHttp()
	for k, want := range map[string]string{
		"method": h.GetMethod(), "path": h.GetPath(), "host": h.GetHost(), "scheme": h.GetScheme(), "protocol": h.GetProtocol(),
		"source": a.GetSource().GetAddress().GetSocketAddress().GetAddress(),
		":path":  h.GetHeaders()[":path"], ":method": h.GetHeaders()[":method"], "authorization": h.GetHeaders()["authorization"],
		"x-consumer-name": h.GetHeaders()["x-consumer-name"], "x-user-tier": h.GetHeaders()["x-user-tier"], "x-api-key": h.GetHeaders()["x-api-key"],
		"consumer": a.GetContextExtensions()["consumer"], "consumer_groups": a.GetContextExtensions()["consumer_groups"], "route": a.GetContextExtensions()["route"],
	} {
		wantv := map[string]string{
			"method": "POST", "path": "/orders/7?x=1&y=%2F", "host": "api.example.com", "scheme": "http", "protocol": "HTTP/1.1",
			"source": "192.0.2.10", ":path": "/orders/7?x=1&y=%2F", ":method": "POST", "authorization": "Bearer t",
			"x-consumer-name": "alice", "x-user-tier": "", "x-api-key": "",
			"consumer": "alice", "consumer_groups": "staff", "route": "reports",
		}[k]
		if want != wantv {
			t.Errorf("%s = %q, want %q", k, want, wantv)
		}
	}
	if p := a.GetSource().GetAddress().GetSocketAddress().GetPortValue(); p != 0 {
		t.Errorf("the port of a proxy (%d) given as the client's", p)
	}

	// Denied: status, body and the listed headers.
	s.answer = &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_PaymentRequired}, Body: "upgrade",
			Headers: []*corev3.HeaderValueOption{header("content-type", "text/plain"), header("x-policy", "v1"), header("x-secret", "no")}}}}
	w, up = run(st, nil)
	if w.Code != 402 || w.Body.String() != "upgrade" || w.Header().Get("Content-Type") != "text/plain" || w.Header().Get("X-Policy") != "v1" ||
		w.Header().Get("X-Secret") != "" || up.got != nil {
		t.Fatalf("deny: %d %v %s", w.Code, w.Header(), w.Body)
	}
	// Denied without a response: 403 problem.
	s.answer = &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)}}
	if w, _ = run(st, nil); w.Code != 403 || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("bare deny: %d %v", w.Code, w.Header())
	}
	// An error response, and a service that is gone: errors.
	s.answer = &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.Internal)},
		HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{}}}
	if w, _ = run(st, nil); w.Code != 503 {
		t.Fatalf("error response: %d", w.Code)
	}
	gone := r
	e := *r.ExtAuthz
	e.GRPC = &config.ExtAuthzGRPC{Address: "127.0.0.1:1"}
	e.FailureMode = config.FailOpen
	gone.ExtAuthz = &e
	if w, up = run(Compile(&gone, cl), func(r *http.Request) { r.Header.Set("X-User-Tier", "platinum") }); w.Code != 200 || len(up.got.Values("X-User-Tier")) != 0 {
		t.Fatalf("fail open: %d %v", w.Code, up.got)
	}
	// One connection per target, shared.
	Compile(&r, cl)
	if n := len(cl.conns); n != 2 {
		t.Fatalf("%d pooled connections, want 2", n)
	}
}

// TestGRPCBody: include_body sends the body (text in body, anything else
// in raw_body), puts it back for the service, and refuses a larger one.
func TestGRPCBody(t *testing.T) {
	s, addr := startAuthz(t)
	s.answer = &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}
	cl := NewClient(Options{Log: slog.New(slog.DiscardHandler)})
	t.Cleanup(cl.Close)
	r := config.Route{Name: "r", Paths: []string{"/*"}, Service: "s", ExtAuthz: &config.ExtAuthz{GRPC: &config.ExtAuthzGRPC{Address: addr},
		IncludeBody: &config.ExtAuthzBody{MaxBytes: 16}}}
	st := Compile(&r, cl)
	for _, c := range []struct {
		body       string
		code       int
		text       string
		raw        string
		askedAgain bool
	}{
		{`{"format":"csv"}`, 200, `{"format":"csv"}`, "", true},
		{"\xff\xfe", 200, "", "\xff\xfe", true},
		{`{"format":"csv" }`, 413, "", "", false},
	} {
		s.last = nil
		w, up := run(st, func(r *http.Request) {
			r.Body = io.NopCloser(strings.NewReader(c.body))
			r.ContentLength = -1 // chunked: the bound is the stage's own
		})
		if w.Code != c.code {
			t.Fatalf("%q: %d %s", c.body, w.Code, w.Body)
		}
		if !c.askedAgain {
			if s.last != nil || up.got != nil {
				t.Fatalf("%q: checked or forwarded", c.body)
			}
			continue
		}
		h := s.last.GetAttributes().GetRequest().GetHttp()
		if h.GetBody() != c.text || string(h.GetRawBody()) != c.raw || h.GetSize() != int64(len(c.body)) || up.body != c.body {
			t.Fatalf("%q: sent body %q raw %q size %d; service got %q", c.body, h.GetBody(), h.GetRawBody(), h.GetSize(), up.body)
		}
	}
}
