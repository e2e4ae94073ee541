package main

// The hostile-input cases of dataplane/internal/proxy/hostile_test.go that
// apply to one plain route, sent raw to the prototype in front of a real
// net/http upstream. They show which of the reliability work's defences
// fasthttp v1.79.0 plus the prototype's checks keep, and where they answer
// differently from Portico's net/http path (docs/PERFORMANCE.md, "Goal 3").
// Run by hand: cd dataplane/cmd/bench-fastproxy && GOWORK=off go test .
// PROTO_ENGINE=nbio runs the framing tests (Smuggling, AmbiguousFraming,
// ChunkFraming) against the nbio listener instead.

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type upstream struct {
	hits, adminHits atomic.Int64
	mu              sync.Mutex
	last            *http.Request
	lastBody        string
	lastErr         error
}

type env struct {
	addr string
	up   *upstream
}

func start(t *testing.T) *env {
	t.Helper()
	up := &upstream{}
	uln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	usrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/admin") || strings.Contains(r.URL.Path, "smuggled") {
			up.adminHits.Add(1)
		}
		b, err := io.ReadAll(r.Body)
		up.mu.Lock()
		up.last, up.lastBody, up.lastErr = r, string(b), err
		up.mu.Unlock()
		up.hits.Add(1)
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "hop")
		_, _ = io.WriteString(w, "ok")
	})}
	go func() { _ = usrv.Serve(uln) }()
	t.Cleanup(func() { _ = usrv.Close() })

	if os.Getenv("PROTO_ENGINE") == "nbio" {
		// The nbio listener in front of net/http's ReverseProxy: only the
		// framing tests apply (it has no route and no header checks).
		addr := freeAddr(t)
		u, _ := url.Parse("http://" + uln.Addr().String())
		e := newNbioEngine(addr, u)
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Stop)
		return &env{addr: addr, up: up}
	}
	p := newFastProxy(uln.Addr().String(), prometheus.NewRegistry())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(p.serve)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return &env{addr: ln.Addr().String(), up: up}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (u *upstream) lastRequest() (*http.Request, string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last, u.lastBody, u.lastErr
}

type rawResult struct {
	status int
	header http.Header
	body   string
	closed bool
	err    error
}

func rawRequest(t *testing.T, addr, req string) rawResult {
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
	res := rawResult{status: resp.StatusCode, header: resp.Header, body: string(b)}
	// A connection the server keeps open would block here until the
	// deadline; one it closed reads EOF (or a reset) at once. A second
	// response (a smuggled request answered) reads as data.
	_ = conn.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	_, err = br.ReadByte()
	var ne net.Error
	res.closed = err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return res
}

const smuggled = "GET /bench/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"

