package proxy

import (
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/shared/config"
)

// BenchmarkWebSocket measures WebSocket tunnels through the gateway, the
// HTTP/1.1 Upgrade against RFC 8441 over HTTP/2 (h2c here, the TLS
// listener's HTTP/2 settings), with the service reached directly as the
// baseline: an echo round trip of a 1 KiB and of a 1 MiB message on an
// open tunnel, and a whole handshake (open and close). Real client and
// server (coder/websocket) on loopback; compare ns/op and MB/s between
// the sub-benchmarks of one run.
func BenchmarkWebSocket(b *testing.B) {
	up := newWSEcho(b)
	cfg := &config.Config{
		Services: []config.Service{{Name: "ws", Targets: []config.Target{{URL: up.URL}}}},
		Routes:   []*config.Route{{Name: "ws", Paths: []string{"/ws"}, Service: "ws"}},
	}
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(prometheus.NewRegistry())})
	applyCfg(b, h, 1, cfg)
	addr := h2cServer(b, h)
	tr := h2Transport(b, addr)
	dial := map[string]func() *websocket.Conn{
		"direct": func() *websocket.Conn {
			c, _ := dialWS(b, "ws"+strings.TrimPrefix(up.URL, "http")+"/ws", nil)
			return c
		},
		"h1": func() *websocket.Conn { c, _ := dialWS(b, "ws://"+addr+"/ws", nil); return c },
		"h2": func() *websocket.Conn { c, _ := dialWSH2(b, tr, "http://"+addr+"/ws", nil); return c },
	}
	for _, via := range []string{"direct", "h1", "h2"} {
		for _, size := range []int{1 << 10, 1 << 20} {
			b.Run(via+"/echo-"+map[int]string{1 << 10: "1KiB", 1 << 20: "1MiB"}[size], func(b *testing.B) {
				c := dial[via]()
				c.SetReadLimit(2 << 20)
				msg := strings.Repeat("x", size)
				b.SetBytes(int64(2 * size))
				for b.Loop() {
					if got := echo(b, c, websocket.MessageBinary, msg); len(got) != size+1 {
						b.Fatalf("echo: %d bytes", len(got))
					}
				}
				c.Close(websocket.StatusNormalClosure, "")
			})
		}
		b.Run(via+"/handshake", func(b *testing.B) {
			for b.Loop() {
				if err := dial[via]().Close(websocket.StatusNormalClosure, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
