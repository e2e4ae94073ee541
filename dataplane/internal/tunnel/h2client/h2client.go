// Package h2client is the client side of WebSocket over HTTP/2 (RFC 8441)
// for tests: a RoundTripper that a WebSocket library (coder/websocket)
// dials through. The library writes its usual HTTP/1.1 handshake; the
// RoundTripper sends it as an extended CONNECT (:protocol websocket) on an
// HTTP/2 connection of x/net's HTTP/2 transport, the client net/http
// bundles (net/http's own Transport refuses the ":protocol" header before
// it picks HTTP/2), and, when the server answers 2xx, hands the library
// the stream as the connection a 101 would have given it.
//
// What the library sees of the answer is translated the way RFC 8441 §5
// says a client does: the HTTP/2 side carries no Sec-WebSocket-Key and no
// Sec-WebSocket-Accept, so the key is dropped from the request and the
// accept the library checks is computed here from its own key. Every byte
// of the WebSocket (framing, masking, close handshake) is the library's;
// every byte on the wire is x/net's HTTP/2.
package h2client

//lint:file-ignore SA1019 net/http's Transport refuses the ":protocol" header of an extended CONNECT (RFC 8441); x/net's HTTP/2 transport, deprecated for other uses, sends it.

import (
	"context"
	"errors"
	"io"
	"net/http"

	"golang.org/x/net/http2"

	"github.com/portico-gw/portico/dataplane/internal/tunnel"
)

// Transport sends WebSocket handshakes as RFC 8441 extended CONNECTs over
// H2.
type Transport struct {
	H2 *http2.Transport
}

// RoundTrip implements http.RoundTripper for a WebSocket handshake. The
// response keeps its HTTP/2 Proto (a test can check it); a refusal (not
// 2xx) comes back as the server sent it.
func (t Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	key := req.Header.Get("Sec-WebSocket-Key")
	pr, pw := io.Pipe()
	// The stream outlives the handshake's context (the library closes
	// it), which bounds only the wait for the answer.
	ctx, cancel := context.WithCancel(context.WithoutCancel(req.Context()))
	out, err := http.NewRequestWithContext(ctx, http.MethodConnect, req.URL.String(), pr)
	if err != nil {
		cancel()
		return nil, err
	}
	out.Host = req.Host
	out.Header = req.Header.Clone()
	for _, name := range []string{"Connection", "Upgrade", "Sec-Websocket-Key"} {
		delete(out.Header, name)
	}
	out.Header.Set(":protocol", "websocket")
	stop := context.AfterFunc(req.Context(), cancel)
	resp, err := t.H2.RoundTrip(out)
	if !stop() || err != nil {
		cancel()
		pw.Close()
		if err == nil {
			resp.Body.Close()
			err = req.Context().Err()
		}
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		pw.Close()
		return resp, nil // its body ends with the stream; cancel is then moot
	}
	resp.StatusCode, resp.Status = http.StatusSwitchingProtocols, "101 Switching Protocols"
	resp.Header.Set("Connection", "Upgrade")
	resp.Header.Set("Upgrade", "websocket")
	resp.Header.Set("Sec-WebSocket-Accept", tunnel.AcceptKey(key))
	resp.Body = &stream{ReadCloser: resp.Body, w: pw, cancel: cancel}
	return resp, nil
}

// stream is one extended CONNECT stream: reads are the server's DATA,
// writes become the client's.
type stream struct {
	io.ReadCloser
	w      *io.PipeWriter
	cancel context.CancelFunc
}

func (s *stream) Write(p []byte) (int, error) { return s.w.Write(p) }

func (s *stream) Close() error {
	err := errors.Join(s.w.Close(), s.ReadCloser.Close())
	s.cancel()
	return err
}
