package grpcjson

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestUpstreamTLS: an https instance is called with the service's TLS
// client configuration (upstream.ClientTLS: its CA, server name and client
// certificate), and a service that does not trust the instance fails.
func TestUpstreamTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"shop.internal"}, time.Time{}, time.Time{})
	cert, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	client := ca.IssueClient(t, "portico")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	srv := startShop(t, serverOpts{reflection: reflectNone, grpc: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots,
	}))}})
	pool := newPool(t, PoolOptions{})
	for _, tc := range []struct {
		name   string
		tls    *config.ServiceTLS
		status int
	}{
		{"mTLS", &config.ServiceTLS{CA: ca.PEM, ServerName: "shop.internal", ClientCert: client.CertPEM, ClientKey: client.KeyPEM}, 200},
		{"no client certificate", &config.ServiceTLS{CA: ca.PEM, ServerName: "shop.internal"}, 503},
		{"system roots", nil, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &config.Service{Name: "shop-" + tc.name, Protocol: config.ProtocolGRPC, TLS: tc.tls,
				Targets:          []config.Target{{URL: "https://" + srv.addr}},
				OutlierDetection: &config.OutlierDetection{Disabled: true}, CircuitBreaker: &config.CircuitBreaker{Disabled: true}}
			up, err := upstream.Build(svc, nil, upstream.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			up.Start()
			t.Cleanup(up.Retire)
			m := mustMethod(t, "shop.v1.Orders/GetOrder", shopDescriptorSet(t), up, pool)
			if res := serve(t, m, "GET", "/orders/1", "", map[string]string{"id": "1"}); res.status != tc.status {
				t.Fatalf("%d %s, want %d", res.status, res.raw, tc.status)
			}
		})
	}
}
