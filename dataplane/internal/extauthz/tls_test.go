package extauthz

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestTLS: an https forward-auth service and a TLS gRPC one, verified with
// the route's ca and server_name; without them (the system roots) or with
// another name, the check fails and the route fails closed.
func TestTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"authz.test"}, time.Time{}, time.Time{})
	cert, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("X-User-Tier", "gold") }))
	hs.TLS = serverTLS
	hs.StartTLS()
	t.Cleanup(hs.Close)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	as := &authzServer{answer: &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{header("x-user-tier", "gold")}}}}}
	authv3.RegisterAuthorizationServer(gs, as)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	cl := NewClient(Options{Log: slog.New(slog.DiscardHandler)})
	t.Cleanup(cl.Close)
	good := &config.ExtAuthzTLS{CA: ca.PEM, ServerName: "authz.test"}
	for _, c := range []struct {
		name string
		e    config.ExtAuthz
		want int
	}{
		{"https verified", config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: hs.URL}, TLS: good}, 200},
		{"https system roots", config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: hs.URL}, TLS: &config.ExtAuthzTLS{ServerName: "authz.test"}}, 503},
		{"https other name", config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: hs.URL}, TLS: &config.ExtAuthzTLS{CA: ca.PEM, ServerName: "other.test"}}, 503},
		{"grpc verified", config.ExtAuthz{GRPC: &config.ExtAuthzGRPC{Address: lis.Addr().String(), UseTLS: true}, TLS: good}, 200},
		{"grpc system roots", config.ExtAuthz{GRPC: &config.ExtAuthzGRPC{Address: lis.Addr().String(), UseTLS: true}}, 503},
		{"grpc plaintext to TLS", config.ExtAuthz{GRPC: &config.ExtAuthzGRPC{Address: lis.Addr().String()}}, 503},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.e.UpstreamHeaders = []string{"X-User-Tier"}
			r := config.Route{Name: "r", Paths: []string{"/*"}, Service: "s", ExtAuthz: &c.e}
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			w, up := run(Compile(&r, cl), nil)
			if w.Code != c.want || c.want == 200 && up.got.Get("X-User-Tier") != "gold" {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
		})
	}
}
