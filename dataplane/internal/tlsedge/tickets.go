package tlsedge

import (
	"crypto/tls"
	"slices"

	"github.com/portico-gw/portico/shared/apiv1"
)

// Session tickets. A client resumes its TLS session with a ticket the
// listener encrypted; for a client that a load balancer sends to another
// data plane to resume too, every data plane must hold the same keys. The
// control plane makes and rotates them for the cluster and ships them on
// every sync answer (controlplane/internal/tickets); SetTicketKeys puts
// them in service.
//
// The keys are held by a tls.Config of their own (keys), which the
// listener's configurations reach through WrapSession and UnwrapSession
// (its EncryptTicket and DecryptTicket). So one atomic swap changes them
// for every configuration made from Config, including the copies
// net/http and quic-go make when they start serving (HTTP/3's tickets go
// through the same two functions, quic-go adding its own state to them),
// without a restart and without touching open connections.
//
// Until the first keys arrive (a data plane that has not reached the
// control plane yet), keys is an empty tls.Config: crypto/tls's own
// random keys, rotated daily, per process, as before. A data plane keeps
// the last keys it received while the control plane is away; they are
// never written to disk, so a restart begins with its own keys again.
//
// The handshakes that ask for a client certificate keep tickets off
// (SessionTicketsDisabled in the mTLS configuration, clientcert.go):
// crypto/tls checks that before calling either function. 0-RTT stays off
// (http3.go).

// ticketKeys are the keys in service.
type ticketKeys struct {
	cfg  *tls.Config
	keys apiv1.TicketKeys // nil: crypto/tls's own
}

func newLocalTicketKeys() *ticketKeys { return &ticketKeys{cfg: &tls.Config{}} }

// SetTicketKeys puts the cluster's session-ticket keys in service for new
// handshakes: keys[0] encrypts new tickets, all of them decrypt. The same
// keys again change nothing; no keys change nothing. Safe on a nil set
// (no TLS listener).
func (c *Certificates) SetTicketKeys(keys apiv1.TicketKeys) {
	if c == nil || len(keys) == 0 || slices.Equal(keys, c.tickets.Load().keys) {
		return
	}
	keys = slices.Clone(keys)
	cfg := &tls.Config{}
	b := make([][32]byte, len(keys))
	copy(b, keys)
	cfg.SetSessionTicketKeys(b)
	c.tickets.Store(&ticketKeys{cfg: cfg, keys: keys})
	c.log.Info("TLS session-ticket keys in service", "keys", keys)
}

// TicketKeyID names the key that encrypts new tickets
// (apiv1.TicketKeyID); "" while the process uses crypto/tls's own keys.
func (c *Certificates) TicketKeyID() string {
	if c == nil {
		return ""
	}
	if k := c.tickets.Load().keys; len(k) > 0 {
		return apiv1.TicketKeyID(k[0])
	}
	return ""
}

// wrapSession is tls.Config.WrapSession: the ticket encrypted with the
// keys in service.
func (c *Certificates) wrapSession(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	return c.tickets.Load().cfg.EncryptTicket(cs, ss)
}

// unwrapSession is tls.Config.UnwrapSession: nil (a full handshake) for a
// ticket none of the keys in service decrypts.
func (c *Certificates) unwrapSession(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	return c.tickets.Load().cfg.DecryptTicket(identity, cs)
}
