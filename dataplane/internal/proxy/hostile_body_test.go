package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// Hostile clients, round two: slow bodies, spoofed headers, tunnels and the
// exact header limit. Every test speaks raw bytes to a real listener built
// by Handler.Server, as the data plane's.

// rawUpstream is an HTTP/1.1 server written by hand, so that it records
// header names exactly as they arrive. A request with an Upgrade header
// gets 101 and an echo of every line it then sends; any other gets 200.
type rawUpstream struct {
	addr string
	mu   sync.Mutex
	// names of the header fields of each request, as sent; upgrades are
	// the Upgrade values seen (one per request, "" when absent).
	names    [][]string
	upgrades []string
}

func newRawUpstream(t *testing.T) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { u.serve(c) })
		}
	})
	return u
}

func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		return
	}
	var names []string
	upgrade := ""
	length := 0
	for range 1000 {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		name, value, _ := strings.Cut(line, ":")
		names = append(names, name)
		switch strings.ToLower(name) {
		case "upgrade":
			upgrade = strings.TrimSpace(value)
		case "content-length":
			_, _ = fmt.Sscan(strings.TrimSpace(value), &length)
		}
	}
	_, _ = io.CopyN(io.Discard, br, int64(length))
	u.mu.Lock()
	u.names = append(u.names, names)
	u.upgrades = append(u.upgrades, upgrade)
	u.mu.Unlock()
	if upgrade == "" {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		return
	}
	_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+upgrade+"\r\n\r\n")
	for range 10_000 {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, "echo:"+line); err != nil {
			return
		}
	}
}

// last returns the header names and Upgrade value of the last request.
func (u *rawUpstream) last(t *testing.T) ([]string, string) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.names) == 0 {
		t.Fatal("the upstream got no request")
	}
	return u.names[len(u.names)-1], u.upgrades[len(u.upgrades)-1]
}

func (u *rawUpstream) requests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.names)
}

// slowClient sends the head of a POST announcing a 1000-byte body and the
// first 10 bytes of it, then either stalls or (dribble) sends one more byte
// every 50ms; it returns the status of the answer and whether the
// connection was closed after it.
func slowClient(addr, path string, dribble bool) (int, bool, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, false, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n0123456789"); err != nil {
		return 0, false, err
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }) }
	defer halt()
	if dribble {
		wg.Go(func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for range 400 {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		})
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	halt() // answered: a client stops sending
	if err != nil {
		return 0, false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/problem+json" && resp.StatusCode >= 400 {
		return resp.StatusCode, false, fmt.Errorf("answer %d is %q, not problem+json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	_, err = br.ReadByte() // the server closes: EOF (or a reset) before the 20s deadline
	var ne net.Error
	closed := err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return resp.StatusCode, closed, nil
}

// slowEnv is a gateway with one service (two recordingUpstreams, default
// breaker and outlier detection, attempt timeout attempt) behind route
// /slow (timeout routeTimeout) and /capped (max_in_flight 3).
type slowEnv struct {
	addr string
	h    *Handler
}

func slowGateway(t *testing.T, lim Limits, routeTimeout, attempt time.Duration) *slowEnv {
	t.Helper()
	a, _ := recordingUpstream(t, "a")
	b, _ := recordingUpstream(t, "b")
	cfg := &config.Config{
		Services: []config.Service{{Name: "svc", Targets: []config.Target{{URL: a.URL}, {URL: b.URL}}, Timeout: config.Duration(attempt)}},
		Routes: []*config.Route{
			{Name: "slow", Paths: []string{"/slow"}, Service: "svc", Timeout: config.Duration(routeTimeout)},
			{Name: "capped", Paths: []string{"/capped"}, Service: "svc", MaxInFlight: 3},
		},
	}
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(prometheus.NewRegistry()), Limits: lim})
	applyCfg(t, h, 1, cfg)
	return &slowEnv{addr: trafficServer(t, h, 0), h: h}
}

