package tlsedge

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	// As in the data plane's binary, the HTTP/2 server announces extended
	// CONNECT (WebSocket over HTTP/2): the hostile suite runs against the
	// default an operator gets.
	_ "github.com/portico-gw/portico/dataplane/internal/extconnect"
	"github.com/portico-gw/portico/dataplane/internal/grpcjson"
	"github.com/portico-gw/portico/dataplane/internal/proxy"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// gatewayTLS serves the real proxy handler (with the data plane's
// default limits, through proxy.Handler.Server like main) over TLS with
// the certificates of c, after applying cfg.
func gatewayTLS(t *testing.T, c *Certificates, cfg *config.Config) string {
	t.Helper()
	h := newProxy(t, cfg, c)
	srv := h.Server(nil)
	Configure(srv, c)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// newProxy is the real proxy handler with the data plane's default limits
// and cfg applied (its certificates to c).
func newProxy(t *testing.T, cfg *config.Config, c *Certificates) *proxy.Handler {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	h := proxy.NewHandler(proxy.Options{Log: log, Metrics: proxy.NewMetrics(prometheus.NewRegistry()), Limits: proxy.Limits{
		BodyReadTimeout: proxy.DefaultBodyReadTimeout, BodyMinRate: proxy.DefaultBodyMinRate, BodyMinRateGrace: proxy.DefaultBodyMinRateGrace,
		TunnelIdleTimeout: proxy.DefaultTunnelIdleTimeout, TunnelMaxLifetime: proxy.DefaultTunnelMaxLifetime,
	}})
	cfg.Sort()
	s, _, err := snapshot.Encode(1, cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a := proxy.NewApplier(h, proxy.Deps{Upstream: upstream.Deps{Log: log}, GRPC: grpcjson.NewPool(grpcjson.PoolOptions{})})
	if rej, err := a.Apply(s); err != nil || len(rej) > 0 {
		t.Fatalf("apply: %v %v", rej, err)
	}
	t.Cleanup(a.Close)
	if rej := c.Apply(cfg); len(rej) > 0 {
		t.Fatalf("certificates rejected: %v", rej)
	}
	return h
}

// h2Client speaks HTTP/2 only to addr, trusting roots.
func h2Client(p *pki, addr string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: p.roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// TestHostileOverHTTP2: the gateway's defences answer the same over
// HTTP/2 as over HTTP/1.1 (the proxy's TestHostile* suites): body limits,
// header limits, path and authority rules, identity headers, auth, rate
// limits.
func TestHostileOverHTTP2(t *testing.T) {
	var seen sync.Map // path → headers the service saw
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		seen.Store(r.URL.Path, r.Header.Clone())
		io.WriteString(w, "ok")
	}))
	t.Cleanup(app.Close)
	key, id, hash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	p := newPKI(t)
	c := New("", nil)
	cfg := &config.Config{
		Certificates: []config.Certificate{p.cert(t, "edge", 1, "api.example.com")},
		Services:     []config.Service{{Name: "app", Targets: []config.Target{{URL: app.URL}}}},
		Consumers:    []config.Consumer{{Name: "alice", APIKeys: []config.APIKey{{ID: id, Hash: hash, Prefix: apikey.Prefix(key)}}}},
		Routes: []*config.Route{
			{Name: "site", Paths: []string{"/*"}, Service: "app", MaxBodyBytes: 1024},
			{Name: "admin", Paths: []string{"/admin/*"}, Service: "app", Auth: &config.RouteAuth{APIKey: true}},
			{Name: "limited", Paths: []string{"/limited"}, Service: "app", RateLimit: &config.RateLimit{Limit: 1, Window: config.Duration(time.Hour)}},
		},
	}
	addr := gatewayTLS(t, c, cfg)
	client := h2Client(p, addr)
	do := func(method, path, host string, body io.Reader, hdr ...string) (int, error) {
		t.Helper()
		req, err := http.NewRequest(method, "https://api.example.com"+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("%s %s over %s, want HTTP/2", method, path, resp.Proto)
		}
		return resp.StatusCode, nil
	}
	cases := []struct {
		name, method, path, host string
		body                     io.Reader
		hdr                      []string
		want                     int
	}{
		{"plain", "GET", "/hello", "", nil, nil, 200},
		{"body over the route limit (length known)", "POST", "/upload", "", bytes.NewReader(make([]byte, 4096)), nil, 413},
		{"body over the route limit (streamed)", "POST", "/upload", "", io.MultiReader(strings.NewReader(strings.Repeat("x", 4096))), nil, 413},
		{"dot segments cleaned into the protected route", "GET", "/public/%2e%2e/admin/x", "", nil, nil, 401},
		{"servlet path parameter dodge", "GET", "/x/..;/admin/x", "", nil, nil, 400},
		{"backslash", "GET", "/admin%5cx", "", nil, nil, 400},
		{"authority with a sub-delimiter", "GET", "/hello", "a,b.example.com", nil, nil, 400},
		{"auth without a key", "GET", "/admin/x", "", nil, nil, 401},
		{"auth with the key", "GET", "/admin/x", "", nil, []string{"X-API-Key", key}, 200},
		{"two API keys", "GET", "/admin/x", "", nil, []string{"X-API-Key", key, "X-API-Key", key}, 400},
		{"rate limit: first", "GET", "/limited", "", nil, nil, 200},
		{"rate limit: second", "GET", "/limited", "", nil, nil, 429},
	}
	for _, tc := range cases {
		got, err := do(tc.method, tc.path, tc.host, tc.body, tc.hdr...)
		if err != nil || got != tc.want {
			t.Errorf("%s: %d (%v), want %d", tc.name, got, err, tc.want)
		}
	}

	// Identity and forwarding headers sent by the client never reach the
	// service; the gateway writes its own.
	if got, err := do("GET", "/spoof", "", nil, "X-Consumer-Name", "root", "X-Forwarded-For", "10.9.9.9", "X-Real-IP", "10.9.9.9"); err != nil || got != 200 {
		t.Fatalf("spoof: %d %v", got, err)
	}
	v, _ := seen.Load("/spoof")
	h := v.(http.Header)
	if h.Get("X-Consumer-Name") != "" || h.Get("X-Real-IP") != "" || strings.Contains(h.Get("X-Forwarded-For"), "10.9.9.9") || h.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("the service saw forged headers: %v", h)
	}

	// A header block over 64 KiB: refused (431, or the client gives up on
	// the server's advertised limit, which is the same limit).
	got, err := do("GET", "/hello", "", nil, "X-Big", strings.Repeat("a", 70<<10))
	if err == nil && got != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("70 KiB header: %d, want 431", got)
	}
	if err != nil && !strings.Contains(err.Error(), "header list larger than peer's advertised limit") {
		t.Fatalf("70 KiB header: %v", err)
	}
}

