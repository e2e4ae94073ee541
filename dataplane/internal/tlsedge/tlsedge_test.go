package tlsedge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// pki is a CA and what the tests issue from it.
type pki struct {
	ca    *testutil.CA
	roots *x509.CertPool
}

func newPKI(t testing.TB) *pki {
	ca := testutil.NewCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &pki{ca: ca, roots: roots}
}

// cert issues a certificate object named name for snis (the leaf's SANs).
func (p *pki) cert(t testing.TB, name string, rev int64, snis ...string) config.Certificate {
	l := p.ca.Issue(t, snis, time.Time{}, time.Time{})
	return config.Certificate{Name: name, Cert: l.CertPEM, Key: l.KeyPEM, SNIs: snis, Meta: config.Meta{Version: rev, Revision: rev}}
}

// serveTLS serves h with the certificates of c on a loopback port.
func serveTLS(t testing.TB, c *Certificates, h http.Handler) string {
	t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 60 << 10}
	Configure(srv, c)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// handshake connects with the server name sni and returns the subject CN
// of the certificate served.
func handshake(t *testing.T, addr, sni string, conf *tls.Config) (string, error) {
	t.Helper()
	if conf == nil {
		conf = &tls.Config{}
	}
	conf.ServerName = sni
	conf.InsecureSkipVerify = true // the tests inspect what is served
	conn, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// TestSNISelection: exact name before wildcard, a wildcard covers one
// label only, no SNI gets the default, an unknown name fails the
// handshake.
func TestSNISelection(t *testing.T) {
	p := newPKI(t)
	c := New("fallback", nil)
	rejected := c.Apply(&config.Config{Certificates: []config.Certificate{
		p.cert(t, "exact", 1, "api.example.com"),
		p.cert(t, "fallback", 1, "fallback.example.net"),
		p.cert(t, "wild", 1, "*.example.com"),
	}})
	if len(rejected) != 0 {
		t.Fatalf("rejected: %v", rejected)
	}
	addr := serveTLS(t, c, nil)
	for _, tc := range []struct{ sni, want string }{
		{"api.example.com", "api.example.com"},
		{"API.Example.com", "api.example.com"},
		{"www.example.com", "*.example.com"},
		{"", "fallback.example.net"},
		{"fallback.example.net", "fallback.example.net"},
		{"a.b.example.com", ""}, // two labels under the wildcard
		{"example.com", ""},     // the bare domain
		{"other.org", ""},
	} {
		got, err := handshake(t, addr, tc.sni, nil)
		if tc.want == "" {
			if err == nil {
				t.Errorf("SNI %q: served %q, want a failed handshake", tc.sni, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("SNI %q: served %q (%v), want %q", tc.sni, got, err, tc.want)
		}
	}
	// Without a default certificate, a client without SNI is refused.
	nodef := New("", nil)
	nodef.Apply(&config.Config{Certificates: []config.Certificate{p.cert(t, "exact", 1, "api.example.com")}})
	if got, err := handshake(t, serveTLS(t, nodef, nil), "", nil); err == nil {
		t.Fatalf("no SNI and no default: served %q", got)
	}
}

// TestProtocolFloor: TLS 1.0 and 1.1 clients, and TLS 1.2 clients offering
// only CBC or RSA-key-exchange suites, are refused; TLS 1.2 with an AEAD
// suite and TLS 1.3 pass; ALPN negotiates h2.
func TestProtocolFloor(t *testing.T) {
	p := newPKI(t)
	c := New("", nil)
	c.Apply(&config.Config{Certificates: []config.Certificate{p.cert(t, "a", 1, "a.example.com")}})
	addr := serveTLS(t, c, nil)
	refused := []struct {
		name string
		conf *tls.Config
	}{
		{"TLS 1.0", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}},
		{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}},
		{"TLS 1.2 CBC only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}},
		{"TLS 1.2 RSA key exchange", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}}},
		{"TLS 1.2 3DES", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA}}},
	}
	for _, tc := range refused {
		if _, err := handshake(t, addr, "a.example.com", tc.conf); err == nil {
			t.Errorf("%s: handshake succeeded", tc.name)
		}
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		conf := &tls.Config{MinVersion: v, MaxVersion: v, NextProtos: []string{"h2", "http/1.1"}, ServerName: "a.example.com", RootCAs: p.roots}
		conn, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			t.Fatalf("version %x: %v", v, err)
		}
		st := conn.ConnectionState()
		conn.Close()
		if st.NegotiatedProtocol != "h2" || !isAEAD(st.CipherSuite, st.Version) {
			t.Fatalf("version %x: ALPN %q, suite %s", v, st.NegotiatedProtocol, tls.CipherSuiteName(st.CipherSuite))
		}
	}
}

