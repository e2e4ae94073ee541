package grpcpass_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestUpstreamTLS: toward an https:// instance the call goes over TLS with
// ALPN h2 and the service's tls block (its CA, server name and client
// certificate: mTLS), the one client configuration upstream.ClientTLS
// builds; a service that does not trust the instance gets UNAVAILABLE,
// never a silent fallback.
func TestUpstreamTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"echo.internal"}, time.Time{}, time.Time{})
	cert, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	clientCA := testutil.NewCA(t)
	client := clientCA.IssueClient(t, "portico")
	clients := x509.NewCertPool()
	clients.AddCert(clientCA.Cert)
	srv := startEcho(t, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clients,
	})))

	withTLS := func(tb *config.ServiceTLS) func(*config.Service) {
		return func(s *config.Service) {
			s.Targets = []config.Target{{URL: "https://" + srv.addr}}
			s.TLS = tb
			s.OutlierDetection = &config.OutlierDetection{Disabled: true}
			s.CircuitBreaker = &config.CircuitBreaker{Disabled: true}
		}
	}
	good := &config.ServiceTLS{CA: ca.PEM, ServerName: "echo.internal", ClientCert: client.CertPEM, ClientKey: client.KeyPEM}
	g := newGateway(t, passConfig(nil, withTLS(good)))
	c := g.client(t, true)
	stream, err := c.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("over mTLS")}}); err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || string(m.GetPayload().GetBody()) != "over mTLS" {
		t.Fatalf("%v %v", m, err)
	}
	_ = stream.CloseSend()

	for name, tb := range map[string]*config.ServiceTLS{
		"another CA":        {CA: clientCA.PEM, ServerName: "echo.internal", ClientCert: client.CertPEM, ClientKey: client.KeyPEM},
		"another name":      {CA: ca.PEM, ServerName: "other.internal", ClientCert: client.CertPEM, ClientKey: client.KeyPEM},
		"no client cert":    {CA: ca.PEM, ServerName: "echo.internal"},
		"system roots only": nil,
	} {
		g.apply(t, passConfig(nil, withTLS(tb)))
		before := srv.calls.Load()
		_, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
		if codeOf(t, err) != codes.Unavailable {
			t.Errorf("%s: %v, want UNAVAILABLE", name, err)
		}
		if srv.calls.Load() != before {
			t.Errorf("%s: the call reached the service", name)
		}
	}
	// Back to the right settings: the service's new transport works.
	g.apply(t, passConfig(nil, withTLS(good)))
	if _, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
}
