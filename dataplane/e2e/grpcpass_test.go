package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestGRPCPassThrough: gRPC as gRPC through the real binaries. Routes to a
// gRPC service (a demo-grpc process: grpc.testing.TestService) written
// without a method through the admin API pass a grpc-go client's calls
// through a data plane started with --h2c and --tls-listen: unary with
// metadata and trailers, bidirectional streaming, the deadline, and the
// gateway's own refusals as gRPC statuses; the control plane refuses a
// pass-through route that would rewrite the method, with its field path.
func TestGRPCPassThrough(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	start(t, "demo-grpc-echo", "demo-grpc", "--listen", grpcAddr)
	testutil.Eventually(t, 10*time.Second, func() bool {
		c, err := net.Dial("tcp", grpcAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "demo-grpc on "+grpcAddr)

	cp := startControlPlane(t, "cp-grpcpass", "bolt:"+filepath.Join(dir, "cp.db"))
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	dp := startDataPlane(t, "dp-grpcpass", cp.url, filepath.Join(dir, "dp"), "--h2c", "--tls-listen", tlsAddr, "--tls-default-cert", "gw")
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"grpc.example.com"}, time.Time{}, time.Time{})
	if _, _, err := cp.admin.Certificates().Put(ctx, "gw", config.Certificate{Cert: leaf.CertPEM, Key: leaf.KeyPEM, SNIs: []string{"grpc.example.com"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Services().Put(ctx, "echo", config.Service{Name: "echo", Protocol: config.ProtocolGRPC,
		Targets:     []config.Target{{URL: "http://" + grpcAddr}},
		HealthCheck: &config.HealthCheck{Path: "/grpc.testing.TestService", Interval: config.Duration(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Consumers().Put(ctx, "app", config.Consumer{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	_, key := createKey(t, cp.url, "app")
	routes := []*config.Route{
		{Name: "echo", Paths: []string{"/grpc.testing.TestService/*"}, Service: "echo", Timeout: config.Duration(2 * time.Second)},
		{Name: "echo-auth", Paths: []string{"/grpc.testing.TestService/EmptyCall"}, Service: "echo", Auth: &config.RouteAuth{APIKey: true}},
	}
	for _, r := range routes {
		if _, _, err := cp.admin.Routes().Put(ctx, r.Name, *r); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := cp.admin.Routes().Put(ctx, "bad", config.Route{Paths: []string{"/grpc.health.v1.Health/*"}, Service: "echo", Rewrite: "/x"})
	if err == nil || !strings.Contains(err.Error(), "rewrite") {
		t.Errorf("a pass-through route with a rewrite: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		d, err := cp.admin.Dataplanes(ctx)
		return err == nil && d.Converged && len(d.Nodes) == 1
	}, "the data plane at the latest revision")

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for name, target := range map[string]struct {
		addr  string
		creds credentials.TransportCredentials
	}{
		"h2c": {strings.TrimPrefix(dp.url, "http://"), insecure.NewCredentials()},
		"tls": {tlsAddr, credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "grpc.example.com"})},
	} {
		t.Run(name, func(t *testing.T) {
			cc, err := grpc.NewClient("passthrough:///"+target.addr, grpc.WithTransportCredentials(target.creds))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			c := testgrpc.NewTestServiceClient(cc)

			var hdr, trl metadata.MD
			callCtx := metadata.AppendToOutgoingContext(ctx, "x-echo", name)
			resp, err := c.UnaryCall(callCtx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("hi")}}, grpc.Header(&hdr), grpc.Trailer(&trl))
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.GetPayload().GetBody()) != "hi" || len(hdr.Get("x-echo")) != 1 || hdr.Get("x-echo")[0] != name || len(trl.Get("x-trailer")) != 1 {
				t.Errorf("unary: %v, header %v, trailer %v", resp, hdr, trl)
			}

			stream, err := c.FullDuplexCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, msg := range []string{"a", "bb", "ccc"} {
				if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(msg)}}); err != nil {
					t.Fatal(err)
				}
				m, err := stream.Recv()
				if err != nil || string(m.GetPayload().GetBody()) != msg {
					t.Fatalf("bidi %q: %v %v", msg, m, err)
				}
			}
			_ = stream.CloseSend()
			if _, err := stream.Recv(); err != io.EOF {
				t.Fatalf("end of stream: %v", err)
			}

			out, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}, {Size: 200000}}})
			if err != nil {
				t.Fatal(err)
			}
			var n int
			for {
				m, err := out.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				n += len(m.GetPayload().GetBody())
			}
			if n != 200010 {
				t.Errorf("server streaming: %d bytes", n)
			}

			// The route's 2s caps the call: the gateway ends it.
			start := time.Now()
			_, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("block")}})
			if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 10*time.Second {
				t.Errorf("a call past the route's timeout: %v after %v", err, time.Since(start))
			}

			_, err = c.EmptyCall(ctx, &testgrpc.Empty{})
			if st := status.Convert(err); st.Code() != codes.Unauthenticated {
				t.Errorf("no API key: %v", err)
			}
			if _, err := c.EmptyCall(metadata.AppendToOutgoingContext(ctx, "x-api-key", key), &testgrpc.Empty{}); err != nil {
				t.Errorf("with the API key: %v", err)
			}
		})
	}
}
