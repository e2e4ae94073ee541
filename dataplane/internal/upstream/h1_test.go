package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connCounter is an httptest server that counts the connections it accepted.
type connCounter struct {
	srv   *httptest.Server
	conns atomic.Int64
}

func newConnCounter(t *testing.T, h http.HandlerFunc) *connCounter {
	t.Helper()
	c := &connCounter{}
	c.srv = httptest.NewUnstartedServer(h)
	c.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			c.conns.Add(1)
		}
	}
	c.srv.Start()
	t.Cleanup(c.srv.Close)
	return c
}

// countingRT records what the fallback transport was asked to send.
type countingRT struct {
	n  atomic.Int64
	rt http.RoundTripper
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

func newTestH1(t *testing.T, o H1Options) (*H1, *countingRT) {
	t.Helper()
	fb := &countingRT{rt: &http.Transport{}}
	h := NewH1(fb, o)
	t.Cleanup(h.CloseIdleConnections)
	return h, fb
}

func get(t *testing.T, rt http.RoundTripper, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp, string(b)
}

func TestH1ResponsesAndReuse(t *testing.T) {
	srv := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part1,"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/notmod":
			w.WriteHeader(http.StatusNotModified)
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Write([]byte("after hints"))
		default:
			fmt.Fprintf(w, "%s %s %s ua=%q", r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("User-Agent"))
		}
	})
	h, fb := newTestH1(t, H1Options{})
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/a?x=1", 200, "GET /a?x=1 " + strings.TrimPrefix(srv.srv.URL, "http://") + ` ua="Go-http-client/1.1"`},
		{"GET", "/chunked", 200, "part1,part2"},
		{"HEAD", "/a", 200, ""},
		{"GET", "/empty", 204, ""},
		{"GET", "/notmod", 304, ""},
		{"GET", "/hints", 200, "after hints"},
		{"OPTIONS", "/a", 200, "OPTIONS /a " + strings.TrimPrefix(srv.srv.URL, "http://") + ` ua="Go-http-client/1.1"`},
	}
	for round := range 2 {
		for _, tt := range tests {
			resp, body := get(t, h, tt.method, srv.srv.URL+tt.path)
			if resp.StatusCode != tt.status || body != tt.body {
				t.Errorf("round %d %s %s: %d %q, want %d %q", round, tt.method, tt.path, resp.StatusCode, body, tt.status, tt.body)
			}
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d connections for %d sequential requests, want 1 kept alive", n, 2*len(tests))
	}
	if n := fb.n.Load(); n != 0 {
		t.Errorf("%d requests went to the fallback", n)
	}
}

func TestH1Fallback(t *testing.T) {
	srv := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, b)
	})
	h, fb := newTestH1(t, H1Options{})
	cases := []func() *http.Request{
		func() *http.Request {
			r, _ := http.NewRequest("POST", srv.srv.URL, strings.NewReader("body"))
			return r
		},
		func() *http.Request { r, _ := http.NewRequest("DELETE", srv.srv.URL, nil); return r },
		func() *http.Request {
			r, _ := http.NewRequest("GET", srv.srv.URL, nil)
			r.Header.Set("Upgrade", "websocket")
			return r
		},
		func() *http.Request { r, _ := http.NewRequest("GET", srv.srv.URL, strings.NewReader("x")); return r },
	}
	for i, mk := range cases {
		resp, err := h.RoundTrip(mk())
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n := fb.n.Load(); n != int64(len(cases)) {
		t.Errorf("%d of %d requests went to the fallback", n, len(cases))
	}
}

// rawServer answers each request line read with the given response bytes,
// then closes the connection when close is set (without saying so).
func rawServer(t *testing.T, response string, closeAfter bool) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = &atomic.Int64{}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, response); err != nil || closeAfter {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String(), conns
}

// TestH1StaleConnection: a server that closes kept-alive connections
// without saying so; the next request meets a dead connection and is sent
// again on a fresh one.
func TestH1StaleConnection(t *testing.T) {
	addr, conns := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true)
	h, _ := newTestH1(t, H1Options{})
	for i := range 5 {
		if resp, body := get(t, h, "GET", "http://"+addr+"/"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n < 5 {
		t.Errorf("%d connections, want a fresh one per request", n)
	}
}

// TestH1CloseDelimited: a response without length, ended by closing the
// connection, is read whole and the connection not reused.
func TestH1CloseDelimited(t *testing.T) {
	addr, conns := rawServer(t, "HTTP/1.0 200 OK\r\n\r\nuntil close", true)
	h, _ := newTestH1(t, H1Options{})
	for range 2 {
		if resp, body := get(t, h, "GET", "http://"+addr+"/"); resp.StatusCode != 200 || body != "until close" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// TestH1EarlyClose: a body closed before its end closes the connection, so
// its unread rest is never taken for the next response.
func TestH1EarlyClose(t *testing.T) {
	srv := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write([]byte(strings.Repeat("x", 100_000)))
			return
		}
		w.Write([]byte("small"))
	})
	h, _ := newTestH1(t, H1Options{})
	req, _ := http.NewRequest("GET", srv.srv.URL+"/big", nil)
	resp, err := h.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	io.ReadFull(resp.Body, buf)
	resp.Body.Close()
	if _, body := get(t, h, "GET", srv.srv.URL+"/small"); body != "small" {
		t.Fatalf("next response %q", body)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the half-read one closed)", n)
	}
}

