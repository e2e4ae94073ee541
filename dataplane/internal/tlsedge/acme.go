package tlsedge

import (
	"crypto/tls"
	"slices"
)

// ACMETLS1 is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
const ACMETLS1 = "acme-tls/1"

// ALPNAnswerer gives the TLS-ALPN-01 certificate for a server name (nil
// without a challenge): the data plane's acmechallenge.Answers.
type ALPNAnswerer interface {
	ALPNCertificate(serverName string) *tls.Certificate
}

// AnswerALPN makes the listener answer TLS-ALPN-01 challenges from a.
// Call it before serving.
func (c *Certificates) AnswerALPN(a ALPNAnswerer) { c.alpn = a }

// configForClient is tls.Config.GetConfigForClient: a client offering
// acme-tls/1 for a name with a challenge (an ACME server validating) gets
// the challenge certificate and that protocol, nothing else; every other
// handshake goes on with the listener's configuration.
func (c *Certificates) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if c.alpn == nil || !slices.Contains(hello.SupportedProtos, ACMETLS1) {
		return nil, nil
	}
	cert := c.alpn.ALPNCertificate(hello.ServerName)
	if cert == nil {
		return nil, nil
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites,
		NextProtos:   []string{ACMETLS1},
		Certificates: []tls.Certificate{*cert},
	}, nil
}
