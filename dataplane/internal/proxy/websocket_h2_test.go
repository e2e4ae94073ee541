package proxy

//lint:file-ignore SA1019 net/http's Transport refuses the ":protocol" header of an extended CONNECT (RFC 8441); x/net's HTTP/2 transport, deprecated for other uses, sends it.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	// The test binary's HTTP/2 server offers extended CONNECT, as the
	// data plane's does (its main imports this too).
	_ "github.com/portico-gw/portico/dataplane/internal/extconnect"
	"github.com/portico-gw/portico/dataplane/internal/tlsedge"
	"github.com/portico-gw/portico/dataplane/internal/tunnel/h2client"
	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// h2cServer serves h as the data plane does with --h2c (HTTP/1.1 and
// HTTP/2 with prior knowledge on one plain listener, the TLS listener's
// HTTP/2 limits) and returns its address.
func h2cServer(t testing.TB, h *Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := h.Server(discardLog())
	tlsedge.ConfigureH2C(srv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// h2Transport speaks HTTP/2 with prior knowledge to addr.
func h2Transport(t testing.TB, addr string) *http2.Transport {
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// dialWSH2 opens a WebSocket over HTTP/2 (RFC 8441) through tr; the status
// is the answer to the extended CONNECT when it was refused.
func dialWSH2(t testing.TB, tr *http2.Transport, url string, hdr http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr,
		HTTPClient: &http.Client{Transport: h2client.Transport{H2: tr}}})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		return nil, resp
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("the WebSocket opened over %s", resp.Proto)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

// TestWebSocketOverHTTP2: RFC 8441. A real WebSocket client
// (coder/websocket framing over x/net's HTTP/2 client, extended CONNECT)
// through the gateway's HTTP/2 server to a real WebSocket server
// (coder/websocket, which checks the HTTP/1.1 handshake the gateway makes
// for it). The handshake runs the route's chain as over HTTP/1.1: 401
// (problem+json, on the stream) without a key, never reaching the
// service; 429 past the rate limit while open tunnels carry on. Text,
// binary and a 1 MiB message echo; two tunnels share one HTTP/2
// connection; metrics count them under http_version 2.
func TestWebSocketOverHTTP2(t *testing.T) {
	up := newWSEcho(t)
	key, id, hash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Services:  []config.Service{{Name: "ws", Targets: []config.Target{{URL: up.URL}}}},
		Consumers: []config.Consumer{{Name: "alice", APIKeys: []config.APIKey{{ID: id, Hash: hash, Prefix: apikey.Prefix(key)}}}},
		Routes: []*config.Route{
			{Name: "chat", Paths: []string{"/chat"}, Methods: []string{"GET"}, Service: "ws", Auth: &config.RouteAuth{APIKey: true},
				RateLimit: &config.RateLimit{Limit: 2, Window: config.Duration(time.Hour), Key: "consumer"}},
		},
	}
	reg := prometheus.NewRegistry()
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(reg)})
	applyCfg(t, h, 1, cfg)
	addr := h2cServer(t, h)
	tr := h2Transport(t, addr)
	url := "http://" + addr + "/chat"

	for _, hdr := range []http.Header{nil, {"X-Api-Key": {"pk_wrong"}}} {
		_, resp := dialWSH2(t, tr, url, hdr)
		if resp.StatusCode != http.StatusUnauthorized || resp.ProtoMajor != 2 || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("handshake with %v: %s %d %q, want HTTP/2 401 problem+json", hdr, resp.Proto, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	if n := up.handshakes.Load(); n != 0 {
		t.Fatalf("refused handshakes reached the service: %d", n)
	}
	withKey := http.Header{"X-Api-Key": {key}}
	a, resp := dialWSH2(t, tr, url, withKey)
	if a == nil {
		t.Fatalf("handshake with a key: %d", resp.StatusCode)
	}
	if got := echo(t, a, websocket.MessageText, "hello"); got != "alice:hello" {
		t.Fatalf("text echo %q", got)
	}
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	a.SetReadLimit(2 << 20)
	if got := echo(t, a, websocket.MessageBinary, big); got != "alice:"+big {
		t.Fatalf("binary echo: %d bytes", len(got))
	}
	b, resp := dialWSH2(t, tr, url, withKey)
	if b == nil {
		t.Fatalf("second handshake: %d", resp.StatusCode)
	}
	if _, resp := dialWSH2(t, tr, url, withKey); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third handshake within the limit of 2: %d, want 429", resp.StatusCode)
	}
	for i := range 5 {
		if got := echo(t, b, websocket.MessageText, "m"); got != "alice:m" {
			t.Fatalf("message %d on the second tunnel: %q", i, got)
		}
		if got := echo(t, a, websocket.MessageText, "n"); got != "alice:n" {
			t.Fatalf("message %d on the first tunnel: %q", i, got)
		}
	}
	if n := up.handshakes.Load(); n != 2 {
		t.Fatalf("handshakes at the service: %d, want 2", n)
	}
	if got := gauge(t, reg, "portico_tunnels_opened_total", "route", "chat", "protocol", "websocket", "http_version", "2"); got != 2 {
		t.Fatalf("portico_tunnels_opened_total{http_version=2} = %v", got)
	}
	if got := gauge(t, reg, "portico_tunnels_opened_total", "route", "chat", "http_version", "1.1"); got != 0 {
		t.Fatalf("portico_tunnels_opened_total{http_version=1.1} = %v", got)
	}
	if got := gauge(t, reg, "portico_tunnels_open", "route", "chat"); got != 2 {
		t.Fatalf("portico_tunnels_open = %v", got)
	}
	a.Close(websocket.StatusNormalClosure, "")
	b.Close(websocket.StatusNormalClosure, "")
	testutil.Eventually(t, 10*time.Second, func() bool { return gauge(t, reg, "portico_tunnels_open", "route", "chat") == 0 }, "tunnels closed")
	if got := gauge(t, reg, "portico_tunnels_closed_total", "route", "chat", "reason", "ended"); got != 2 {
		t.Fatalf("closed{reason=ended} = %v", got)
	}

	// The same gateway still tunnels HTTP/1.1 upgrades, counted apart.
	c, status := dialWS(t, "ws://"+addr+"/chat", withKey)
	if status != http.StatusTooManyRequests || c != nil {
		t.Fatalf("HTTP/1.1 handshake past the limit: %d", status)
	}
}

