package tlsedge

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestH2C: with --h2c the plain listener takes HTTP/2 with prior knowledge
// (Go's client, curl --http2-prior-knowledge) beside HTTP/1.1, and the
// handler's defences answer as on the other listeners.
func TestH2C(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(app.Close)
	h := newProxy(t, &config.Config{
		Services: []config.Service{{Name: "app", Targets: []config.Target{{URL: app.URL}}}},
		Routes:   []*config.Route{{Name: "site", Paths: []string{"/*"}, Service: "app", MaxBodyBytes: 1024}},
	}, New("", nil))
	srv := h.Server(nil)
	ConfigureH2C(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	base := "http://" + ln.Addr().String()

	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &p}}
	for _, tc := range []struct {
		method, path string
		body         []byte
		want         int
	}{
		{"GET", "/hello", nil, 200},
		{"POST", "/upload", make([]byte, 4096), 413},
		{"GET", "/x/..;/y", nil, 400},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, bytes.NewReader(tc.body))
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != tc.want {
			t.Fatalf("%s %s: %d over %s, want %d over HTTP/2", tc.method, tc.path, resp.StatusCode, resp.Proto, tc.want)
		}
	}
	if resp, err := http.Get(base + "/hello"); err != nil || resp.ProtoMajor != 1 || resp.StatusCode != 200 {
		t.Fatalf("HTTP/1.1 beside h2c: %v %v", resp, err)
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is required: apt-get install curl")
	}
	out, err := exec.Command(curl, "-sS", "--http2-prior-knowledge", "-w", " %{http_version}", base+"/hello").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok 2" {
		t.Fatalf("curl --http2-prior-knowledge: %v: %q", err, out)
	}
}