// TestHostileSlowBodiesSpareTheBreaker: thirty clients that send headers
// and then stall or dribble their bodies, while a timeout shorter than the
// body deadlines fires: the route's, or the service's attempt timeout. Each
// is answered 408 (the client was late, not the service) and its
// connection is closed; none is counted by the circuit breaker, outlier
// detection or the retry budget, so the breaker stays closed, both
// instances stay in the pool and a legitimate client gets 200. Default
// limits: what a user gets.
func TestHostileSlowBodiesSpareTheBreaker(t *testing.T) {
	tests := []struct {
		name                  string
		routeTimeout, attempt time.Duration
	}{
		{"route timeout", 300 * time.Millisecond, 0},
		{"attempt timeout", 0, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := slowGateway(t, Limits{}, tt.routeTimeout, tt.attempt)
			type result struct {
				status int
				closed bool
				err    error
			}
			results := make([]result, 30)
			var wg sync.WaitGroup
			for i := range results {
				wg.Go(func() {
					s, c, err := slowClient(env.addr, "/slow", i%2 == 1)
					results[i] = result{s, c, err}
				})
			}
			wg.Wait()
			for i, r := range results {
				if r.err != nil || r.status != http.StatusRequestTimeout || !r.closed {
					t.Errorf("slow client %d: status %d, closed %v, err %v; want 408 and a closed connection", i, r.status, r.closed, r.err)
				}
			}
			for _, u := range env.h.Table().Upstreams() {
				if u.Breaker != "closed" || u.Available != 2 {
					t.Errorf("after slow clients: breaker %s, %d of %d instances available; want closed, 2", u.Breaker, u.Available, u.Endpoints)
				}
			}
			res := rawRequest(t, env.addr, "POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", false)
			if res.status != http.StatusOK {
				t.Fatalf("a legitimate client after the slow ones: %d %q, want 200", res.status, res.body)
			}
		})
	}
}

// TestHostileStalledBodyCutOff: with the body deadlines set (small, through
// the same Limits the flags fill), an upload that stalls, one that
// dribbles under the minimum rate, and a chunked one that stalls mid-chunk
// are each cut off with 408 and a closed connection, although the route
// timeout (the default 30s) is far away. A client that keeps sending gets
// its 200.
func TestHostileStalledBodyCutOff(t *testing.T) {
	t.Run("stalled", func(t *testing.T) {
		env := slowGateway(t, Limits{BodyReadTimeout: 300 * time.Millisecond}, 0, 0)
		status, closed, err := slowClient(env.addr, "/slow", false)
		if err != nil || status != http.StatusRequestTimeout || !closed {
			t.Fatalf("status %d, closed %v, err %v; want 408 and a closed connection", status, closed, err)
		}
	})
	t.Run("under the minimum rate", func(t *testing.T) {
		// 20 bytes/s dribbled against 100 bytes/s required after 200ms.
		env := slowGateway(t, Limits{BodyMinRate: 100, BodyMinRateGrace: 200 * time.Millisecond}, 0, 0)
		status, closed, err := slowClient(env.addr, "/slow", true)
		if err != nil || status != http.StatusRequestTimeout || !closed {
			t.Fatalf("status %d, closed %v, err %v; want 408 and a closed connection", status, closed, err)
		}
	})
	t.Run("chunked, stalled mid-chunk", func(t *testing.T) {
		env := slowGateway(t, Limits{BodyReadTimeout: 300 * time.Millisecond}, 0, 0)
		res := rawRequest(t, env.addr, "POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc", true)
		if res.status != http.StatusRequestTimeout || !res.closed {
			t.Fatalf("status %d %q, closed %v; want 408 and a closed connection", res.status, res.body, res.closed)
		}
	})
	t.Run("a client that keeps sending", func(t *testing.T) {
		env := slowGateway(t, Limits{BodyReadTimeout: 300 * time.Millisecond, BodyMinRate: 100, BodyMinRateGrace: 200 * time.Millisecond}, 0, 0)
		res := rawRequest(t, env.addr, "POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\n\r\n"+strings.Repeat("x", 4096), false)
		if res.status != http.StatusOK {
			t.Fatalf("status %d %q, want 200", res.status, res.body)
		}
	})
	t.Run("the route timeout bounds the upload", func(t *testing.T) {
		env := slowGateway(t, Limits{}, 300*time.Millisecond, 0)
		status, closed, err := slowClient(env.addr, "/slow", true)
		if err != nil || status != http.StatusRequestTimeout || !closed {
			t.Fatalf("status %d, closed %v, err %v; want 408 and a closed connection", status, closed, err)
		}
	})
}

