package proxy

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// wsEcho is a real WebSocket server (coder/websocket) echoing every
// message, prefixed with the consumer the gateway forwarded at the
// handshake. It counts handshakes that reached it.
type wsEcho struct {
	*httptest.Server
	handshakes atomic.Int64
}

func newWSEcho(t testing.TB) *wsEcho {
	t.Helper()
	e := &wsEcho{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.handshakes.Add(1)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(4 << 20)
		who := r.Header.Get("X-Consumer-Name")
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(who+":"), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(e.Close)
	return e
}

// dialWS opens a WebSocket through the gateway; the status is the
// handshake's answer when it was refused.
func dialWS(t testing.TB, url string, hdr http.Header) (*websocket.Conn, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, resp.StatusCode
}

func echo(t testing.TB, c *websocket.Conn, typ websocket.MessageType, msg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	gotTyp, got, err := c.Read(ctx)
	if err != nil || gotTyp != typ {
		t.Fatalf("read: %v (type %v)", err, gotTyp)
	}
	return string(got)
}

// TestWebSocketThroughTheGateway: a real WebSocket client and server
// (coder/websocket) through the proxy over HTTP/1.1. The handshake runs the
// route's chain like any request: no key → 401, a refused handshake never
// reaches the service; with a key the identity reaches it; the rate limit
// counts handshakes (429 past it) while open connections carry on.
// Text, binary and a 1 MiB message echo; metrics count the tunnels.
func TestWebSocketThroughTheGateway(t *testing.T) {
	up := newWSEcho(t)
	key, id, hash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Services:  []config.Service{{Name: "ws", Targets: []config.Target{{URL: up.URL}}}},
		Consumers: []config.Consumer{{Name: "alice", APIKeys: []config.APIKey{{ID: id, Hash: hash, Prefix: apikey.Prefix(key)}}}},
		Routes: []*config.Route{
			{Name: "chat", Paths: []string{"/chat"}, Service: "ws", Auth: &config.RouteAuth{APIKey: true},
				RateLimit: &config.RateLimit{Limit: 2, Window: config.Duration(time.Hour), Key: "consumer"}},
		},
	}
	reg := prometheus.NewRegistry()
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(reg)})
	applyCfg(t, h, 1, cfg)
	addr := trafficServer(t, h, 0)
	url := "ws://" + addr + "/chat"

	if _, status := dialWS(t, url, nil); status != http.StatusUnauthorized {
		t.Fatalf("handshake without a key: %d, want 401", status)
	}
	if _, status := dialWS(t, url, http.Header{"X-Api-Key": {"pk_wrong"}}); status != http.StatusUnauthorized {
		t.Fatalf("handshake with a wrong key: %d, want 401", status)
	}
	if n := up.handshakes.Load(); n != 0 {
		t.Fatalf("refused handshakes reached the service: %d", n)
	}
	withKey := http.Header{"X-Api-Key": {key}}
	a, status := dialWS(t, url, withKey)
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("handshake with a key: %d", status)
	}
	if got := echo(t, a, websocket.MessageText, "hello"); got != "alice:hello" {
		t.Fatalf("text echo %q", got)
	}
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	a.SetReadLimit(2 << 20)
	if got := echo(t, a, websocket.MessageBinary, big); got != "alice:"+big {
		t.Fatalf("binary echo: %d bytes", len(got))
	}
	b, status := dialWS(t, url, withKey)
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("second handshake: %d", status)
	}
	if _, status := dialWS(t, url, withKey); status != http.StatusTooManyRequests {
		t.Fatalf("third handshake within the limit of 2: %d, want 429", status)
	}
	// Messages on open connections are not counted against the limit.
	for i := range 5 {
		if got := echo(t, b, websocket.MessageText, "m"); got != "alice:m" {
			t.Fatalf("message %d on the second connection: %q", i, got)
		}
	}
	if n := up.handshakes.Load(); n != 2 {
		t.Fatalf("handshakes at the service: %d, want 2", n)
	}
	if got := gauge(t, reg, "portico_tunnels_opened_total", "route", "chat", "protocol", "websocket"); got != 2 {
		t.Fatalf("portico_tunnels_opened_total = %v", got)
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
}

