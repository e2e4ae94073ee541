// The tests are an external package on purpose: test files inside package
// extconnect would make it import net/http (and testing), so it would be
// initialised after net/http, which is the very thing it must not be.
package extconnect_test

//lint:file-ignore SA1019 net/http's Transport refuses the ":protocol" header of an extended CONNECT (RFC 8441); x/net's HTTP/2 transport, deprecated for other uses, sends it.

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/portico-gw/portico/dataplane/internal/extconnect"
)

// TestGODEBUG runs this test binary again with an operator's GODEBUG
// values: extended CONNECT is on unless the operator said
// http2xconnect=0, and other GODEBUG entries are kept.
func TestGODEBUG(t *testing.T) {
	if os.Getenv("PORTICO_EXTCONNECT_WANT") != "" {
		return // the child runs TestHTTP2Server only
	}
	for _, tc := range []struct {
		godebug, want, final string
	}{
		{"", "on", "http2xconnect=1"},
		{"madvdontneed=1", "on", "madvdontneed=1,http2xconnect=1"},
		{"http2xconnect=1", "on", "http2xconnect=1"},
		{"http2xconnect=0", "off", "http2xconnect=0"},
		{"x509sha1=1,http2xconnect=0", "off", "x509sha1=1,http2xconnect=0"},
	} {
		t.Run(tc.godebug, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHTTP2Server$", "-test.v")
			cmd.Env = append(os.Environ(), "GODEBUG="+tc.godebug, "PORTICO_EXTCONNECT_WANT="+tc.want,
				"PORTICO_EXTCONNECT_GODEBUG="+tc.final)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestHTTP2Server") {
				t.Fatalf("GODEBUG=%q: %v\n%s", tc.godebug, err, out)
			}
		})
	}
}

// TestHTTP2Server: net/http's HTTP/2 server in this binary (which links
// package extconnect) announces extended CONNECT
// (SETTINGS_ENABLE_CONNECT_PROTOCOL): an HTTP/2 client sends an extended
// CONNECT only to a server that did, and refuses otherwise. Run directly
// it expects the default, on; TestGODEBUG runs it under other GODEBUGs.
func TestHTTP2Server(t *testing.T) {
	want := os.Getenv("PORTICO_EXTCONNECT_WANT") != "off"
	if final := os.Getenv("PORTICO_EXTCONNECT_GODEBUG"); final != "" && os.Getenv("GODEBUG") != final {
		t.Fatalf("GODEBUG = %q, want %q", os.Getenv("GODEBUG"), final)
	}
	if extconnect.Enabled() != want {
		t.Fatalf("Enabled() = %t with GODEBUG=%q", extconnect.Enabled(), os.Getenv("GODEBUG"))
	}
	var protocol string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protocol = r.Header.Get(":protocol")
		w.WriteHeader(http.StatusOK)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, srv.URL+"/chat", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(":protocol", "websocket")
	// net/http's own client refuses a ":protocol" header before it picks
	// HTTP/2; x/net's HTTP/2 transport (the source net/http bundles) sends it.
	tr := &http2.Transport{TLSClientConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if !want {
		if err == nil || !strings.Contains(err.Error(), "extended connect not supported by peer") {
			t.Fatalf("with extended CONNECT off: %v, want the client's refusal", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("extended CONNECT: %v", err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || protocol != "websocket" {
		t.Fatalf("answer %s %d, :protocol %q", resp.Proto, resp.StatusCode, protocol)
	}
}