// TestWebSocketOverHTTP2Limits: the tunnel limits hold on HTTP/2 streams:
// a silent tunnel is closed after the route's idle timeout, a busy one at
// the end of its lifetime, and the stream ends for the client.
func TestWebSocketOverHTTP2Limits(t *testing.T) {
	up := newWSEcho(t)
	cfg := &config.Config{
		Services: []config.Service{{Name: "ws", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{
			{Name: "idle", Paths: []string{"/idle"}, Service: "ws", TunnelIdleTimeout: config.Duration(300 * time.Millisecond)},
			{Name: "short", Paths: []string{"/short"}, Service: "ws", TunnelMaxLifetime: config.Duration(time.Second)},
		},
	}
	reg := prometheus.NewRegistry()
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(reg),
		Limits: Limits{TunnelIdleTimeout: time.Hour, TunnelMaxLifetime: time.Hour}})
	applyCfg(t, h, 1, cfg)
	addr := h2cServer(t, h)
	tr := h2Transport(t, addr)

	idle, _ := dialWSH2(t, tr, "http://"+addr+"/idle", nil)
	echo(t, idle, websocket.MessageText, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := idle.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("idle tunnel: %v; want it closed by the gateway", err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return gauge(t, reg, "portico_tunnels_closed_total", "route", "idle", "reason", "idle") == 1
	}, "closed for idleness")

	short, _ := dialWSH2(t, tr, "http://"+addr+"/short", nil)
	var cut error
	for cut == nil {
		if ctx.Err() != nil {
			t.Fatal("a busy tunnel outlived its 1s lifetime by 9s")
		}
		if cut = short.Write(ctx, websocket.MessageText, []byte("ping")); cut == nil {
			_, _, cut = short.Read(ctx)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return gauge(t, reg, "portico_tunnels_closed_total", "route", "short", "reason", "lifetime") == 1
	}, "closed at its lifetime")
	// The HTTP/2 connection outlives its tunnels: another one opens on it.
	again, _ := dialWSH2(t, tr, "http://"+addr+"/idle", nil)
	if got := echo(t, again, websocket.MessageText, "y"); got != ":y" {
		t.Fatalf("after the cut tunnels: %q", got)
	}
}

