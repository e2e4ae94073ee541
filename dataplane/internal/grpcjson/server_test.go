package grpcjson

import (
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/portico-gw/portico/dataplane/internal/demoshop"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
)

// The test service is demoshop's shop.v1.Orders (see its FileProto).

// shopFiles is a registry holding the test file and its import.
func shopFiles(t testing.TB, withCancel bool) (*protoregistry.Files, protoreflect.FileDescriptor) {
	t.Helper()
	files, fd, err := demoshop.Files(withCancel)
	if err != nil {
		t.Fatal(err)
	}
	return files, fd
}

// shopDescriptorSet is what `protoc --include_imports -o` would write.
func shopDescriptorSet(t testing.TB) []byte {
	t.Helper()
	b, err := demoshop.DescriptorSet()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reflectionMode says which reflection services a test server offers.
type reflectionMode = demoshop.Reflection

const (
	reflectV1      = demoshop.ReflectV1
	reflectV1Alpha = demoshop.ReflectV1Alpha
	reflectNone    = demoshop.ReflectNone
)

type serverOpts struct {
	reflection reflectionMode
	withCancel bool
	addr       string // listen here (a restart); "" picks a free port
	// onCall, when set, runs in each call before it is answered (after it
	// is counted): a test can hold calls there.
	onCall func()
	// grpc are the server's options (TLS credentials).
	grpc []grpc.ServerOption
}

// shopServer is a real gRPC server on loopback serving shop.v1.Orders with
// dynamic messages.
type shopServer struct {
	addr  string
	srv   *grpc.Server
	calls atomic.Int64
	// lastMD is the incoming metadata of the last call.
	lastMD atomic.Pointer[metadata.MD]
}

func startShop(t testing.TB, o serverOpts) *shopServer {
	t.Helper()
	if o.addr == "" {
		o.addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &shopServer{addr: ln.Addr().String(), srv: grpc.NewServer(o.grpc...)}
	err = demoshop.Register(s.srv, demoshop.Options{Reflection: o.reflection, WithCancel: o.withCancel, OnCall: func(md metadata.MD) {
		s.calls.Add(1)
		s.lastMD.Store(&md)
		if o.onCall != nil {
			o.onCall()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		s.srv.Stop()
		<-done
	})
	return s
}

// stop ends the server now (the address becomes free).
func (s *shopServer) stop() { s.srv.Stop() }

// newUpstream builds and starts a real upstream over the given addresses.
func newUpstream(t testing.TB, addrs ...string) *upstream.Upstream {
	t.Helper()
	return newService(t, config.Service{}, upstream.Deps{}, addrs...)
}

// newService builds and starts a real upstream from svc (its name,
// protocol and targets filled in) over the given addresses.
func newService(t testing.TB, svc config.Service, deps upstream.Deps, addrs ...string) *upstream.Upstream {
	t.Helper()
	svc.Name, svc.Protocol = "shop", config.ProtocolGRPC
	for _, a := range addrs {
		svc.Targets = append(svc.Targets, config.Target{URL: "http://" + a, Weight: 1})
	}
	deps.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	u, err := upstream.Build(&svc, nil, deps)
	if err != nil {
		t.Fatal(err)
	}
	u.Start()
	t.Cleanup(u.Retire)
	return u
}

func newPool(t testing.TB, o PoolOptions) *Pool {
	t.Helper()
	p := NewPool(o)
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}