// TestHostileIdleSocketsHoldNoSlot: three connections that send the head
// of a POST and nothing more cannot hold a max_in_flight: 3 route: a slot
// is taken once the body's first byte is in.
func TestHostileIdleSocketsHoldNoSlot(t *testing.T) {
	env := slowGateway(t, Limits{}, 0, 0)
	for range 3 {
		conn, err := net.Dial("tcp", env.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, "POST /capped HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return promtestutil.ToFloat64(env.h.metrics.inFlight) == 3 },
		"the three idle requests in the handler")
	for _, req := range []string{
		"GET /capped HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /capped HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
	} {
		if res := rawRequest(t, env.addr, req, false); res.status != http.StatusOK {
			t.Fatalf("%q with three idle sockets on the route: %d %q, want 200", strings.Fields(req)[0], res.status, res.body)
		}
	}
}

// headerEnv is a gateway in front of a raw upstream: /public/* open,
// /private/* behind an API key forwarding the consumer's sub claim as
// X-User-Sub, /ws/* allowing the "echo" upgrade besides websocket.
type headerEnv struct {
	addr string
	up   *rawUpstream
	key  string
}

func headerGateway(t *testing.T, lim Limits) *headerEnv {
	t.Helper()
	up := newRawUpstream(t)
	key, id, hash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Services:  []config.Service{{Name: "svc", Targets: []config.Target{{URL: "http://" + up.addr}}}},
		Consumers: []config.Consumer{{Name: "alice", APIKeys: []config.APIKey{{ID: id, Hash: hash, Prefix: apikey.Prefix(key)}}}},
		Routes: []*config.Route{
			{Name: "public", Paths: []string{"/public/*"}, Service: "svc"},
			{Name: "private", Paths: []string{"/private/*"}, Service: "svc",
				Auth: &config.RouteAuth{APIKey: true, ForwardClaims: map[string]string{"sub": "X-User-Sub"}}},
			{Name: "ws", Paths: []string{"/ws/*"}, Service: "svc", UpgradeProtocols: []string{"echo"}},
		},
	}
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(prometheus.NewRegistry()), Limits: lim})
	applyCfg(t, h, 1, cfg)
	return &headerEnv{addr: trafficServer(t, h, 0), up: up, key: key}
}