// TestSmuggling: TestHostileSmuggling's cases. Each must be refused with
// the status Portico answers, the connection closed, nothing forwarded.
func TestSmuggling(t *testing.T) {
	e := start(t)
	tests := []struct {
		name, req string
		status    int
	}{
		{"two different content-lengths",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 34\r\n\r\n" + smuggled, 400},
		{"content-length list",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0, 34\r\n\r\n" + smuggled, 400},
		{"signed content-length",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nContent-Length: +34\r\n\r\n" + smuggled, 400},
		{"space before colon",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"chunked, identity",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"identity, chunked",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"identity",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"gzip coding",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"two transfer-encoding fields",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"misspelled chunked",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"two host fields",
			"GET /bench/x HTTP/1.1\r\nHost: a\r\nHost: internal.example\r\n\r\n", 400},
		{"leading whitespace before the first header",
			"GET /bench/x HTTP/1.1\r\n Host: a\r\n\r\n", 400},
		{"NUL in a header value",
			"GET /bench/x HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400},
		{"CR alone in a header value",
			"GET /bench/x HTTP/1.1\r\nHost: a\r\nX-A: b\rContent-Length: 34\r\n\r\n" + smuggled, 400},
		{"invalid host",
			"GET /bench/x HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"header block over the limit",
			"GET /bench/x HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 70<<10) + "\r\n\r\n", 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.up.hits.Load()
			res := rawRequest(t, e.addr, tt.req)
			if res.status != tt.status {
				t.Errorf("status = %d (err %v, body %q), want %d", res.status, res.err, res.body, tt.status)
			}
			if !res.closed {
				t.Error("connection kept open after a refused request")
			}
			if n := e.up.hits.Load() - before; n != 0 {
				t.Errorf("%d request(s) reached the upstream", n)
			}
		})
	}
}

// TestAmbiguousFraming: TestHostileAmbiguousFraming's cases, accepted with
// one reading; the upstream sees that reading, the tail never.
func TestAmbiguousFraming(t *testing.T) {
	e := start(t)
	// The tail is read as the next request where the framing says it is
	// one; the prototype's route does not cover /admin, so it never
	// reaches the upstream either way.
	smuggled := "GET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n"
	tests := []struct {
		name, req string
		body      string // what the upstream reads
		header    string // an upstream header and its value, "name=value"
		closed    bool
	}{
		{"content-length and transfer-encoding",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, "", "Content-Length=", true},
		{"transfer-encoding and content-length",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + smuggled, "abc", "Content-Length=", true},
		{"obs-fold with a tab",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nX-A: b\r\n\tContent-Length: 34\r\n\r\n" + smuggled, "", "X-A=b Content-Length: 34", false},
		{"bare LF",
			"POST /bench/x HTTP/1.1\r\nHost: a\r\nX-A: b\nContent-Length: 3\r\n\r\nabc" + smuggled, "abc", "X-A=b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, admin := e.up.hits.Load(), e.up.adminHits.Load()
			res := rawRequest(t, e.addr, tt.req)
			if res.status != 200 || e.up.hits.Load() != before+1 {
				t.Fatalf("status = %d %q (%v); upstream hits %d -> %d", res.status, res.body, res.err, before, e.up.hits.Load())
			}
			r, body, err := e.up.lastRequest()
			name, value, _ := strings.Cut(tt.header, "=")
			if err != nil || body != tt.body || r.Header.Get(name) != value {
				t.Errorf("upstream got body %q (%v), %s=%q; want %q, %q", body, err, name, r.Header.Get(name), tt.body, value)
			}
			if e.up.adminHits.Load() != admin {
				t.Error("the smuggled tail reached the upstream")
			}
			if tt.closed && !res.closed {
				t.Errorf("connection kept open after the response, want closed")
			}
		})
	}
}

// TestChunkFraming: a chunked body whose framing breaks after the headers
// (TestHostileChunkFraming): 400, the connection closed, the tail nowhere.
func TestChunkFraming(t *testing.T) {
	e := start(t)
	bad := map[string]string{
		"invalid chunk size":  "zz\r\n" + smuggled + "\r\n0\r\n\r\n",
		"chunk size overflow": "10000000000000001\r\nx\r\n0\r\n\r\n",
		"negative chunk size": "-1\r\nx\r\n0\r\n\r\n",
		"chunk data too long": "1\r\nxx\r\n0\r\n\r\n" + smuggled,
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			admin := e.up.adminHits.Load()
			res := rawRequest(t, e.addr, "POST /bench/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+body)
			if res.status != http.StatusBadRequest {
				t.Errorf("status = %d %q (%v), want 400", res.status, res.body, res.err)
			}
			if !res.closed {
				t.Error("connection kept open after a broken body")
			}
			if e.up.adminHits.Load() != admin {
				t.Error("the smuggled request reached the upstream")
			}
		})
	}
}

// TestHopByHopAndForwarded: TestHostileHopByHop on an open route, and the
// path normalisation of TestHostilePaths for one prefix.
func TestHopByHopAndForwarded(t *testing.T) {
	e := start(t)
	forged := "X-Consumer-Name: root\r\nX-Consumer-Groups: admins\r\nX-Auth-Method: jwt\r\nX_Consumer_Name: root\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\n" +
		"Keep-Alive: timeout=5\r\nTe: trailers\r\nProxy-Authorization: Basic eA==\r\n"
	for _, extra := range []string{forged, "Connection: keep-alive, X-Consumer-Name, X-Other\r\nX-Other: 1\r\n" + forged} {
		res := rawRequest(t, e.addr, "GET /bench/x HTTP/1.1\r\nHost: gw.example\r\n"+extra+"\r\n")
		if res.status != 200 {
			t.Fatalf("status = %d %q", res.status, res.body)
		}
		if v := res.header.Values("X-Secret"); len(v) != 0 {
			t.Errorf("client saw the upstream's hop-by-hop X-Secret = %q", v)
		}
		r, _, _ := e.up.lastRequest()
		want := map[string]string{
			"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "gw.example", "X-Forwarded-Proto": "http",
			"Forwarded": "", "X-Consumer-Name": "", "X-Consumer-Groups": "", "X-Auth-Method": "", "X_consumer_name": "",
			"Keep-Alive": "", "Te": "", "Proxy-Authorization": "", "Connection": "", "X-Other": "",
		}
		for name, v := range want {
			if got := r.Header.Values(name); v == "" && len(got) != 0 || v != "" && (len(got) != 1 || got[0] != v) {
				t.Errorf("upstream saw %s = %q, want %q", name, got, v)
			}
		}
	}
	paths := []struct {
		target, upstreamPath string
		status               int
	}{
		{"/other/../bench/x", "/bench/x", 200},
		{"/other/%2e%2e/bench/x", "/bench/x", 200},
		{"//bench/x", "/bench/x", 200},
		{"/bench/../other/x", "", 404},
		{"/bench/%2e%2e/other/x", "", 404},
		{"/bench%2F..%2Fother/x", "", 404},
	}
	for _, p := range paths {
		before := e.up.hits.Load()
		res := rawRequest(t, e.addr, "GET "+p.target+" HTTP/1.1\r\nHost: a\r\n\r\n")
		if res.status != p.status {
			t.Errorf("%s: status = %d, want %d", p.target, res.status, p.status)
			continue
		}
		if p.status != 200 {
			if e.up.hits.Load() != before {
				t.Errorf("%s reached the upstream", p.target)
			}
			continue
		}
		if r, _, _ := e.up.lastRequest(); r.URL.Path != p.upstreamPath {
			t.Errorf("%s: upstream path %q, want %q", p.target, r.URL.Path, p.upstreamPath)
		}
	}
}
