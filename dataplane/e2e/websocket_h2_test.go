package e2e

//lint:file-ignore SA1019 net/http's Transport refuses the ":protocol" header of an extended CONNECT (RFC 8441); x/net's HTTP/2 transport, deprecated for other uses, sends it.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"golang.org/x/net/http2"

	"github.com/portico-gw/portico/dataplane/internal/tunnel/h2client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// wsApp is a real WebSocket service (coder/websocket) behind the data
// planes: "/" is a page for the browser, any other path a WebSocket that
// echoes each message prefixed with the consumer the gateway forwarded and
// the HTTP version the service was spoken to in (always HTTP/1.1: the
// gateway bridges RFC 8441 to an Upgrade).
func wsApp(t *testing.T) string {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, "<!doctype html><title>ws</title><p>WebSocket over HTTP/2")
			return
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(4 << 20)
		prefix := r.Header.Get("X-Consumer-Name") + "@" + r.Proto + ":"
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(prefix), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(app.Close)
	return app.URL
}

// tunnelsOpened reads a data plane's portico_tunnels_opened_total for a
// route and HTTP version.
func tunnelsOpened(t *testing.T, dp *dataPlane, route, version string) float64 {
	t.Helper()
	m, err := scrapeMetrics(dp.ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return metricSum(m["portico_tunnels_opened_total"], map[string]string{"route": route, "http_version": version})
}

// TestWebSocketOverHTTP2 runs the built data plane with --tls-listen:
// WebSocket over HTTP/2 (RFC 8441) is on by default, so an HTTP/2
// client's extended CONNECT is accepted and bridged to the service; with
// the operator's GODEBUG=http2xconnect=0 the same binary does not
// announce it and clients use HTTP/1.1.
//
// Clients: Go (coder/websocket framing over x/net's HTTP/2 transport:
// the handshake's auth 401 and rate limit 429, a 1 MiB echo) and a real
// headless Chromium, which opens new WebSocket('wss://…') from a page it
// loaded over HTTP/2 from the data plane. Chromium chooses by itself
// whether to use the HTTP/2 connection; the data plane's metric says
// which it did: http_version "2" with the default, "1.1" with it off.
func TestWebSocketOverHTTP2(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cp := startControlPlane(t, "cp-wsh2", "bolt:"+filepath.Join(dir, "cp.db"))
	tlsOn := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	tlsOff := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	on := startDataPlane(t, "dp-h2ws", cp.url, filepath.Join(dir, "on"), "--tls-listen", tlsOn, "--tls-default-cert", "edge")
	off := startDataPlaneEnv(t, []string{"GODEBUG=http2xconnect=0"}, "dp-h1ws", cp.url, filepath.Join(dir, "off"),
		"--tls-listen", tlsOff, "--tls-default-cert", "edge")

	ca := testutil.NewCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	leaf := ca.Issue(t, []string{"ws.example.com"}, time.Time{}, time.Time{})
	if _, _, err := cp.admin.Certificates().Put(ctx, "edge", config.Certificate{Cert: leaf.CertPEM, Key: leaf.KeyPEM, SNIs: []string{"ws.example.com"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Services().Put(ctx, "app", svc(wsApp(t))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Consumers().Put(ctx, "alice", config.Consumer{}); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]config.Route{
		"page": {Paths: []string{"/"}, Service: "app"},
		"open": {Paths: []string{"/open"}, Methods: []string{"GET"}, Service: "app"},
		"chat": {Paths: []string{"/chat"}, Methods: []string{"GET"}, Service: "app", Auth: &config.RouteAuth{APIKey: true},
			RateLimit: &config.RateLimit{Limit: 2, Window: config.Duration(time.Hour), Key: "consumer"}},
	} {
		if _, _, err := cp.admin.Routes().Put(ctx, name, r); err != nil {
			t.Fatal(err)
		}
	}
	_, key := createKey(t, cp.url, "alice")

	h2 := func(addr string) *http2.Transport {
		tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "ws.example.com"},
			DialTLSContext: func(ctx context.Context, network, _ string, cfg *tls.Config) (net.Conn, error) {
				return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
			}}
		t.Cleanup(tr.CloseIdleConnections)
		return tr
	}
	dial := func(tr http.RoundTripper, url string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr, HTTPClient: &http.Client{Transport: tr}})
		if c != nil {
			t.Cleanup(func() { c.CloseNow() })
		}
		return c, resp, err
	}
	echo := func(c *websocket.Conn, typ websocket.MessageType, msg string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.Write(ctx, typ, []byte(msg)); err != nil {
			t.Fatalf("write: %v", err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(got)
	}

	// The default data plane: extended CONNECT accepted. The first
	// handshakes also wait for the configuration to arrive.
	onRT := h2client.Transport{H2: h2(tlsOn)}
	url := "https://ws.example.com/chat"
	testutil.Eventually(t, 15*time.Second, func() bool {
		_, resp, _ := dial(onRT, url, nil)
		return resp != nil && resp.StatusCode == http.StatusUnauthorized
	}, "the data plane refusing a WebSocket over HTTP/2 without a key (401)")
	_, resp, _ := dial(onRT, url, http.Header{"X-Api-Key": {"pk_forged"}})
	if resp == nil || resp.StatusCode != http.StatusUnauthorized || resp.ProtoMajor != 2 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("forged key: %+v", resp)
	}
	withKey := http.Header{"X-Api-Key": {key}}
	a, resp, err := dial(onRT, url, withKey)
	if err != nil || resp.ProtoMajor != 2 {
		t.Fatalf("handshake with a key: %v %+v", err, resp)
	}
	if got := echo(a, websocket.MessageText, "hello"); got != "alice@HTTP/1.1:hello" {
		t.Fatalf("echo %q", got)
	}
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	a.SetReadLimit(2 << 20)
	if got := echo(a, websocket.MessageBinary, big); got != "alice@HTTP/1.1:"+big {
		t.Fatalf("1 MiB echo: %d bytes back", len(got))
	}
	if _, _, err := dial(onRT, url, withKey); err != nil {
		t.Fatalf("second handshake: %v", err)
	}
	if _, resp, _ := dial(onRT, url, withKey); resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third handshake within a limit of 2: %+v, want 429", resp)
	}
	if got := echo(a, websocket.MessageText, "still open"); got != "alice@HTTP/1.1:still open" {
		t.Fatalf("after the 429: %q", got)
	}
	if n := tunnelsOpened(t, on, "chat", "2"); n != 2 {
		t.Fatalf("%s: portico_tunnels_opened_total{route=chat,http_version=2} = %v", on.id, n)
	}

	// GODEBUG=http2xconnect=0: the same binary does not announce
	// extended CONNECT; HTTP/1.1 WebSocket works as before.
	offRT := h2client.Transport{H2: h2(tlsOff)}
	testutil.Eventually(t, 15*time.Second, func() bool {
		code, _ := getTLS(tlsOff, roots, "/")
		return code == http.StatusOK
	}, off.id+" serving the configuration")
	if _, _, err := dial(offRT, "https://ws.example.com/open", nil); err == nil || !strings.Contains(err.Error(), "extended connect not supported by peer") {
		t.Fatalf("%s with GODEBUG=http2xconnect=0: %v, want no extended CONNECT", off.id, err)
	}
	h1 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "ws.example.com"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, tlsOff)
		}}
	t.Cleanup(h1.CloseIdleConnections)
	c, resp, err := dial(h1, "wss://ws.example.com/open", nil)
	if err != nil || resp.ProtoMajor != 1 {
		t.Fatalf("%s over HTTP/1.1: %v", off.id, err)
	}
	if got := echo(c, websocket.MessageText, "h1"); got != "@HTTP/1.1:h1" {
		t.Fatalf("echo %q", got)
	}

	// A real browser: the page over HTTP/2, then new WebSocket(wss://).
	for _, tc := range []struct {
		dp      *dataPlane
		addr    string
		version string
	}{
		{on, tlsOn, "2"},
		{off, tlsOff, "1.1"},
	} {
		before := tunnelsOpened(t, tc.dp, "open", tc.version)
		got := browserWebSocket(t, tc.addr, leaf.Cert.RawSubjectPublicKeyInfo)
		if got != "@HTTP/1.1:from chromium" {
			t.Fatalf("%s: Chromium's WebSocket echoed %q", tc.dp.id, got)
		}
		if n := tunnelsOpened(t, tc.dp, "open", tc.version); n != before+1 {
			t.Fatalf("%s: Chromium's WebSocket not counted under http_version=%s (%v → %v)", tc.dp.id, tc.version, before, n)
		}
	}
}