// rawH2 opens an HTTP/2 connection speaking frames directly (what a
// hostile client does) and returns the framer.
func rawH2(t *testing.T, p *pki, addr string) (*http2.Framer, net.Conn) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "api.example.com", RootCAs: p.roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return fr, conn
}

func headerBlock(t *testing.T, path string, extra ...string) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "api.example.com"}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return buf.Bytes()
}

// TestHTTP2RapidReset: a client opening and resetting streams as fast as
// it can (CVE-2023-44487) never has more handlers running at once than
// MaxConcurrentStreams, even when handlers do not stop on the reset, and
// is disconnected (GOAWAY) once it keeps piling up streams.
func TestHTTP2RapidReset(t *testing.T) {
	p := newPKI(t)
	c := New("", nil)
	c.Apply(&config.Config{Certificates: []config.Certificate{p.cert(t, "edge", 1, "api.example.com")}})
	var running, peak atomic.Int64
	release := make(chan struct{})
	addr := serveTLS(t, c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		for {
			if old := peak.Load(); n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		<-release // a handler slow to notice the reset
		running.Add(-1)
	}))
	defer close(release)
	fr, conn := rawH2(t, p, addr)
	const streams = 5000
	var sendErr error
	for i := range streams {
		id := uint32(2*i + 1)
		if sendErr = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: headerBlock(t, "/x"), EndStream: true, EndHeaders: true}); sendErr != nil {
			break
		}
		if sendErr = fr.WriteRSTStream(id, http2.ErrCodeCancel); sendErr != nil {
			break
		}
	}
	// A ping after the flood: its answer comes after the server has read
	// every frame before it, unless it has closed the connection first.
	fr.WritePing(false, [8]byte{1})
	conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a guard, not a wait
	var goaway *http2.GoAwayFrame
	for goaway == nil {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			goaway = g
		}
		if ping, ok := f.(*http2.PingFrame); ok && ping.IsAck() {
			break
		}
	}
	if p := peak.Load(); p > MaxConcurrentStreams {
		t.Fatalf("%d handlers ran at once, over MaxConcurrentStreams %d", p, MaxConcurrentStreams)
	}
	if goaway == nil {
		t.Fatalf("%d streams opened and reset on one connection without a GOAWAY (send error %v)", streams, sendErr)
	}
	t.Logf("rapid reset: peak handlers %d, GOAWAY %v, send error %v", peak.Load(), goaway.ErrCode, sendErr)
}

// TestHTTP2ContinuationFlood: a header block that never ends, sent as
// CONTINUATION frames (CVE-2023-45288), is cut off once it passes the
// header-list limit: the server closes the connection long before the
// client runs out of bytes to send.
func TestHTTP2ContinuationFlood(t *testing.T) {
	p := newPKI(t)
	c := New("", nil)
	c.Apply(&config.Config{Certificates: []config.Certificate{p.cert(t, "edge", 1, "api.example.com")}})
	srvReached := make(chan struct{}, 1)
	addr := serveTLS(t, c, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { srvReached <- struct{}{} }))
	fr, conn := rawH2(t, p, addr)
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(t, "/x"), EndStream: true}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	enc.WriteField(hpack.HeaderField{Name: "x-junk", Value: strings.Repeat("a", 4000)})
	chunk := buf.Bytes()
	sent := 0
	const budget = 64 << 20
	closed := make(chan struct{})
	go func() { // drain what the server says, so its writes never block
		defer close(closed)
		for {
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	for sent < budget {
		if err := fr.WriteContinuation(1, false, chunk); err != nil {
			break
		}
		sent += len(chunk)
	}
	if sent >= budget {
		t.Fatalf("the server took %d bytes of one header block without closing", sent)
	}
	<-closed
	select {
	case <-srvReached:
		t.Fatal("the flooded request reached the handler")
	default:
	}
	t.Logf("continuation flood: connection closed after %s sent", fmt.Sprint(sent))
}