// TestWebSocketRouteLimits: a route's tunnel_idle_timeout and
// tunnel_max_lifetime tighten the node's (here an hour): a silent
// connection is cut for idleness, a busy one at the end of its lifetime,
// and the metric says which. A route without them keeps the node's.
func TestWebSocketRouteLimits(t *testing.T) {
	up := newWSEcho(t)
	cfg := &config.Config{
		Services: []config.Service{{Name: "ws", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{
			{Name: "idle", Paths: []string{"/idle"}, Service: "ws", TunnelIdleTimeout: config.Duration(300 * time.Millisecond)},
			{Name: "short", Paths: []string{"/short"}, Service: "ws", TunnelMaxLifetime: config.Duration(time.Second)},
			{Name: "node", Paths: []string{"/node"}, Service: "ws"},
		},
	}
	reg := prometheus.NewRegistry()
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(reg),
		Limits: Limits{TunnelIdleTimeout: time.Hour, TunnelMaxLifetime: time.Hour}})
	applyCfg(t, h, 1, cfg)
	addr := trafficServer(t, h, 0)

	// Silence past the route's idle timeout: the gateway closes the
	// tunnel, long before the client's own 10 s deadline.
	idle, _ := dialWS(t, "ws://"+addr+"/idle", nil)
	echo(t, idle, websocket.MessageText, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := idle.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("idle tunnel: %v; want it closed by the gateway", err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return gauge(t, reg, "portico_tunnels_closed_total", "route", "idle", "reason", "idle") == 1
	}, "closed for idleness")

	// Busy all along: cut at the end of its lifetime all the same.
	short, _ := dialWS(t, "ws://"+addr+"/short", nil)
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

	// The node's hour applies to a route without limits: still open.
	node, _ := dialWS(t, "ws://"+addr+"/node", nil)
	if got := echo(t, node, websocket.MessageText, "y"); got != ":y" {
		t.Fatalf("node route echo %q", got)
	}
	if got := gauge(t, reg, "portico_tunnels_open", "route", "node"); got != 1 {
		t.Fatalf("node route open = %v", got)
	}
}

// TestWebSocketToTLSUpstream: a WebSocket tunnel to a wss:// service
// (https target, the service's own tls.ca): the upgrade goes over the
// service's TLS transport and the echo works both ways; without the CA the
// handshake is refused (502), never sent unverified.
func TestWebSocketToTLSUpstream(t *testing.T) {
	var handshakes atomic.Int64
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handshakes.Add(1)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("tls:"), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(up.Close)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}))
	for _, tc := range []struct {
		name   string
		tls    *config.ServiceTLS
		status int
	}{
		{"the service's CA", &config.ServiceTLS{CA: caPEM}, http.StatusSwitchingProtocols},
		{"system roots only", nil, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{
				Services: []config.Service{{Name: "ws", Targets: []config.Target{{URL: up.URL}}, TLS: tc.tls,
					Retries: &config.Retries{Attempts: 1}}},
				Routes: []*config.Route{{Name: "ws", Paths: []string{"/ws"}, Service: "ws"}},
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(prometheus.NewRegistry())})
			applyCfg(t, h, 1, cfg)
			addr := trafficServer(t, h, 0)
			before := handshakes.Load()
			c, status := dialWS(t, "ws://"+addr+"/ws", nil)
			if status != tc.status {
				t.Fatalf("handshake %d, want %d", status, tc.status)
			}
			if c == nil {
				if handshakes.Load() != before {
					t.Fatal("the unverified upstream saw the handshake")
				}
				return
			}
			if got := echo(t, c, websocket.MessageText, "hi"); got != "tls:hi" {
				t.Fatalf("echo %q", got)
			}
		})
	}
}

// gauge reads one counter or gauge of reg by its labels (0 when absent).
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