// getTLS GETs path from the TLS listener at addr as ws.example.com.
func getTLS(addr string, roots *x509.CertPool, path string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "ws.example.com"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://ws.example.com" + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// browserWebSocket starts a headless Chromium (CHROMIUM_BIN, installed by
// scripts/ensure-chromium.sh) that resolves ws.example.com to the TLS
// listener at addr and trusts its certificate (by its public key), loads
// the page there (over HTTP/2: the test checks), opens
// new WebSocket('wss://ws.example.com:PORT/open'), sends one message and
// returns the answer.
func browserWebSocket(t *testing.T, addr string, spki []byte) string {
	t.Helper()
	bin := os.Getenv("CHROMIUM_BIN")
	if bin == "" {
		bin = "/usr/bin/chromium"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("no Chromium: set CHROMIUM_BIN or run scripts/ensure-chromium.sh (make test does)")
		}
	}
	host, port, _ := net.SplitHostPort(addr)
	pin := sha256.Sum256(spki)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("host-resolver-rules", "MAP ws.example.com "+host),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(pin[:])),
	)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	origin := "https://ws.example.com:" + port
	if _, err := chromedp.Run(ctx, chromedp.Navigate(origin+"/")); err != nil {
		t.Fatalf("Chromium loading %s: %v", origin, err)
	}
	proto, err := chromedp.Run(ctx, chromedp.Evaluate[string](`performance.getEntriesByType("navigation")[0].nextHopProtocol`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`new Promise((resolve, reject) => {
		const ws = new WebSocket("wss://ws.example.com:`+port+`/open");
		ws.onopen = () => ws.send("from chromium");
		ws.onmessage = (e) => { resolve(e.data); ws.close(); };
		ws.onerror = () => reject(new Error("WebSocket error"));
	})`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("Chromium's WebSocket: %v", err)
	}
	if proto != "h2" {
		t.Fatalf("Chromium loaded the page over %q, want h2", proto)
	}
	return got
}