func isAEAD(suite, version uint16) bool {
	if version == tls.VersionTLS13 {
		return true
	}
	for _, s := range CipherSuites {
		if s == suite {
			return true
		}
	}
	return false
}

// TestSessionResumption: a client with a session cache resumes its
// session on the next connection.
func TestSessionResumption(t *testing.T) {
	p := newPKI(t)
	c := New("", nil)
	c.Apply(&config.Config{Certificates: []config.Certificate{p.cert(t, "a", 1, "a.example.com")}})
	addr := serveTLS(t, c, nil)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		conf := &tls.Config{MaxVersion: v, ServerName: "a.example.com", RootCAs: p.roots, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		var resumed []bool
		for range 2 {
			conn, err := tls.Dial("tcp", addr, conf)
			if err != nil {
				t.Fatal(err)
			}
			// TLS 1.3 tickets arrive after the handshake: an exchange
			// reads them.
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
			if _, err := io.ReadAll(conn); err != nil {
				t.Fatal(err)
			}
			resumed = append(resumed, conn.ConnectionState().DidResume)
			conn.Close()
		}
		if resumed[0] || !resumed[1] {
			t.Fatalf("version %x: resumed %v, want [false true]", v, resumed)
		}
	}
}

// TestRotationKeepsOpenConnections: a rotated certificate is served to
// the next handshake while a keep-alive connection set up with the old
// one goes on serving requests.
func TestRotationKeepsOpenConnections(t *testing.T) {
	p := newPKI(t)
	c := New("", nil)
	old := p.cert(t, "api", 1, "api.example.com")
	c.Apply(&config.Config{Certificates: []config.Certificate{old}})
	addr := serveTLS(t, c, nil)

	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: p.roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	get := func() (serial string, reused bool) {
		t.Helper()
		var info httptrace.GotConnInfo
		req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { info = i }}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("proto %s, want HTTP/2", resp.Proto)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String(), info.Reused
	}
	first, _ := get()
	renewed := p.cert(t, "api", 2, "api.example.com")
	if rej := c.Apply(&config.Config{Certificates: []config.Certificate{renewed}}); len(rej) != 0 {
		t.Fatal(rej)
	}
	again, reused := get()
	if !reused || again != first {
		t.Fatalf("the open connection was not kept: reused=%v, serial %s → %s", reused, first, again)
	}
	fresh, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "api.example.com", RootCAs: p.roots})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if s := fresh.ConnectionState().PeerCertificates[0].SerialNumber.String(); s == first {
		t.Fatal("a new handshake after the rotation still got the old certificate")
	}
}

