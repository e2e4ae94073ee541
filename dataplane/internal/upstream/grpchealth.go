package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// A gRPC service's instances answer an HTTP GET with an error whatever
// their health, so their active health check is the gRPC health checking
// protocol (grpc.health.v1.Health/Check, which grpc-go servers offer
// through google.golang.org/grpc/health): healthy when the instance says
// SERVING. health_check.path names what is checked: "/" the server as a
// whole (service ""), "/package.Service" that service. The probe is one
// unary call over HTTP/2 (h2c, or TLS with the service's client
// configuration), written by hand: the checker needs no ClientConn per
// instance, and sees what the data plane's own calls would see.

// grpcProber checks instances of one service.
type grpcProber struct {
	rt *http.Transport
}

// newGRPCProber returns the prober of a service whose TLS client
// configuration (for https instances) is tlsConf.
func newGRPCProber(tlsConf *tls.Config) *grpcProber {
	var p http.Protocols
	rt := &http.Transport{Proxy: nil, DisableCompression: true}
	p.SetUnencryptedHTTP2(true)
	if tlsConf != nil {
		c := tlsConf.Clone()
		c.NextProtos = []string{"h2"}
		rt.TLSClientConfig = c
		p.SetHTTP2(true)
	}
	rt.Protocols = &p
	return &grpcProber{rt: rt}
}

func (g *grpcProber) close() { g.rt.CloseIdleConnections() }

// probe asks instance m whether path's service is SERVING.
func (g *grpcProber) probe(ctx context.Context, m *Member, path string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: strings.TrimPrefix(path, "/")})
	if err != nil {
		return false
	}
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	copy(body[5:], msg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.Scheme+"://"+m.Host+m.BasePath+"/grpc.health.v1.Health/Check", bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("User-Agent", "portico-health-check")
	// Health check timeouts are at most a minute: 8 digits of ms.
	req.Header.Set("Grpc-Timeout", strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)+"m")
	resp, err := g.rt.RoundTrip(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return false
	}
	st := resp.Trailer.Get("Grpc-Status")
	if st == "" {
		st = resp.Header.Get("Grpc-Status") // trailers-only
	}
	if st != "0" || len(out) < 5 || out[0] != 0 || int(binary.BigEndian.Uint32(out[1:5])) != len(out)-5 {
		return false
	}
	var hr healthpb.HealthCheckResponse
	if err := proto.Unmarshal(out[5:], &hr); err != nil {
		return false
	}
	return hr.GetStatus() == healthpb.HealthCheckResponse_SERVING
}
