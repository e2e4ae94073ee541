package proxy

import (
	"bufio"
	"encoding/json"
	"errors"
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

	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// The data plane under hostile HTTP/1.1: every test speaks raw bytes over
// TCP to a real listener, because net/http's client refuses to produce most
// of these requests.

// trafficServer serves h on loopback as the data plane does (h.Server: the
// limits a user gets by default, or those h was built with);
// readHeaderTimeout, when not 0, replaces the header timeout. It returns
// the address.
func trafficServer(t *testing.T, h *Handler, readHeaderTimeout time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := h.Server(discardLog())
	if readHeaderTimeout != 0 {
		srv.ReadHeaderTimeout = readHeaderTimeout
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// seen is what a hostile-test upstream recorded of the requests it got.
type seen struct {
	hits atomic.Int64
	// done counts handlers that finished, so a test can wait for all of
	// them rather than sleep.
	done atomic.Int64
	// posted counts POSTs whose body the upstream read to its end.
	posted atomic.Int64
	mu     sync.Mutex
	last   *http.Request
	body   []byte
	err    error
}

func (s *seen) lastRequest() (*http.Request, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.body, s.err
}

// recordingUpstream counts requests and keeps the last one with its body,
// read to the end (or to the error that ended it).
func recordingUpstream(t *testing.T, name string) (*httptest.Server, *seen) {
	t.Helper()
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		defer s.done.Add(1)
		body, err := io.ReadAll(r.Body)
		if err == nil && r.Method == http.MethodPost {
			s.posted.Add(1)
		}
		s.mu.Lock()
		s.last, s.body, s.err = r, body, err
		s.mu.Unlock()
		w.Header().Set("X-Upstream", name)
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(srv.Close)
	return srv, s
}

type hostileEnv struct {
	addr                 string // the gateway
	pub, admin, internal *seen
	key                  string // alice's API key, which opens /admin/*
}

func (e *hostileEnv) upstreamHits() int64 {
	return e.pub.hits.Load() + e.admin.hits.Load() + e.internal.hits.Load()
}

// hostileGateway builds a gateway with an open /public/*, an API-key
// /admin/* on another upstream, a route bound to host internal.example and
// a 1 KiB body limit on /public/upload.
func hostileGateway(t *testing.T, readHeaderTimeout time.Duration) *hostileEnv {
	t.Helper()
	pub, pubSeen := recordingUpstream(t, "public")
	adm, admSeen := recordingUpstream(t, "admin")
	internal, intSeen := recordingUpstream(t, "internal")
	key, id, hash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Services: []config.Service{
			{Name: "public", Targets: []config.Target{{URL: pub.URL}}},
			{Name: "admin", Targets: []config.Target{{URL: adm.URL}}},
			{Name: "internal", Targets: []config.Target{{URL: internal.URL}}},
		},
		Consumers: []config.Consumer{
			{Name: "alice", Groups: []string{"ops"}, APIKeys: []config.APIKey{{ID: id, Hash: hash, Prefix: apikey.Prefix(key)}}},
		},
		Routes: []*config.Route{
			{Name: "public", Paths: []string{"/public/*"}, Service: "public"},
			{Name: "upload", Paths: []string{"/public/upload"}, Service: "public", MaxBodyBytes: 1024},
			{Name: "admin", Paths: []string{"/admin/*"}, Service: "admin", Auth: &config.RouteAuth{APIKey: true}},
			{Name: "internal", Paths: []string{"/internal/*"}, Hosts: []string{"internal.example"}, Service: "internal"},
		},
	}
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(prometheus.NewRegistry())})
	applyCfg(t, h, 1, cfg)
	return &hostileEnv{
		addr: trafficServer(t, h, readHeaderTimeout),
		pub:  pubSeen, admin: admSeen, internal: intSeen,
		key: key,
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// rawResult is what came back for hand-written request bytes: the status of
// the first response (0 if none) and whether the server then closed the
// connection.
type rawResult struct {
	status int
	body   string
	closed bool
	err    error
}

// rawRequest writes req on a fresh connection and reads one response; with
// checkClose it then waits briefly to see whether the server closes the
// connection.
func rawRequest(t *testing.T, addr, req string, checkClose bool) rawResult {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		return rawResult{err: err}
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return rawResult{err: err, closed: true}
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	res := rawResult{status: resp.StatusCode, body: string(b)}
	if !checkClose {
		return res
	}
	// A connection the server keeps open would block here until the
	// deadline; one it closed reads EOF (or a reset) at once.
	_ = conn.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	_, err = br.ReadByte()
	var ne net.Error
	res.closed = err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return res
}

// TestHostileSmuggling sends requests whose framing two HTTP parsers could
// read differently. Each is refused before routing, the connection is
// closed, and nothing reaches an upstream: not the request, and not the tail
// smuggled inside its body.
func TestHostileSmuggling(t *testing.T) {
	env := hostileGateway(t, 0)
	smuggled := "GET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n"
	tests := []struct {
		name   string
		req    string
		status int
	}{
		{"two different content-lengths",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 34\r\n\r\n" + smuggled, 400},
		{"content-length list",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0, 34\r\n\r\n" + smuggled, 400},
		{"signed content-length",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: +34\r\n\r\n" + smuggled, 400},
		{"space before colon",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"chunked, identity",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"identity, chunked",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"gzip coding",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"two transfer-encoding fields",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"misspelled chunked",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"two host fields",
			"GET /public/x HTTP/1.1\r\nHost: a\r\nHost: internal.example\r\n\r\n", 400},
		{"leading whitespace before the first header",
			"GET /public/x HTTP/1.1\r\n Host: a\r\n\r\n", 400},
		{"NUL in a header value",
			"GET /public/x HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400},
		{"CR alone in a header value",
			"GET /public/x HTTP/1.1\r\nHost: a\r\nX-A: b\rContent-Length: 34\r\n\r\n" + smuggled, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := env.upstreamHits()
			res := rawRequest(t, env.addr, tt.req, true)
			if res.status != tt.status {
				t.Fatalf("status = %d (err %v, body %q), want %d", res.status, res.err, res.body, tt.status)
			}
			if !res.closed {
				t.Error("connection kept open after a refused request")
			}
			if n := env.upstreamHits() - before; n != 0 {
				t.Fatalf("%d request(s) reached an upstream", n)
			}
		})
	}
}

// TestHostileChunkFraming: a chunked body whose framing breaks after the
// headers. The gateway streams bodies, so the upstream has already been
// sent the headers when the bad chunk line is read; what must hold is that
// the upstream never receives a complete request, the client gets 400 (its
// fault, not the upstream's: no 502), the smuggled tail goes nowhere, and
// the service's breaker and outlier detection are not charged.
func TestHostileChunkFraming(t *testing.T) {
	env := hostileGateway(t, 0)
	smuggled := "GET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n"
	bad := map[string]string{
		"invalid chunk size":  "zz\r\n" + smuggled + "\r\n0\r\n\r\n",
		"chunk size overflow": "10000000000000001\r\nx\r\n0\r\n\r\n",
		"negative chunk size": "-1\r\nx\r\n0\r\n\r\n",
		"chunk data too long": "1\r\nxx\r\n0\r\n\r\n" + smuggled,
	}
	// The breaker's default trips at 20 requests with half of them failed.
	for i := range 5 {
		for name, body := range bad {
			t.Run(name, func(t *testing.T) {
				req := "POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body
				res := rawRequest(t, env.addr, req, i == 0)
				if res.status != http.StatusBadRequest {
					t.Fatalf("status = %d %q (%v), want 400", res.status, res.body, res.err)
				}
				if i == 0 && !res.closed {
					t.Error("connection kept open after a broken body")
				}
				if env.admin.hits.Load() != 0 {
					t.Fatal("the smuggled request reached the admin upstream")
				}
			})
		}
	}
	// Upstream handlers may still be running after the gateway answered.
	testutil.Eventually(t, 10*time.Second, func() bool { return env.pub.done.Load() == env.pub.hits.Load() },
		"upstream handlers finishing")
	if n := env.pub.posted.Load(); n != 0 {
		t.Fatalf("the upstream read %d broken bodies to their end", n)
	}
	// Chunked bodies over max_body_bytes are the client's fault too.
	over := "POST /public/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strings.Repeat("200\r\n"+strings.Repeat("x", 512)+"\r\n", 4) + "0\r\n\r\n"
	for range 20 {
		if res := rawRequest(t, env.addr, over, false); res.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked body over the limit = %d %q, want 413", res.status, res.body)
		}
	}
	for range 5 {
		if res := rawRequest(t, env.addr, "GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n", false); res.status != 200 {
			t.Fatalf("after broken client bodies, a good request = %d %q; want 200", res.status, res.body)
		}
	}
}

// TestHostileAmbiguousFraming covers framings net/http accepts with one
// reading that RFC 9112 allows, rather than refusing: Transfer-Encoding
// wins over Content-Length (and the Content-Length is dropped), obs-fold
// is replaced by a space, and a bare LF ends a line. The gateway re-frames
// what it forwards, so the upstream sees one request with net/http's
// reading and no Content-Length beside a Transfer-Encoding; and the
// connection of a request with a Transfer-Encoding is closed after the
// response (RFC 9112 §6.1), so a tail smuggled behind its body is never
// read as a request.
func TestHostileAmbiguousFraming(t *testing.T) {
	env := hostileGateway(t, 0)
	smuggled := "GET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n"
	tests := []struct {
		name, req string
		body      string // what the upstream reads
		header    string // an upstream header and its value, "name=value"
		closed    bool
	}{
		{"content-length and transfer-encoding",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, "", "Content-Length=", true},
		{"transfer-encoding and content-length",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + smuggled, "abc", "Content-Length=", true},
		{"obs-fold with a tab",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nX-A: b\r\n\tContent-Length: 34\r\n\r\n" + smuggled, "", "X-A=b Content-Length: 34", false},
		{"bare LF",
			"POST /public/x HTTP/1.1\r\nHost: a\r\nX-A: b\nContent-Length: 3\r\n\r\nabc" + smuggled, "abc", "X-A=b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := env.pub.hits.Load()
			res := rawRequest(t, env.addr, tt.req, true)
			if res.status != 200 || env.pub.hits.Load() != before+1 {
				t.Fatalf("status = %d %q (%v); upstream hits %d → %d", res.status, res.body, res.err, before, env.pub.hits.Load())
			}
			r, body, err := env.pub.lastRequest()
			name, value, _ := strings.Cut(tt.header, "=")
			if err != nil || string(body) != tt.body || r.Header.Get(name) != value {
				t.Fatalf("upstream got body %q (%v), %s=%q; want %q, %q", body, err, name, r.Header.Get(name), tt.body, value)
			}
			if env.admin.hits.Load() != 0 {
				t.Fatal("the tail reached the admin upstream")
			}
			if res.closed != tt.closed {
				t.Fatalf("connection closed after the response: %v, want %v", res.closed, tt.closed)
			}
		})
	}
}

// TestHostileLimits: headers over MaxHeaderBytes and bodies over the
// route's max_body_bytes, declared or chunked.
func TestHostileLimits(t *testing.T) {
	env := hostileGateway(t, 0)
	t.Run("headers just under the limit", func(t *testing.T) {
		res := rawRequest(t, env.addr, "GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("a", 60<<10)+"\r\n\r\n", false)
		if res.status != 200 {
			t.Fatalf("status = %d (%v), want 200", res.status, res.err)
		}
	})
	t.Run("oversized header", func(t *testing.T) {
		before := env.upstreamHits()
		// net/http allows 4 KiB of slack over MaxHeaderBytes.
		res := rawRequest(t, env.addr, "GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("a", 72<<10)+"\r\n\r\n", false)
		if res.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status = %d (%v), want 431", res.status, res.err)
		}
		if env.upstreamHits() != before {
			t.Fatal("reached an upstream")
		}
	})
	t.Run("many headers", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("GET /public/x HTTP/1.1\r\nHost: a\r\n")
		for range 8000 {
			b.WriteString("X-Many: 0123456789\r\n")
		}
		b.WriteString("\r\n")
		if res := rawRequest(t, env.addr, b.String(), false); res.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status = %d (%v), want 431", res.status, res.err)
		}
	})
	t.Run("declared body over the limit", func(t *testing.T) {
		before := env.pub.hits.Load()
		res := rawRequest(t, env.addr, "POST /public/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\n\r\n"+strings.Repeat("x", 2048), false)
		if res.status != http.StatusRequestEntityTooLarge || !strings.Contains(res.body, "too-large") {
			t.Fatalf("status = %d %q (%v), want 413", res.status, res.body, res.err)
		}
		if env.pub.hits.Load() != before {
			t.Fatal("a declared oversized body reached the upstream")
		}
	})
	t.Run("chunked body over the limit", func(t *testing.T) {
		chunk := strings.Repeat("x", 512)
		var b strings.Builder
		b.WriteString("POST /public/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
		for range 4 {
			b.WriteString("200\r\n" + chunk + "\r\n")
		}
		b.WriteString("0\r\n\r\n")
		before := env.pub.hits.Load()
		res := rawRequest(t, env.addr, b.String(), false)
		if res.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status = %d %q (%v), want 413", res.status, res.body, res.err)
		}
		// A chunked body is streamed, so the upstream may have started to
		// read it; it must never have received it whole. The upstream
		// counts a request before it reads the body: what it read is known
		// once it is done with it.
		if env.pub.hits.Load() != before {
			testutil.Eventually(t, 10*time.Second, func() bool { return env.pub.done.Load() == env.pub.hits.Load() },
				"the upstream did not finish reading the body")
			if _, body, err := env.pub.lastRequest(); err == nil || len(body) > 1024 {
				t.Fatalf("upstream read %d bytes without error", len(body))
			}
		}
	})
	t.Run("chunked body within the limit", func(t *testing.T) {
		res := rawRequest(t, env.addr, "POST /public/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false)
		if _, body, err := env.pub.lastRequest(); res.status != 200 || err != nil || string(body) != "hello" {
			t.Fatalf("status = %d, upstream body %q (%v)", res.status, body, err)
		}
	})
}

// TestHostileSlowloris: a client dribbling its headers is cut off by the
// header timeout. The test server uses 300ms; production uses 10s.
func TestHostileSlowloris(t *testing.T) {
	const timeout = 300 * time.Millisecond
	env := hostileGateway(t, timeout)
	conn, err := net.Dial("tcp", env.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		_ = conn.SetReadDeadline(start.Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, conn)
		closed <- time.Since(start)
	}()
	req := "GET /public/x HTTP/1.1\r\nHost: a\r\nX-Slow: " + strings.Repeat("z", 200)
	var elapsed time.Duration
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
send:
	for i := 0; ; i++ {
		select {
		case elapsed = <-closed:
			break send
		case <-tick.C:
			if i >= len(req) {
				t.Fatal("sent the whole header prefix without being cut off")
			}
			if _, err := conn.Write([]byte{req[i]}); err != nil {
				elapsed = <-closed
				break send
			}
		}
	}
	// The server's clock starts a little before ours (at accept).
	if elapsed < timeout/2 || elapsed > timeout+time.Second {
		t.Fatalf("closed after %v, want about %v (at most %v)", elapsed, timeout, timeout+time.Second)
	}
	if env.upstreamHits() != 0 {
		t.Fatal("a slowloris request reached an upstream")
	}
}

// TestHostilePaths: a path is matched and forwarded in one normal form.
//
// Percent-encoded octets, %2F and %2E included, are decoded first (net/http
// fills URL.Path decoded), then dot and empty segments are removed; the
// router matches that cleaned path and the upstream receives exactly it,
// re-encoded, never the client's raw form. So "/public%2F..%2Fadmin/x" is
// "/admin/x" for the gateway and for the upstream alike: no component can
// disagree with another about which route a path belongs to.
func TestHostilePaths(t *testing.T) {
	env := hostileGateway(t, 0)
	tests := []struct {
		raw, route, upstreamPath string
	}{
		{"/public/../admin/x", "admin", "/admin/x"},
		{"/public/%2e%2e/admin/x", "admin", "/admin/x"},
		{"/public/%2E%2E/admin/x", "admin", "/admin/x"},
		{"//admin/x", "admin", "/admin/x"},
		{"/public%2F..%2Fadmin/x", "admin", "/admin/x"},
		{"/public/./../admin/x", "admin", "/admin/x"},
		{"/%61dmin/x", "admin", "/admin/x"},
		{"/public/.%2e/.%2E/admin/x", "admin", "/admin/x"},
		{"/admin/../public/x", "public", "/public/x"},
		{"/admin/%2e%2e/public/x", "public", "/public/x"},
		{"/admin%2f..%2fpublic/x", "public", "/public/x"},
		{"/public/x/..%2f..%2fadmin/y", "admin", "/admin/y"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			up := map[string]*seen{"admin": env.admin, "public": env.pub}[tt.route]
			adminBefore, upBefore := env.admin.hits.Load(), up.hits.Load()
			if tt.route == "admin" {
				res := rawRequest(t, env.addr, "GET "+tt.raw+" HTTP/1.1\r\nHost: a\r\n\r\n", false)
				if res.status != http.StatusUnauthorized {
					t.Fatalf("without a key: %d %q, want 401", res.status, res.body)
				}
				if env.admin.hits.Load() != adminBefore {
					t.Fatal("reached the admin upstream without a key")
				}
			}
			// With the key, the request reaches the route's upstream with
			// the normalised path.
			res := rawRequest(t, env.addr, "GET "+tt.raw+" HTTP/1.1\r\nHost: a\r\nX-Api-Key: "+env.key+"\r\n\r\n", false)
			if res.status != 200 || up.hits.Load() != upBefore+1 {
				t.Fatalf("with a key: %d %q; %s upstream hits %d → %d", res.status, res.body, tt.route, upBefore, up.hits.Load())
			}
			r, _, _ := up.lastRequest()
			if r.URL.Path != tt.upstreamPath || r.RequestURI != tt.upstreamPath {
				t.Fatalf("upstream got path %q (request-URI %q), want %q", r.URL.Path, r.RequestURI, tt.upstreamPath)
			}
			if tt.route != "admin" && env.admin.hits.Load() != adminBefore {
				t.Fatal("the admin upstream was reached")
			}
		})
	}
	// A path that does not start with "/" (nor is absolute-form) is refused.
	if res := rawRequest(t, env.addr, "GET admin/x HTTP/1.1\r\nHost: a\r\n\r\n", false); res.status != 400 {
		t.Fatalf("relative request target = %d, want 400", res.status)
	}
}

// TestHostileHopByHop: the Connection header may name headers to drop on
// the way, but never the identity or forwarding headers the gateway sets;
// and whatever a client sends under those names is replaced.
func TestHostileHopByHop(t *testing.T) {
	env := hostileGateway(t, 0)
	forged := "X-Consumer-Name: root\r\nX-Consumer-Groups: admins\r\nX-Auth-Method: jwt\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\n"
	tests := []struct {
		name, path, extra string
		up                *seen
		want              map[string]string // "" means absent
	}{
		{"authenticated, forged", "/admin/x", "X-Api-Key: " + env.key + "\r\n" + forged, env.admin,
			map[string]string{"X-Consumer-Name": "alice", "X-Consumer-Groups": "ops", "X-Auth-Method": "api_key"}},
		{"authenticated, connection strips", "/admin/x",
			"X-Api-Key: " + env.key + "\r\nConnection: X-Consumer-Name, X-Consumer-Groups, X-Auth-Method, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto\r\n" + forged,
			env.admin, map[string]string{"X-Consumer-Name": "alice", "X-Consumer-Groups": "ops", "X-Auth-Method": "api_key"}},
		{"open route, forged", "/public/x", forged, env.pub,
			map[string]string{"X-Consumer-Name": "", "X-Consumer-Groups": "", "X-Auth-Method": ""}},
		{"open route, connection strips", "/public/x", "Connection: keep-alive, X-Consumer-Name, X-Forwarded-For\r\n" + forged, env.pub,
			map[string]string{"X-Consumer-Name": "", "X-Consumer-Groups": "", "X-Auth-Method": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := rawRequest(t, env.addr, "GET "+tt.path+" HTTP/1.1\r\nHost: gw.example\r\n"+tt.extra+"\r\n", false)
			if res.status != 200 {
				t.Fatalf("status = %d %q", res.status, res.body)
			}
			r, _, _ := tt.up.lastRequest()
			want := map[string]string{
				"X-Forwarded-For":   "127.0.0.1",
				"X-Forwarded-Host":  "gw.example",
				"X-Forwarded-Proto": "http",
				"X-Api-Key":         "",
				"Forwarded":         "",
			}
			for k, v := range tt.want {
				want[k] = v
			}
			for name, v := range want {
				if got := r.Header.Values(name); v == "" && len(got) != 0 || v != "" && (len(got) != 1 || got[0] != v) {
					t.Errorf("upstream saw %s = %q, want %q", name, got, v)
				}
			}
		})
	}
}

// TestHostileHost: neither an absolute-form request target nor the Host
// header can reach a host-bound route for another host. For an
// absolute-form target the authority wins over Host (RFC 9112 §3.2.2), and
// the router sees only that.
func TestHostileHost(t *testing.T) {
	env := hostileGateway(t, 0)
	tests := []struct {
		name, req string
		status    int
	}{
		{"other host", "GET /internal/x HTTP/1.1\r\nHost: evil.example\r\n\r\n", 404},
		{"no host (HTTP/1.0)", "GET /internal/x HTTP/1.0\r\n\r\n", 404},
		{"absolute-form for another host, Host names the bound one",
			"GET http://evil.example/internal/x HTTP/1.1\r\nHost: internal.example\r\n\r\n", 404},
		{"absolute-form https for another host",
			"GET https://evil.example/internal/x HTTP/1.1\r\nHost: internal.example\r\n\r\n", 404},
		{"host with userinfo", "GET http://internal.example@evil.example/internal/x HTTP/1.1\r\nHost: internal.example\r\n\r\n", 400},
		{"host suffix", "GET /internal/x HTTP/1.1\r\nHost: internal.example.evil.example\r\n\r\n", 404},
		{"host prefix", "GET /internal/x HTTP/1.1\r\nHost: evilinternal.example\r\n\r\n", 404},
		{"bound host", "GET /internal/x HTTP/1.1\r\nHost: internal.example\r\n\r\n", 200},
		{"bound host, other case and port", "GET /internal/x HTTP/1.1\r\nHost: INTERNAL.example:8080\r\n\r\n", 200},
		{"absolute-form for the bound host", "GET http://internal.example/internal/x HTTP/1.1\r\nHost: evil.example\r\n\r\n", 200},
		{"invalid host", "GET /internal/x HTTP/1.1\r\nHost: internal.example/x\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := env.internal.hits.Load()
			res := rawRequest(t, env.addr, tt.req, false)
			if res.status != tt.status {
				t.Fatalf("status = %d %q (%v), want %d", res.status, res.body, res.err, tt.status)
			}
			if reached := env.internal.hits.Load() != before; reached != (tt.status == 200) {
				t.Fatalf("internal upstream reached = %v", reached)
			}
		})
	}
}