// TestWebSocketOverHTTP2Refusals: the client is told 200 only for a
// service that really switched to WebSocket and answered the key the
// gateway sent it. A service that answers 101 with a wrong
// Sec-WebSocket-Accept, or a plain 200 (it ignored the Upgrade), gets the
// client a 502; a service's own refusal reaches the client as it is; an
// extended CONNECT for another protocol than websocket is 501.
func TestWebSocketOverHTTP2Refusals(t *testing.T) {
	wrongAccept := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Sec-WebSocket-Key") == "" || r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "not a WebSocket handshake", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		brw.Flush()
		io.Copy(io.Discard, bufio.NewReader(conn))
	}))
	t.Cleanup(wrongAccept.Close)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello, no WebSocket here")
	}))
	t.Cleanup(plain.Close)
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "go away", http.StatusForbidden)
	}))
	t.Cleanup(refusing.Close)
	cfg := &config.Config{
		Services: []config.Service{
			{Name: "wrong", Targets: []config.Target{{URL: wrongAccept.URL}}},
			{Name: "plain", Targets: []config.Target{{URL: plain.URL}}},
			{Name: "refusing", Targets: []config.Target{{URL: refusing.URL}}},
		},
		Routes: []*config.Route{
			{Name: "wrong", Paths: []string{"/wrong"}, Service: "wrong"},
			{Name: "plain", Paths: []string{"/plain"}, Service: "plain"},
			{Name: "refusing", Paths: []string{"/refusing"}, Service: "refusing"},
		},
	}
	reg := prometheus.NewRegistry()
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(reg)})
	applyCfg(t, h, 1, cfg)
	addr := h2cServer(t, h)
	tr := h2Transport(t, addr)
	for _, tc := range []struct {
		path        string
		status      int
		contentType string
	}{
		{"/wrong", http.StatusBadGateway, "application/problem+json"},
		{"/plain", http.StatusBadGateway, "application/problem+json"},
		{"/refusing", http.StatusForbidden, "text/plain; charset=utf-8"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c, resp := dialWSH2(t, tr, "http://"+addr+tc.path, nil)
			if c != nil {
				t.Fatal("a tunnel opened")
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != tc.contentType {
				t.Fatalf("%d %q %s, want %d %q", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.contentType)
			}
		})
	}
	if got := gauge(t, reg, "portico_tunnels_opened_total", "route", "plain"); got != 0 {
		t.Fatalf("a tunnel was counted for a plain answer: %v", got)
	}

	// Another protocol than websocket: not tunnelled.
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodConnect, "http://"+addr+"/plain", pr)
	req.Header.Set(":protocol", "connect-udp")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotImplemented || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf(":protocol connect-udp: %d %s", resp.StatusCode, body)
	}
}

// TestHTTP2ProtocolPseudoHeader: raw HTTP/2 frames (x/net's Framer) to the
// gateway's h2c listener. Its SETTINGS announce extended CONNECT
// (SETTINGS_ENABLE_CONNECT_PROTOCOL = 1, RFC 8441 §3); a :protocol on a
// GET, which RFC 8441 §4 does not allow and net/http's server passes on
// as a header, is refused 400 before it reaches any service (where it
// would fail as a header no HTTP/1.1 request can carry, and count
// against the service's breaker).
func TestHTTP2ProtocolPseudoHeader(t *testing.T) {
	s := &seen{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.hits.Add(1) }))
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Services: []config.Service{{Name: "app", Targets: []config.Target{{URL: up.URL}}}},
		Routes:   []*config.Route{{Name: "app", Paths: []string{"/*"}, Service: "app"}},
	}
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(prometheus.NewRegistry())})
	applyCfg(t, h, 1, cfg)
	addr := h2cServer(t, h)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/x"}, {":authority", addr}, {":protocol", "websocket"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: buf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	announced := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				v, ok := f.Value(http2.SettingEnableConnectProtocol)
				announced = ok && v == 1
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if !announced {
				t.Fatal("the server's SETTINGS do not announce extended CONNECT")
			}
			if got := f.PseudoValue("status"); got != "400" {
				t.Fatalf(":protocol on a GET: status %s, want 400", got)
			}
			if s.hits.Load() != 0 {
				t.Fatal("the request reached the service")
			}
			return
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset (%v) instead of a 400", f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY (%v) instead of a 400", f.ErrCode)
		}
	}
}
