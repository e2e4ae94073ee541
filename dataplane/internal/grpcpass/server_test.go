package grpcpass_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	// As in the data plane's binary, the HTTP/2 server announces extended
	// CONNECT (WebSocket over HTTP/2), which gRPC clients must not mind.
	_ "github.com/portico-gw/portico/dataplane/internal/extconnect"
	"github.com/portico-gw/portico/dataplane/internal/proxy"
	"github.com/portico-gw/portico/dataplane/internal/tlsedge"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
	"github.com/portico-gw/portico/shared/testutil"
)

// The tests run real components only: grpc-go's interop TestService
// (unary, server, client and bidirectional streaming; generated code
// shipped with grpc-go) implemented by echoServer on a loopback port, the
// real proxy handler served by the data plane's own server settings (h2c
// and TLS listeners as main configures them), and a grpc-go client.

// Magic payload bodies make the server act.
const (
	bodyBlock = "block" // wait until the call's context ends, and report it
)

// echoServer is a real gRPC server of grpc.testing.TestService.
type echoServer struct {
	testgrpc.UnimplementedTestServiceServer
	addr  string
	calls atomic.Int64
	// failAll answers every call with UNAVAILABLE (before any message).
	failAll atomic.Bool
	// md and deadline are the last call's metadata and deadline (zero
	// without one).
	md       atomic.Pointer[metadata.MD]
	deadline atomic.Pointer[time.Duration]
	// byMethod holds each method's last metadata (full method name →
	// metadata.MD): a refused stream's headers may reach the server after
	// a later call, so a test about one call asks for its method's.
	byMethod sync.Map
	// blocked receives a value when a call starts to block; ended the
	// context error it ended with.
	blocked chan struct{}
	ended   chan error
	// health is the server's grpc.health.v1 service.
	health *health.Server
}

func startEcho(t testing.TB, opts ...grpc.ServerOption) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{addr: ln.Addr().String(), blocked: make(chan struct{}, 16), ended: make(chan error, 16)}
	srv := grpc.NewServer(opts...)
	testgrpc.RegisterTestServiceServer(srv, s)
	s.health = health.NewServer()
	s.health.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, s.health)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return s
}

// begin counts a call and notes what it arrived with.
func (s *echoServer) begin(ctx context.Context) error {
	s.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	s.md.Store(&md)
	if m, ok := grpc.Method(ctx); ok {
		s.byMethod.Store(m, md)
	}
	var left time.Duration
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	s.deadline.Store(&left)
	if s.failAll.Load() {
		return status.Error(codes.Unavailable, "instance failing")
	}
	// Metadata comes back: x-echo in the header, x-trailer in the trailer.
	if v := md.Get("x-echo"); len(v) > 0 {
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-echo", v[0]))
	}
	if v := md.Get("x-echo-bin"); len(v) > 0 {
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-echo-bin", v[0]))
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "done"))
	return nil
}

func (s *echoServer) block(ctx context.Context) error {
	s.blocked <- struct{}{}
	<-ctx.Done()
	s.ended <- ctx.Err()
	return status.FromContextError(ctx.Err()).Err()
}

// statusOf returns the error a request asks for, with an ErrorInfo detail.
func statusOf(st *testgrpc.EchoStatus) error {
	if st == nil {
		return nil
	}
	s, err := status.New(codes.Code(st.GetCode()), st.GetMessage()).WithDetails(&errdetails.ErrorInfo{Reason: "ASKED", Domain: "test"})
	if err != nil {
		return err
	}
	return s.Err()
}

func (s *echoServer) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	return &testgrpc.Empty{}, nil
}

func (s *echoServer) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	if string(in.GetPayload().GetBody()) == bodyBlock {
		return nil, s.block(ctx)
	}
	if err := statusOf(in.GetResponseStatus()); err != nil {
		return nil, err
	}
	return &testgrpc.SimpleResponse{Payload: in.GetPayload()}, nil
}

func (s *echoServer) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	if err := s.begin(stream.Context()); err != nil {
		return err
	}
	for _, p := range in.GetResponseParameters() {
		body := strings.Repeat("x", int(p.GetSize()))
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(body)}}); err != nil {
			return err
		}
	}
	return statusOf(in.GetResponseStatus())
}

func (s *echoServer) StreamingInputCall(stream grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	if err := s.begin(stream.Context()); err != nil {
		return err
	}
	var n int32
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: n})
		}
		if err != nil {
			return err
		}
		n += int32(len(in.GetPayload().GetBody()))
	}
}

