package tunnel

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// WebSocket over HTTP/2 (RFC 8441). A client that saw the gateway's
// SETTINGS_ENABLE_CONNECT_PROTOCOL (package extconnect turns it on) opens
// a WebSocket as an extended CONNECT on one stream of its HTTP/2
// connection: :method CONNECT, :protocol websocket, the path and
// authority of the WebSocket URL, no Sec-WebSocket-Key. net/http hands it
// to the handler as a CONNECT request with a ":protocol" header.
//
// The gateway bridges it to the HTTP/1.1 handshake services speak
// (FromHTTP2): before anything else reads the request, it becomes a GET
// with Upgrade: websocket and a Sec-WebSocket-Key the gateway makes, so the
// route match (a WebSocket route's GET), auth, rate limits, max_in_flight
// and IP rules decide on it exactly as on an HTTP/1.1 handshake, and a
// refusal is the same problem+json, sent on the stream. The client's
// stream is kept aside (not read as a request body, which the body
// deadlines would cut). When the service answers 101, Verify checks its
// Sec-WebSocket-Accept against the key (RFC 6455 §4.2.2); the client gets
// 200 with the service's Sec-WebSocket-Protocol and -Extensions and no
// Sec-WebSocket-Accept (RFC 8441 §5), and from then on the stream's DATA
// frames carry the WebSocket bytes both ways, each write flushed. The
// tunnel's limits and metrics are the HTTP/1.1 tunnel's (Conn), labelled
// http_version "2".
//
// A service that answers the handshake with a 2xx instead of 101 (it did
// not switch) would make the client believe in a tunnel: the client gets
// 502 instead. Other answers (401, 426, 502...) reach it as they are.