// TestHostileHeaderSpoofing: the upstream sees none of the headers a
// client may not speak for, whatever the route: underscore spellings of
// gateway headers (X_Consumer_Name, Transfer_Encoding...), any route's
// forwarded-claim header (X-User-Sub, forwarded by /private, forged on
// /public), and the forwarding headers the gateway does not write.
// Underscore names are all dropped by default; with AllowUnderscoreHeaders
// only those that read as a gateway header are.
func TestHostileHeaderSpoofing(t *testing.T) {
	forged := "X_Consumer_Name: root\r\nX_Consumer_Groups: admins\r\nX_Auth_Method: jwt\r\nTransfer_Encoding: chunked\r\n" +
		"X_Forwarded_For: 6.6.6.6\r\nX_User_Sub: root\r\nX-User-Sub: root\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Port: 443\r\n" +
		"X-Forwarded-Prefix: /admin\r\nX-Forwarded-Ssl: on\r\nX_Custom_Thing: 1\r\nX-Custom: 1\r\n"
	forbidden := []string{"x-consumer-name", "x-consumer-groups", "x-auth-method", "transfer-encoding", "x-user-sub",
		"x-real-ip", "x-forwarded-port", "x-forwarded-prefix", "x-forwarded-ssl"}
	tests := []struct {
		name, path string
		allow      bool
		want       []string // lower-cased names the upstream must see
		key        bool     // send alice's API key
	}{
		{"public route, default", "/public/x", false, []string{"x-custom"}, false},
		// An API key carries no sub claim: X-User-Sub stays absent.
		{"private route, default", "/private/x", false, []string{"x-custom", "x-consumer-name", "x-auth-method"}, true},
		{"public route, underscores allowed", "/public/x", true, []string{"x-custom", "x_custom_thing"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := headerGateway(t, Limits{AllowUnderscoreHeaders: tt.allow})
			extra := forged
			if tt.key {
				extra += "X-Api-Key: " + env.key + "\r\n"
			}
			res := rawRequest(t, env.addr, "GET "+tt.path+" HTTP/1.1\r\nHost: a\r\n"+extra+"\r\n", false)
			if res.status != http.StatusOK {
				t.Fatalf("status %d %q", res.status, res.body)
			}
			names, _ := env.up.last(t)
			count := map[string]int{}
			for _, n := range names {
				count[strings.ToLower(n)]++
				if strings.Contains(n, "_") && !tt.allow {
					t.Errorf("upstream got %q, a name with an underscore", n)
				}
				if dashed := strings.ReplaceAll(strings.ToLower(n), "_", "-"); strings.Contains(n, "_") && (strings.HasPrefix(dashed, "x-consumer-") ||
					dashed == "transfer-encoding" || dashed == "x-forwarded-for" || dashed == "x-user-sub" || dashed == "x-auth-method") {
					t.Errorf("upstream got %q, which reads as a gateway header", n)
				}
			}
			for _, w := range tt.want {
				if count[w] != 1 {
					t.Errorf("upstream got %q %d times, want once (all: %q)", w, count[w], names)
				}
			}
			for _, f := range forbidden {
				if count[f] != 0 && !slices.Contains(tt.want, f) {
					t.Errorf("upstream got the client's %q (all: %q)", f, names)
				}
			}
		})
	}
}

// TestHostileDuplicateCredentials: two Authorization headers (the gateway
// would check one, a service might read the other) are refused with 400 on
// every route, as are two API-key headers on a route that reads one.
func TestHostileDuplicateCredentials(t *testing.T) {
	env := headerGateway(t, Limits{})
	tests := []struct{ name, req string }{
		{"two Authorization, open route", "GET /public/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n"},
		{"two Authorization, key route", "GET /private/x HTTP/1.1\r\nHost: a\r\nX-Api-Key: " + env.key + "\r\nAuthorization: Basic a\r\nAuthorization: Basic b\r\n\r\n"},
		{"two API keys", "GET /private/x HTTP/1.1\r\nHost: a\r\nX-Api-Key: " + env.key + "\r\nX-Api-Key: other\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := env.up.requests()
			res := rawRequest(t, env.addr, tt.req, false)
			if res.status != http.StatusBadRequest || !strings.Contains(res.body, "ambiguous-credentials") {
				t.Fatalf("status %d %q, want 400 ambiguous-credentials", res.status, res.body)
			}
			if env.up.requests() != before {
				t.Fatal("the request reached the upstream")
			}
		})
	}
	if res := rawRequest(t, env.addr, "GET /public/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer a\r\n\r\n", false); res.status != 200 {
		t.Fatalf("one Authorization header: %d, want 200", res.status)
	}
}