// TestH1Cancel: cancelling the request unblocks a wait for a response that
// never comes, with the context's error.
func TestH1Cancel(t *testing.T) {
	hang := make(chan struct{})
	srv := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(hang) })
	h, _ := newTestH1(t, H1Options{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.srv.URL, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := h.RoundTrip(req)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v, want context.Canceled", err)
	}
}

// TestH1IdleTimeout: a connection idle for longer than the timeout is not
// used again.
func TestH1IdleTimeout(t *testing.T) {
	srv := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	h, _ := newTestH1(t, H1Options{IdleTimeout: 20 * time.Millisecond})
	get(t, h, "GET", srv.srv.URL)
	time.Sleep(50 * time.Millisecond)
	get(t, h, "GET", srv.srv.URL)
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("%d connections, want a new one after the idle timeout", n)
	}
}

// TestH1Concurrent: many goroutines share the pool without mixing up
// responses.
func TestH1Concurrent(t *testing.T) {
	srv := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(r.URL.Path)) })
	h, _ := newTestH1(t, H1Options{MaxIdlePerHost: 4})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				path := fmt.Sprintf("/g%d/%d", g, i)
				req, _ := http.NewRequest("GET", srv.srv.URL+path, nil)
				resp, err := h.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != path {
					t.Errorf("asked %s, got %s", path, b)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestH1HeadLimit: an upstream sending endless headers is cut off.
func TestH1HeadLimit(t *testing.T) {
	addr, _ := rawServer(t, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 2<<20)+"\r\n\r\n", true)
	h, _ := newTestH1(t, H1Options{})
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	if resp, err := h.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatal("a 2 MiB response head was accepted")
	}
}

// TestH1AllIdleDead: the upstream restarted, so every pooled connection is
// dead; one request still succeeds (the pool is dropped, the retry dials).
func TestH1AllIdleDead(t *testing.T) {
	srv := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	h, _ := newTestH1(t, H1Options{})
	var wg sync.WaitGroup
	for range 4 { // four connections in the pool
		wg.Go(func() {
			req, _ := http.NewRequest("GET", srv.srv.URL, nil)
			resp, err := h.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			time.Sleep(20 * time.Millisecond) // hold it so the others dial
			io.ReadAll(resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	srv.srv.CloseClientConnections()
	if resp, body := get(t, h, "GET", srv.srv.URL); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("after the upstream dropped every connection: %d %q", resp.StatusCode, body)
	}
}

// TestH1ExtraBytes: bytes past the response (a body sent to a HEAD) are
// never read as the next request's answer.
func TestH1ExtraBytes(t *testing.T) {
	addr, conns := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil", false)
	h, _ := newTestH1(t, H1Options{})
	for i := range 2 {
		if resp, body := get(t, h, "GET", "http://"+addr+"/"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want the tainted one closed", n)
	}
}

// TestH1OneP runs the exchange tests again with GOMAXPROCS=1, where H1
// waits for answers on the request's own goroutine instead of handing the
// wait to another (awaitAnswer): both ways must behave the same.
func TestH1OneP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	h, _ := newTestH1(t, H1Options{})
	if h.handOff.Load() {
		t.Fatal("H1 hands the wait off with GOMAXPROCS=1")
	}
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"ResponsesAndReuse", TestH1ResponsesAndReuse},
		{"StaleConnection", TestH1StaleConnection},
		{"CloseDelimited", TestH1CloseDelimited},
		{"EarlyClose", TestH1EarlyClose},
		{"Cancel", TestH1Cancel},
		{"Concurrent", TestH1Concurrent},
		{"HeadLimit", TestH1HeadLimit},
		{"AllIdleDead", TestH1AllIdleDead},
		{"ExtraBytes", TestH1ExtraBytes},
	} {
		t.Run(tc.name, tc.run)
	}
	runtime.GOMAXPROCS(2)
	if h2, _ := newTestH1(t, H1Options{}); !h2.handOff.Load() {
		t.Fatal("H1 does not hand the wait off with GOMAXPROCS=2")
	}
}
