package proxy

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/websocket"

	"github.com/portico-gw/portico/shared/config"
)

// TestWebSocketTunnel: a real WebSocket server and client (x/net/websocket)
// through the gateway: with the default limits the echo works both ways;
// with a short tunnel idle timeout, a silent connection is closed.
func TestWebSocketTunnel(t *testing.T) {
	up := httptest.NewServer(websocket.Handler(func(ws *websocket.Conn) {
		for range 100 {
			var msg string
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				return
			}
			if err := websocket.Message.Send(ws, "echo:"+msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Services: []config.Service{{Name: "ws", Targets: []config.Target{{URL: up.URL}}}},
		Routes:   []*config.Route{{Name: "ws", Paths: []string{"/ws"}, Service: "ws"}},
	}
	for _, tt := range []struct {
		name string
		lim  Limits
	}{
		{"default limits", Limits{}},
		{"idle timeout", Limits{TunnelIdleTimeout: 300 * time.Millisecond}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(prometheus.NewRegistry()), Limits: tt.lim})
			applyCfg(t, h, 1, cfg)
			addr := trafficServer(t, h, 0)
			ws, err := websocket.Dial("ws://"+addr+"/ws", "", "http://"+addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			_ = ws.SetDeadline(time.Now().Add(10 * time.Second))
			for i := range 3 {
				var got string
				if err := websocket.Message.Send(ws, strings.Repeat("x", i+1)); err != nil {
					t.Fatal(err)
				}
				if err := websocket.Message.Receive(ws, &got); err != nil || got != "echo:"+strings.Repeat("x", i+1) {
					t.Fatalf("echo %d = %q, %v", i, got, err)
				}
			}
			if tt.lim.TunnelIdleTimeout == 0 {
				return
			}
			// Silence past the idle timeout: the gateway closes the tunnel
			// (EOF long before the 10s deadline).
			var got string
			err = websocket.Message.Receive(ws, &got)
			if err == nil || strings.Contains(err.Error(), "timeout") {
				t.Fatalf("idle tunnel: got %q, %v; want it closed", got, err)
			}
		})
	}
}