// TestHostileUpgradeAllowList: a tunnel opens for websocket and for the
// route's upgrade_protocols only; any other Upgrade header is dropped and
// the request is an ordinary one (the upstream never sees the Upgrade).
func TestHostileUpgradeAllowList(t *testing.T) {
	env := headerGateway(t, Limits{})
	tests := []struct {
		path, upgrade string
		status        int
	}{
		{"/public/x", "websocket", 101},
		{"/public/x", "WebSocket", 101},
		{"/public/x", "echo", 200},
		{"/public/x", "h2c", 200},
		{"/public/x", "websocket, echo", 200},
		{"/ws/x", "echo", 101},
		{"/ws/x", "websocket", 101},
		{"/ws/x", "foo", 200},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.upgrade, func(t *testing.T) {
			res := rawRequest(t, env.addr, "GET "+tt.path+" HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: "+tt.upgrade+"\r\n\r\n", false)
			if res.status != tt.status {
				t.Fatalf("status %d %q, want %d", res.status, res.body, tt.status)
			}
			if _, up := env.up.last(t); (up != "") != (tt.status == 101) {
				t.Fatalf("upstream saw Upgrade %q", up)
			}
		})
	}
}

// TestHostileTunnelLimits: an upgraded connection is closed when idle for
// the tunnel idle timeout, and when older than its maximum lifetime even
// while busy.
func TestHostileTunnelLimits(t *testing.T) {
	open := func(t *testing.T, lim Limits) (net.Conn, *bufio.Reader) {
		env := headerGateway(t, lim)
		conn, err := net.Dial("tcp", env.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.WriteString(conn, "GET /ws/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		return conn, br
	}
	t.Run("idle", func(t *testing.T) {
		conn, br := open(t, Limits{TunnelIdleTimeout: 300 * time.Millisecond})
		fmt.Fprint(conn, "ping\n")
		if line, err := br.ReadString('\n'); err != nil || line != "echo:ping\n" {
			t.Fatalf("echo = %q, %v", line, err)
		}
		_, err := br.ReadByte()
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("idle tunnel still open (%v)", err)
		}
	})
	t.Run("lifetime", func(t *testing.T) {
		conn, br := open(t, Limits{TunnelMaxLifetime: 500 * time.Millisecond})
		// A busy client: a round trip every 20ms.
		pace := time.NewTicker(20 * time.Millisecond)
		defer pace.Stop()
		for i := range 300 {
			<-pace.C
			if _, err := fmt.Fprintf(conn, "ping %d\n", i); err != nil {
				return
			}
			if _, err := br.ReadString('\n'); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("busy tunnel still open at the test's deadline")
				}
				return
			}
		}
		t.Fatal("a busy tunnel outlived its maximum lifetime by 300 round trips")
	})
}

// TestHostileHeaderBlockLimit: the request line and headers may take 64
// KiB, exactly: one byte more is 431, including on a request pipelined
// behind another, which net/http's own count does not see whole.
func TestHostileHeaderBlockLimit(t *testing.T) {
	env := hostileGateway(t, 0)
	sized := func(n int) string {
		head := "GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: "
		return head + strings.Repeat("a", n-len(head)-4) + "\r\n\r\n"
	}
	tests := []struct {
		name   string
		req    string
		status int
	}{
		{"64 KiB", sized(64 << 10), 200},
		{"64 KiB + 1", sized(64<<10 + 1), 431},
		{"66 KB", sized(66_000), 431},
		{"66 KB pipelined", sized(100) + sized(66_000), 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", env.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			go func() { _, _ = io.WriteString(conn, tt.req) }()
			br := bufio.NewReader(conn)
			var last int
			for range strings.Count(tt.req, "GET ") {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("after %d: %v", last, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				last = resp.StatusCode
			}
			if last != tt.status {
				t.Fatalf("status %d, want %d", last, tt.status)
			}
		})
	}
}