// wsGUID is RFC 6455's key suffix.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey is the Sec-WebSocket-Accept that answers a Sec-WebSocket-Key
// (RFC 6455 §4.2.2).
func AcceptKey(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Refusals of FromHTTP2.
var (
	// ErrUnsupportedProtocol is an extended CONNECT for another protocol
	// than websocket.
	ErrUnsupportedProtocol = errors.New("only the websocket protocol is tunnelled over HTTP/2")
	// ErrProtocolWithoutConnect is a :protocol pseudo-header on another
	// method than CONNECT, which RFC 8441 §4 does not allow (net/http's
	// server lets it through once extended CONNECT is on, as a header no
	// service could be sent).
	ErrProtocolWithoutConnect = errors.New("the :protocol pseudo-header is only allowed on CONNECT")
)

// H2 is one WebSocket opened over HTTP/2, bridged to an HTTP/1.1 upgrade.
type H2 struct {
	r    *http.Request
	key  string        // the Sec-WebSocket-Key sent to the service
	body io.ReadCloser // the client's stream: the bytes it sends

	mu     sync.Mutex
	answer http.Header // the service's 101 headers, once verified
}

type h2Key struct{}

// FromHTTP2 turns an HTTP/2 extended CONNECT for websocket into the
// HTTP/1.1 handshake, in place, and returns the writer and request the
// rest of the handler uses (the request carries the bridge in its
// context). Any other request comes back as it is. An extended CONNECT
// for another protocol is refused with ErrUnsupportedProtocol, a
// :protocol on another method with ErrProtocolWithoutConnect.
func FromHTTP2(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request, error) {
	protocol, ok := r.Header[":protocol"]
	if r.ProtoMajor != 2 || !ok {
		return w, r, nil
	}
	delete(r.Header, ":protocol")
	if r.Method != http.MethodConnect {
		return w, r, ErrProtocolWithoutConnect
	}
	if len(protocol) != 1 || !strings.EqualFold(protocol[0], "websocket") {
		return w, r, ErrUnsupportedProtocol
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // never fails (crypto/rand)
	b := &H2{key: base64.StdEncoding.EncodeToString(raw[:]), body: r.Body}
	r.Method = http.MethodGet
	// RFC 8441 §5: the HTTP/2 side has no key and no accept; whatever the
	// client sent under those names is not the handshake's.
	delete(r.Header, "Sec-Websocket-Key")
	delete(r.Header, "Sec-Websocket-Accept")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Key", b.key)
	r.Body, r.ContentLength = http.NoBody, 0
	r = r.WithContext(context.WithValue(r.Context(), h2Key{}, b))
	b.r = r
	return &h2Writer{ResponseWriter: w, b: b}, r, nil
}

// H2From returns the bridge of a request FromHTTP2 translated, nil for
// others.
func H2From(ctx context.Context) *H2 {
	b, _ := ctx.Value(h2Key{}).(*H2)
	return b
}

// Verify checks the service's 101 to the bridged handshake: the protocol
// switched to is websocket and Sec-WebSocket-Accept answers the key. The
// headers the client will get with its 200 are kept.
func (b *H2) Verify(resp *http.Response) error {
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return fmt.Errorf("service switched to %q, not websocket", resp.Header.Get("Upgrade"))
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != AcceptKey(b.key) {
		return fmt.Errorf("service answered the WebSocket key with a wrong Sec-WebSocket-Accept %q", got)
	}
	h := resp.Header.Clone()
	for _, name := range strings.Split(h.Get("Connection"), ",") {
		if name = strings.TrimSpace(name); name != "" {
			h.Del(name)
		}
	}
	for _, name := range config.HopByHop {
		delete(h, name)
	}
	delete(h, "Sec-Websocket-Accept")
	b.mu.Lock()
	b.answer = h
	b.mu.Unlock()
	return nil
}

// h2Writer is the response writer of a bridged handshake. The reverse
// proxy opens the tunnel by hijacking it, as on HTTP/1.1; here that
// answers the client 200 on its stream and hands back the stream as the
// client's connection.
type h2Writer struct {
	http.ResponseWriter
	b       *H2
	wrote   bool
	refused bool // a 2xx that was no switch, answered 502 instead
}

func (w *h2Writer) WriteHeader(code int) {
	if w.wrote {
		return
	}
	if code >= 100 && code <= 199 {
		// 1xx are informational (and a 101 arrives through Hijack).
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wrote = true
	if code >= 200 && code <= 299 {
		// A success that is not the service's verified switch: the
		// client would take it for an open tunnel.
		w.refused = true
		for name := range w.Header() {
			delete(w.Header(), name)
		}
		stage.WriteProblem(w.ResponseWriter, w.b.r, http.StatusBadGateway, "bad-gateway",
			"the upstream did not switch to the WebSocket protocol")
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *h2Writer) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.refused {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

func (w *h2Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack answers the client 200 with the service's verified headers and
// returns its stream as a connection. The proxy writes the service's 101
// to the returned buffer, which discards it: the client has had its
// answer.
func (w *h2Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.b.mu.Lock()
	answer := w.b.answer
	w.b.mu.Unlock()
	if answer == nil || w.wrote {
		return nil, nil, errors.New("tunnel: no verified WebSocket switch to answer")
	}
	h := w.Header()
	for name, vs := range answer {
		h[name] = vs
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w.ResponseWriter)
	if err := rc.Flush(); err != nil {
		return nil, nil, fmt.Errorf("tunnel: answering the client: %w", err)
	}
	c := &h2Conn{w: w.ResponseWriter, rc: rc, body: w.b.body}
	c.cond.L = &c.mu
	c.stop = context.AfterFunc(w.b.r.Context(), c.abort)
	return c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(io.Discard)), nil
}

// h2Conn is the client's side of a bridged tunnel: reads are the DATA the
// client sends on its stream, writes go out as DATA at once (flushed).
//
// The stream belongs to the handler: once the proxy is done with the
// tunnel (Close) nothing may touch it, since the handler returns next.
// Close cuts a write in progress (as closing the connection does on
// HTTP/1.1) and waits for it to return; when the exchange is cancelled
// (idle or lifetime limit, client gone) abort unblocks a write the client
// holds up by flow control and a read waiting for the client.
type h2Conn struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	body io.ReadCloser
	stop func() bool

	mu      sync.Mutex
	cond    sync.Cond
	writing bool
	closed  bool
}

var _ net.Conn = (*h2Conn)(nil)

func (c *h2Conn) Read(p []byte) (int, error) { return c.body.Read(p) }

func (c *h2Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.writing = true
	c.mu.Unlock()
	n, err := c.w.Write(p)
	if err == nil {
		err = c.rc.Flush()
	}
	c.mu.Lock()
	c.writing = false
	c.cond.Broadcast()
	c.mu.Unlock()
	return n, err
}

// abort ends the stream's reads and a write held up, unless the tunnel
// is already closed (then the stream may be gone with its handler).
func (c *h2Conn) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.writing {
		_ = c.rc.SetWriteDeadline(time.Now())
	}
	_ = c.body.Close()
}

func (c *h2Conn) Close() error {
	c.stop()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.writing {
		// As a closed TCP connection cuts a write on HTTP/1.1.
		_ = c.rc.SetWriteDeadline(time.Now())
	}
	for c.writing {
		c.cond.Wait()
	}
	c.mu.Unlock()
	return c.body.Close()
}

func (c *h2Conn) LocalAddr() net.Addr  { return h2Addr{} }
func (c *h2Conn) RemoteAddr() net.Addr { return h2Addr{} }
func (c *h2Conn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}
func (c *h2Conn) SetReadDeadline(t time.Time) error  { return c.rc.SetReadDeadline(t) }
func (c *h2Conn) SetWriteDeadline(t time.Time) error { return c.rc.SetWriteDeadline(t) }

// h2Addr stands for the addresses of a stream, which has none of its own.
type h2Addr struct{}

func (h2Addr) Network() string { return "http2" }
func (h2Addr) String() string  { return "http2-stream" }
