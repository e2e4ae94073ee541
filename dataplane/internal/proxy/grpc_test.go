package proxy

import (
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/portico-gw/portico/dataplane/internal/demoshop"
	"github.com/portico-gw/portico/shared/config"
)

// TestGRPCRouteIdentity: on a gRPC route the identity metadata is the
// gateway's, never what the client sent under those header names.
func TestGRPCRouteIdentity(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	var last atomic.Pointer[metadata.MD]
	if err := demoshop.Register(srv, demoshop.Options{OnCall: func(md metadata.MD) { last.Store(&md) }}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	cfg := &config.Config{
		Services: []config.Service{{Name: "shop", Protocol: config.ProtocolGRPC, Targets: []config.Target{{URL: "http://" + ln.Addr().String()}}}},
		Routes: []*config.Route{{Name: "order", Paths: []string{"/orders/{id}"}, Service: "shop",
			GRPC:            &config.RouteGRPC{Method: "shop.v1.Orders/GetOrder"},
			ResponseHeaders: &config.Edits{Set: map[string]string{"X-Order": "{id}"}}}},
	}
	_, gw := newGateway(t, cfg)
	status, hdr, body := do(t, "GET", gw+"/orders/5", nil, "X-Consumer-Name", "admin", "X-Consumer-Role", "root", "X-Request-Id", "rid-1")
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	md := *last.Load()
	for _, k := range []string{"x-consumer-name", "x-consumer-role"} {
		if got := md.Get(k); len(got) != 0 {
			t.Errorf("client-sent %s reached the gRPC server: %v", k, got)
		}
	}
	if got := md.Get("x-request-id"); len(got) != 1 || got[0] != "rid-1" {
		t.Errorf("x-request-id metadata = %v", got)
	}
	if hdr.Get("X-Order") != "5" {
		t.Errorf("response edits on a gRPC route: %v", hdr)
	}
}