// BenchmarkRequestHeaderChecks is the per-request cost of the header
// sanitiser (and header-block measure) on a typical browser request, against a
// table whose routes forward 100 claim headers.
func BenchmarkRequestHeaderChecks(b *testing.B) {
	routes := make([]*Route, 100)
	for i := range routes {
		routes[i] = &Route{chain: stage.NewChain(auth.CompileRoute(&config.RouteAuth{JWT: true,
			ForwardClaims: map[string]string{"c": fmt.Sprintf("X-Claim-%d", i)}}, nil))}
	}
	stripped := compileStripped(routes)
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET /api/v1/items?page=2 HTTP/1.1\r\nHost: shop.example\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\nAccept: application/json\r\n" +
		"Accept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nReferer: https://shop.example/\r\n" +
		"Authorization: Bearer abc.def.ghi\r\nCookie: a=b; c=d\r\nSec-Fetch-Mode: cors\r\nX-Request-Id: 123\r\n\r\n")))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if sanitize(r, stripped, false) > DefaultMaxHeaderBytes {
			b.Fatal("too large")
		}
	}
}

// TestSlowClientDoesNotHideServiceFailures: only timeouts are weighed
// against a late client. A service that drops the connection while a
// client is (slowly) uploading failed on its own: the client gets 502 and
// the breaker counts it, so a slow client cannot mask a broken service.
func TestSlowClientDoesNotHideServiceFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the head, then hang up without an answer.
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for range 100 {
					if line, err := br.ReadString('\n'); err != nil || line == "\r\n" {
						return
					}
				}
			})
		}
	})
	cfg := &config.Config{
		Services: []config.Service{{Name: "svc", Targets: []config.Target{{URL: "http://" + ln.Addr().String()}},
			CircuitBreaker: &config.CircuitBreaker{MinRequests: 3, FailureRatio: 0.5}}},
		Routes: []*config.Route{{Name: "slow", Paths: []string{"/slow"}, Service: "svc"}},
	}
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(prometheus.NewRegistry())})
	applyCfg(t, h, 1, cfg)
	addr := trafficServer(t, h, 0)
	for i := range 3 {
		status, _, err := slowClient(addr, "/slow", true)
		if err != nil || status != http.StatusBadGateway {
			t.Fatalf("slow client %d: %d (%v), want 502", i, status, err)
		}
	}
	if st := h.Table().Upstreams()[0].Breaker; st != "open" {
		t.Fatalf("breaker %s after three service failures, want open", st)
	}
}

// TestBodyDeadline: the deadline of the next body read is the per-read
// timeout, or sooner the moment the client falls under the minimum rate,
// measured over the time the gateway spent waiting for it (not over the
// time an upstream took to read).
func TestBodyDeadline(t *testing.T) {
	lim := Limits{BodyReadTimeout: 15 * time.Second, BodyMinRate: 500, BodyMinRateGrace: 10 * time.Second}
	now := time.Unix(1_000_000, 0)
	tests := []struct {
		name   string
		lim    Limits
		read   int64
		waited time.Duration
		want   time.Duration
	}{
		{"fresh: grace, under the read timeout", lim, 0, 0, 10 * time.Second},
		{"half the grace waited", lim, 0, 5 * time.Second, 5 * time.Second},
		{"5000 bytes earn 10s", lim, 5000, 12 * time.Second, 8 * time.Second},
		{"far ahead: the read timeout", lim, 1 << 20, 20 * time.Second, 15 * time.Second},
		{"behind: already due", lim, 100, 30 * time.Second, -19*time.Second - 800*time.Millisecond},
		{"rate off", Limits{BodyReadTimeout: 15 * time.Second, BodyMinRate: -1}, 0, time.Hour, 15 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &clientBody{lim: &tt.lim, read: tt.read}
			b.waited.Store(int64(tt.waited))
			if got := b.deadline(now).Sub(now); got != tt.want {
				t.Fatalf("deadline in %v, want %v", got, tt.want)
			}
		})
	}
}
