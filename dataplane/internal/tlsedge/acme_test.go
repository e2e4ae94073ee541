package tlsedge

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// alpnAnswers is an ALPNAnswerer holding one challenge certificate: the
// real one is acmechallenge.Answers (tested there); this test is about
// the handshake.
type alpnAnswers map[string]*tls.Certificate

func (a alpnAnswers) ALPNCertificate(name string) *tls.Certificate { return a[name] }

// TestACMETLSALPN: a client offering acme-tls/1 for a name with a
// challenge gets the challenge certificate and that protocol; the same
// name without acme-tls/1 gets the served certificate; acme-tls/1 for a
// name without a challenge is refused (no application protocol).
func TestACMETLSALPN(t *testing.T) {
	p := newPKI(t)
	c := New("", nil)
	c.Apply(&config.Config{Certificates: []config.Certificate{p.cert(t, "api", 1, "api.example.com")}})
	chLeaf := p.ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	chCert, err := tls.X509KeyPair([]byte(chLeaf.CertPEM), []byte(chLeaf.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	c.AnswerALPN(alpnAnswers{"api.example.com": &chCert})
	addr := serveTLS(t, c, nil)

	dial := func(sni string, protos ...string) (tls.ConnectionState, error) {
		return dialAt(addr, sni, protos...)
	}
	st, err := dial("api.example.com", ACMETLS1)
	if err != nil || st.NegotiatedProtocol != ACMETLS1 || st.PeerCertificates[0].SerialNumber.Cmp(chLeaf.Cert.SerialNumber) != 0 {
		t.Fatalf("acme-tls/1: proto %q serial %v err %v", st.NegotiatedProtocol, st.PeerCertificates, err)
	}
	st, err = dial("api.example.com", "h2", "http/1.1")
	if err != nil || st.NegotiatedProtocol != "h2" || st.PeerCertificates[0].SerialNumber.Cmp(chLeaf.Cert.SerialNumber) == 0 {
		t.Fatalf("normal client: proto %q err %v, or given the challenge certificate", st.NegotiatedProtocol, err)
	}
	none := New("", nil)
	none.Apply(&config.Config{Certificates: []config.Certificate{p.cert(t, "api", 1, "api.example.com")}})
	none.AnswerALPN(alpnAnswers{})
	if _, err := dialAt(serveTLS(t, none, nil), "api.example.com", ACMETLS1); err == nil {
		t.Fatal("acme-tls/1 without a challenge completed the handshake")
	}
}

func dialAt(addr, sni string, protos ...string) (tls.ConnectionState, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: sni, NextProtos: protos, InsecureSkipVerify: true})
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}
