package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestTLSSessionTicketsAcrossDataPlanes: the control plane makes the
// cluster's session-ticket keys and ships them to its data planes, so a
// Go TLS client (a session cache) that did a full handshake on data plane
// 1 resumes on data plane 2, over TLS 1.2 and 1.3; after the keys rotate
// (every 3 s here) a ticket issued before still resumes; and no key
// appears in any admin answer, the export, the audit log, a log line or a
// data plane's state dir.
func TestTLSSessionTicketsAcrossDataPlanes(t *testing.T) {
	ctx := context.Background()
	cp := startControlPlane(t, "cp-tickets", "bolt:"+filepath.Join(t.TempDir(), "cp.db"),
		"--tls-ticket-rotation", "3s", "--tls-ticket-keep", "1m", "--log-level", "debug")
	up := startUpstream(t, "tickets-svc")
	var dps []*dataPlane
	var addrs []string
	for i := range 2 {
		addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
		// A short wait, so that rotations every 3 s reach the data
		// planes quickly (in production a key is shipped a whole rotation
		// before it encrypts).
		dps = append(dps, startDataPlane(t, fmt.Sprintf("dp-tickets-%d", i+1), cp.url, filepath.Join(t.TempDir(), "dp"),
			"--tls-listen", addr, "--poll-wait", "1s", "--log-level", "debug"))
		addrs = append(addrs, addr)
	}
	// A data plane without a TLS listener holds the certificate too, but
	// does not serve it.
	plain := startDataPlane(t, "dp-tickets-plain", cp.url, filepath.Join(t.TempDir(), "dp"), "--poll-wait", "1s")
	ca := testutil.NewCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	leaf := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "all", config.Route{Paths: []string{"/*"}, Service: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Certificates().Put(ctx, "api", config.Certificate{Cert: leaf.CertPEM, Key: leaf.KeyPEM, SNIs: leaf.Cert.DNSNames}); err != nil {
		t.Fatal(err)
	}
	keyID := func(d *dataPlane) string { s, _ := d.status(t)["tls_ticket_key"].(string); return s }
	// resumed makes one HTTPS request on a new connection to addr and
	// reports whether the TLS session was resumed.
	resumed := func(addr string, conf *tls.Config) (bool, error) {
		conn, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			return false, err
		}
		defer conn.Close()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
		b, err := io.ReadAll(conn)
		if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
			return false, fmt.Errorf("answer %.40q: %v", b, err)
		}
		return conn.ConnectionState().DidResume, nil
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		for _, a := range addrs {
			if _, err := resumed(a, &tls.Config{ServerName: "api.example.com", RootCAs: roots}); err != nil {
				return false
			}
		}
		id1, id2 := keyID(dps[0]), keyID(dps[1])
		return id1 != "" && id2 != ""
	}, "both data planes serving the certificate with the cluster's ticket keys")

	// served_by names the nodes whose TLS listener is on; GET
	// /v1/dataplanes shows each listener and the ticket key it uses.
	testutil.Eventually(t, 20*time.Second, func() bool {
		c, err := cp.admin.Certificates().Get(ctx, "api")
		if err != nil || c.Status == nil || !slices.Equal(c.Status.ServedBy, []string{dps[0].id, dps[1].id}) {
			return false
		}
		list, err := cp.admin.Dataplanes(ctx)
		if err != nil {
			return false
		}
		seen := 0
		for _, n := range list.Nodes {
			switch {
			case n.ID == plain.id && n.TLS == nil && n.Converged:
				seen++
			case (n.ID == dps[0].id || n.ID == dps[1].id) && n.TLS != nil && !n.TLS.HTTP3 && n.TLS.TicketKey != "":
				seen++
			}
		}
		return seen == 3
	}, "served_by listing the two TLS data planes, not the plain one, and their listeners in GET /v1/dataplanes")

	// Full handshake on 1, resumption on 2.
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		conf := &tls.Config{MaxVersion: v, ServerName: "api.example.com", RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		var got []bool
		// The two data planes may be one rotation apart for up to a
		// poll: retry the pair with a fresh cache until they agree.
		testutil.Eventually(t, 20*time.Second, func() bool {
			conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			r1, err1 := resumed(addrs[0], conf)
			r2, err2 := resumed(addrs[1], conf)
			got = []bool{r1, r2}
			return err1 == nil && err2 == nil && !r1 && r2
		}, fmt.Sprintf("TLS %x: full handshake on data plane 1, resumed on data plane 2", v))
		t.Logf("TLS %x: data plane 1 resumed %t, data plane 2 resumed %t", v, got[0], got[1])
	}

	// A ticket issued under one key resumes after the next key took over.
	var before string
	conf := &tls.Config{ServerName: "api.example.com", RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	testutil.Eventually(t, 20*time.Second, func() bool {
		before = keyID(dps[0])
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		_, err := resumed(addrs[0], conf)
		return err == nil && keyID(dps[0]) == before
	}, "a ticket under a known key")
	testutil.Eventually(t, 30*time.Second, func() bool {
		a, b := keyID(dps[0]), keyID(dps[1])
		return a != before && b != before && a != "" && b != ""
	}, "both data planes rotated to the next key")
	if r, err := resumed(addrs[1], conf); err != nil || !r {
		t.Fatalf("a ticket issued before the rotation did not resume after it: resumed %t, %v", r, err)
	}

	// Collect the keys the data planes are sent, as a data plane gets
	// them, and look for them everywhere an operator can read.
	sync, err := client.New(cp.url, dpToken)
	if err != nil {
		t.Fatal(err)
	}
	// Polled until the keys of two rotations have been seen (the
	// encrypting key changed at least once), not for a fixed time.
	keys := map[[32]byte]bool{}
	encrypting := map[[32]byte]bool{}
	testutil.Eventually(t, 30*time.Second, func() bool {
		poll, err := sync.PollSnapshot(ctx, client.PollRequest{After: 1 << 40, Wait: time.Millisecond, NodeID: "e2e-keys"})
		if err != nil || poll.TicketKeysErr != nil || len(poll.TicketKeys) == 0 {
			t.Fatalf("poll: %v %v %v", poll, err, poll.TicketKeysErr)
		}
		if s := fmt.Sprintf("%v %+v", poll, poll.TicketKeys); !strings.Contains(s, "ticket keys (encrypting") {
			t.Fatalf("printed, the keys show more than their count: %.200s", s)
		}
		for _, k := range poll.TicketKeys {
			keys[k] = true
		}
		encrypting[poll.TicketKeys[0]] = true
		return len(encrypting) >= 2
	}, "the keys of two rotations")
	admin := func(path string) string {
		req, _ := http.NewRequest("GET", cp.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	places := map[string]string{
		"export":               admin("/v1/config"),
		"audit":                admin("/v1/audit"),
		"data planes":          admin("/v1/dataplanes"),
		"certificates":         admin("/v1/certificates"),
		"store":                admin("/v1/store"),
		"data plane 1 /status": fmt.Sprint(dps[0].status(t)),
	}
	for _, d := range dps {
		d.term(t)
		places[d.id+" log"] = readAll(d.log)
		places[d.id+" state"] = readAll(filepath.Join(d.stateDir, "snapshot.json"))
	}
	cp.term(t)
	places["control-plane log"] = readAll(cp.log)
	for k := range keys {
		for _, form := range []string{base64.RawURLEncoding.EncodeToString(k[:]), base64.StdEncoding.EncodeToString(k[:]),
			base64.RawStdEncoding.EncodeToString(k[:]), hex.EncodeToString(k[:])} {
			for where, text := range places {
				if strings.Contains(text, form) {
					t.Errorf("a ticket key (%s) appears in the %s", apiv1.TicketKeyID(k), where)
				}
			}
		}
	}
	if !strings.Contains(places["control-plane log"], "tls session-ticket keys rotated") {
		t.Error("no rotation in the control plane's log to check")
	}
	t.Logf("%d keys checked against %d places", len(keys), len(places))
}