// TestRejectedCertificateLeavesOthers: a certificate that does not
// validate (here: a key of another certificate; a name claimed twice) is
// left out and reported; the others are served.
func TestRejectedCertificateLeavesOthers(t *testing.T) {
	p := newPKI(t)
	good := p.cert(t, "good", 1, "good.example.com")
	bad := p.cert(t, "bad", 1, "bad.example.com")
	bad.Key = p.cert(t, "x", 1, "x.example.com").Key
	twice := p.cert(t, "twice", 1, "good.example.com")
	c := New("", nil)
	rejected := c.Apply(&config.Config{Certificates: []config.Certificate{bad, good, twice}})
	if len(rejected) != 2 || rejected[0].Name != "bad" || !strings.Contains(rejected[0].Reason, "key") || rejected[1].Name != "twice" {
		t.Fatalf("rejected = %+v", rejected)
	}
	addr := serveTLS(t, c, nil)
	if cn, err := handshake(t, addr, "good.example.com", nil); err != nil || cn != "good.example.com" {
		t.Fatalf("good: %q, %v", cn, err)
	}
	if _, err := handshake(t, addr, "bad.example.com", nil); err == nil {
		t.Fatal("the rejected certificate was served")
	}
}

// TestCurlHTTPS: a real client (curl) over HTTPS with the test CA and
// --resolve negotiates HTTP/2, and HTTP/1.1 when asked.
func TestCurlHTTPS(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is required: apt-get install curl")
	}
	p := newPKI(t)
	c := New("", nil)
	c.Apply(&config.Config{Certificates: []config.Certificate{p.cert(t, "wild", 1, "*.example.com")}})
	addr := serveTLS(t, c, nil)
	_, port, _ := net.SplitHostPort(addr)
	caFile := p.ca.WriteCA(t, t.TempDir())
	for _, tc := range []struct {
		flag, version, body string
	}{
		{"--http2", "2", "HTTP/2.0"},
		{"--http1.1", "1.1", "HTTP/1.1"},
	} {
		out, err := exec.Command(curl, "-sS", tc.flag, "--cacert", caFile, "--resolve", "shop.example.com:"+port+":127.0.0.1",
			"-w", " %{http_version}", "https://shop.example.com:"+port+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v: %s", tc.flag, err, out)
		}
		if got := string(out); got != tc.body+" "+tc.version {
			t.Fatalf("curl %s: %q, want %q", tc.flag, got, tc.body+" "+tc.version)
		}
	}
	// TLS 1.1 at most: refused.
	out, err := exec.Command(curl, "-sS", "--tlsv1.0", "--tls-max", "1.1", "--cacert", caFile,
		"--resolve", "shop.example.com:"+port+":127.0.0.1", "https://shop.example.com:"+port+"/").CombinedOutput()
	if err == nil {
		t.Fatalf("curl with TLS ≤ 1.1 succeeded: %s", out)
	}
}

// TestNoCertificateError: the handshake error names the cause.
func TestNoCertificateError(t *testing.T) {
	c := New("", nil)
	if _, err := c.GetCertificate(&tls.ClientHelloInfo{ServerName: "x.example.com"}); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("err = %v", err)
	}
}

// TestUnchangedCertificatesKeepTheTable: a snapshot that changed no
// certificate (a route write) keeps the compiled table itself; a changed
// one builds a new table that reuses the parsed certificates it kept.
func TestUnchangedCertificatesKeepTheTable(t *testing.T) {
	p := newPKI(t)
	a, b := p.cert(t, "a", 1, "a.example.com"), p.cert(t, "b", 1, "b.example.com")
	c := New("", nil)
	c.Apply(&config.Config{Certificates: []config.Certificate{a, b}})
	first := c.cur.Load()
	c.Apply(&config.Config{Certificates: []config.Certificate{a, b}, Routes: []*config.Route{{Name: "r"}}})
	if c.cur.Load() != first {
		t.Fatal("a snapshot without certificate changes compiled a new table")
	}
	b2 := p.cert(t, "b", 2, "b.example.com")
	c.Apply(&config.Config{Certificates: []config.Certificate{a, b2}})
	second := c.cur.Load()
	if second == first || second.byName["a"] != first.byName["a"] || second.byName["b"] == first.byName["b"] {
		t.Fatal("a changed certificate: want a new table reusing a's entry and a new one for b")
	}
}