// FullDuplexCall echoes each message at once; a message asking for a
// status ends the call with it, one whose body is bodyBlock waits for the
// call's end.
func (s *echoServer) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	if err := s.begin(stream.Context()); err != nil {
		return err
	}
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := statusOf(in.GetResponseStatus()); err != nil {
			return err
		}
		if string(in.GetPayload().GetBody()) == bodyBlock {
			return s.block(stream.Context())
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

// lastDeadline is the time the last call had left when it arrived (0:
// no deadline).
func (s *echoServer) lastDeadline() time.Duration { return *s.deadline.Load() }

func (s *echoServer) lastMD() metadata.MD { return *s.md.Load() }

// methodMD is the metadata of the last call of a full method name
// ("/grpc.testing.TestService/UnaryCall"), nil before one.
func (s *echoServer) methodMD(method string) metadata.MD {
	md, _ := s.byMethod.Load(method)
	m, _ := md.(metadata.MD)
	return m
}

// awaitBlocked waits until a call blocks in the server.
func (s *echoServer) awaitBlocked(t *testing.T) {
	t.Helper()
	select {
	case <-s.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("no call blocked in the server")
	}
}

// awaitEnd waits for a blocked call to end and returns how it ended.
func (s *echoServer) awaitEnd(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the server's call never ended")
		return nil
	}
}

// gateway is a real data plane handler serving cfg on an h2c listener
// and a TLS one, with the data plane's default limits.
type gateway struct {
	h        *proxy.Handler
	applier  *proxy.Applier
	h2cAddr  string
	tlsAddr  string
	roots    *x509.CertPool
	revision int64
}

func newGateway(t testing.TB, cfg *config.Config, opts ...func(*proxy.Options)) *gateway {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	o := proxy.Options{Log: log, Metrics: proxy.NewMetrics(prometheus.NewRegistry()), Limits: proxy.Limits{
		BodyReadTimeout: proxy.DefaultBodyReadTimeout, BodyMinRate: proxy.DefaultBodyMinRate, BodyMinRateGrace: proxy.DefaultBodyMinRateGrace,
	}}
	for _, f := range opts {
		f(&o)
	}
	h := proxy.NewHandler(o)
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"localhost"}, time.Time{}, time.Time{})
	cfg.Certificates = append(cfg.Certificates, config.Certificate{Name: "gw", Cert: leaf.CertPEM, Key: leaf.KeyPEM, SNIs: []string{"localhost"}})
	g := &gateway{h: h, applier: proxy.NewApplier(h, proxy.Deps{Upstream: upstream.Deps{Log: log}}), roots: x509.NewCertPool()}
	g.roots.AddCert(ca.Cert)
	t.Cleanup(g.applier.Close)
	g.apply(t, cfg)
	certs := tlsedge.New("gw", log)
	if rej := certs.Apply(cfg); len(rej) > 0 {
		t.Fatalf("certificates rejected: %v", rej)
	}

	plain := h.Server(log)
	tlsedge.ConfigureH2C(plain)
	g.h2cAddr = serve(t, plain, false)
	secure := h.Server(log)
	tlsedge.Configure(secure, certs)
	g.tlsAddr = serve(t, secure, true)
	return g
}

// apply puts cfg into service as the next revision; every object must
// compile.
func (g *gateway) apply(t testing.TB, cfg *config.Config) {
	t.Helper()
	g.revision++
	cfg.Sort()
	s, _, err := snapshot.Encode(g.revision, cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rej, err := g.applier.Apply(s)
	if err != nil || len(rej) > 0 {
		t.Fatalf("apply: %v %v", rej, err)
	}
}

func serve(t testing.TB, srv interface {
	Serve(net.Listener) error
	ServeTLS(net.Listener, string, string) error
	Close() error
}, secure bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if secure {
			_ = srv.ServeTLS(ln, "", "")
		} else {
			_ = srv.Serve(ln)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// client is a grpc-go client of the gateway: over h2c, or over TLS
// trusting the gateway's CA.
func (g *gateway) client(t *testing.T, secure bool) testgrpc.TestServiceClient {
	t.Helper()
	return testgrpc.NewTestServiceClient(g.conn(t, secure))
}

// conn is the client connection behind client.
func (g *gateway) conn(t *testing.T, secure bool) *grpc.ClientConn {
	t.Helper()
	addr, creds := g.h2cAddr, insecure.NewCredentials()
	if secure {
		addr = g.tlsAddr
		creds = credentials.NewTLS(&tls.Config{RootCAs: g.roots, ServerName: "localhost"})
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// passConfig is a configuration with one gRPC service over addrs and one
// pass-through route for the whole TestService.
func passConfig(route func(*config.Route), svc func(*config.Service), addrs ...string) *config.Config {
	s := config.Service{Name: "echo", Protocol: config.ProtocolGRPC}
	for _, a := range addrs {
		s.Targets = append(s.Targets, config.Target{URL: "http://" + a})
	}
	if svc != nil {
		svc(&s)
	}
	r := config.Route{Name: "echo", Paths: []string{"/grpc.testing.TestService/*"}, Service: "echo"}
	if route != nil {
		route(&r)
	}
	return &config.Config{Services: []config.Service{s}, Routes: []*config.Route{&r}}
}

// codeOf is the gRPC code of err, failing the test when err is not a
// status the client received.
func codeOf(t *testing.T, err error) codes.Code {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a gRPC status: %v", err)
	}
	return st.Code()
}
