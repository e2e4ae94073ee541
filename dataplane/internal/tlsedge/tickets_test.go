package tlsedge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

func newTicketKey(t *testing.T) [32]byte {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return k
}

// resumes makes one connection to addr with conf (its session cache),
// exchanges a request (TLS 1.3 tickets arrive after the handshake) and
// reports whether the session was resumed.
func resumes(t *testing.T, addr string, conf *tls.Config) bool {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatal(err)
	}
	return conn.ConnectionState().DidResume
}

// TestTicketsAcrossListeners: two listeners (two data planes) with the
// same keys resume each other's sessions; with their own keys (before the
// first keys arrive) they do not; after a rotation a ticket under the
// previous key still resumes, and once that key is dropped it does not.
// Names that ask for a client certificate never resume.
func TestTicketsAcrossListeners(t *testing.T) {
	p := newPKI(t)
	cc := &config.ClientCertAuth{CA: testutil.NewTestCA(t, "clients CA").PEM}
	cfg := &config.Config{
		Certificates: []config.Certificate{p.cert(t, "a", 1, "a.example.com", "m.example.com")},
		Routes:       []*config.Route{{Name: "m", Hosts: []string{"m.example.com"}, Paths: []string{"/*"}, Service: "s", Auth: &config.RouteAuth{ClientCert: cc}}},
	}
	a, b := New("", nil), New("", nil)
	a.Apply(cfg)
	b.Apply(cfg)
	addrA, addrB := serveTLS(t, a, nil), serveTLS(t, b, nil)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		client := func(sni string) *tls.Config {
			return &tls.Config{MaxVersion: v, ServerName: sni, RootCAs: p.roots, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		}
		a.tickets.Store(newLocalTicketKeys())
		b.tickets.Store(newLocalTicketKeys())
		if a.TicketKeyID() != "" {
			t.Fatal("a key ID before any keys")
		}
		own := client("a.example.com")
		if resumes(t, addrA, own) || !resumes(t, addrA, own) {
			t.Fatalf("version %x: no resumption on the same listener with its own keys", v)
		}
		if resumes(t, addrB, own) {
			t.Fatalf("version %x: resumed on another listener with other keys", v)
		}

		k1, k2, k3 := newTicketKey(t), newTicketKey(t), newTicketKey(t)
		a.SetTicketKeys(apiv1.TicketKeys{k1})
		b.SetTicketKeys(apiv1.TicketKeys{k1})
		if a.TicketKeyID() != apiv1.TicketKeyID(k1) || a.TicketKeyID() != b.TicketKeyID() {
			t.Fatalf("key IDs %q %q", a.TicketKeyID(), b.TicketKeyID())
		}
		first, second := client("a.example.com"), client("a.example.com")
		if resumes(t, addrA, first) || resumes(t, addrA, second) {
			t.Fatal("resumed a session of the process's own keys")
		}
		if !resumes(t, addrB, first) {
			t.Fatalf("version %x: a ticket of listener A did not resume on B with the same keys", v)
		}
		// Rotation: k2 encrypts, k1 still decrypts.
		a.SetTicketKeys(apiv1.TicketKeys{k2, k1})
		b.SetTicketKeys(apiv1.TicketKeys{k2, k1})
		if !resumes(t, addrB, second) {
			t.Fatalf("version %x: a ticket under the previous key did not resume after a rotation", v)
		}
		// k1 dropped: its tickets no longer resume (first's last ticket
		// came from B under k1).
		a.SetTicketKeys(apiv1.TicketKeys{k3, k2})
		b.SetTicketKeys(apiv1.TicketKeys{k3, k2})
		if resumes(t, addrA, first) {
			t.Fatalf("version %x: a ticket under a dropped key resumed", v)
		}
		// A name asking for client certificates issues and takes none.
		m := client("m.example.com")
		if resumes(t, addrA, m) || resumes(t, addrB, m) || resumes(t, addrA, m) {
			t.Fatalf("version %x: resumed on a client-certificate name", v)
		}
	}
	// Nil sets (no TLS listener) and empty key lists change nothing.
	var none *Certificates
	none.SetTicketKeys(apiv1.TicketKeys{newTicketKey(t)})
	id := a.TicketKeyID()
	a.SetTicketKeys(nil)
	if a.TicketKeyID() != id || none.TicketKeyID() != "" {
		t.Fatal("empty keys or a nil set changed something")
	}
}

// TestHTTP3TicketsAcrossListeners: HTTP/3 (quic-go) tickets go through the
// same keys: a QUIC client resumes on the other listener.
func TestHTTP3TicketsAcrossListeners(t *testing.T) {
	p := newPKI(t)
	cfg := &config.Config{Certificates: []config.Certificate{p.cert(t, "a", 1, "a.example.com")}}
	a, b := New("", nil), New("", nil)
	k := newTicketKey(t)
	a.SetTicketKeys(apiv1.TicketKeys{k})
	b.SetTicketKeys(apiv1.TicketKeys{k})
	addrA, addrB := gatewayHTTP3(t, a, cfg), gatewayHTTP3(t, b, cfg)
	cache := tls.NewLRUClientSessionCache(4)
	get := func(addr string) bool {
		t.Helper()
		var conn *quic.Conn
		tr := &http3.Transport{
			TLSClientConfig: &tls.Config{RootCAs: p.roots, ClientSessionCache: cache},
			Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
				c, err := quic.DialAddr(ctx, addr, tlsCfg, cfg)
				conn = c
				return c, err
			},
		}
		defer tr.Close()
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		resp, err := hc.Get("https://a.example.com/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// The ticket follows the handshake: wait for it as a client would
		// before its next connection.
		testutil.Eventually(t, 5*time.Second, func() bool {
			s, ok := cache.Get("a.example.com")
			return ok && s != nil
		}, "a session ticket")
		return conn.ConnectionState().TLS.DidResume
	}
	if get(addrA) {
		t.Fatal("resumed on a first connection")
	}
	if !get(addrB) {
		t.Fatal("an HTTP/3 ticket of listener A did not resume on B with the same keys")
	}
}

// BenchmarkHandshakeOtherListener: what a client moved to another data
// plane pays for a new connection: a full handshake (other keys, as
// before cluster keys) or a resumed one (the same keys). TLS 1.3, P-256
// certificate, loopback; client and server on the same cores.
func BenchmarkHandshakeOtherListener(b *testing.B) {
	p := newPKI(b)
	cfg := &config.Config{Certificates: []config.Certificate{p.cert(b, "a", 1, "a.example.com")}}
	for _, shared := range []bool{false, true} {
		name := "full"
		if shared {
			name = "resumed"
		}
		b.Run(name, func(b *testing.B) {
			a, o := New("", nil), New("", nil)
			a.Apply(cfg)
			o.Apply(cfg)
			if shared {
				var k [32]byte
				rand.Read(k[:])
				a.SetTicketKeys(apiv1.TicketKeys{k})
				o.SetTicketKeys(apiv1.TicketKeys{k})
			}
			addrA, addrB := serveTLS(b, a, nil), serveTLS(b, o, nil)
			conf := &tls.Config{ServerName: "a.example.com", RootCAs: p.roots, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			dial := func(addr string) bool {
				conn, err := tls.Dial("tcp", addr, conf)
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				io.Copy(io.Discard, conn)
				return conn.ConnectionState().DidResume
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				dial(addrA) // the ticket, from data plane A
				b.StartTimer()
				if dial(addrB) != shared {
					b.Fatalf("resumed on B: want %t", shared)
				}
			}
		})
	}
}
