package api

import (
	"slices"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// What the admin API shows of a certificate: never its private key (not
// on GET, not in a write's answer, not in the export), and a status
// computed on output: the leaf's subject, names, issuer, serial and
// expiry, warnings, and the data planes that serve it.

// present prepares an object of any kind for output; only certificates
// and services (a service's tls.client_key) change. obj must be a copy the
// catalog does not hold.
func (s *server) present(obj any) {
	if svc, ok := obj.(*config.Service); ok {
		*svc = svc.Redacted()
		return
	}
	if cs, ok := obj.(*config.Consumer); ok {
		*cs = cs.Redacted() // basic-auth hashes
		return
	}
	if is, ok := obj.(*config.Issuer); ok {
		*is = is.Redacted() // client secrets, session key
		return
	}
	if r, ok := obj.(*config.Route); ok {
		// How the route ranks among routes claiming the same requests
		// (issue 16), output only.
		r.Precedence = r.ComputePrecedence()
		return
	}
	c, ok := obj.(*config.Certificate)
	if !ok {
		return
	}
	*c = c.Redacted()
	st := c.Describe(time.Now())
	if st != nil {
		st.ServedBy = s.servedBy(c)
	}
	c.Status = st
}

// presentAll is present over a list the catalog holds: certificates and
// services are copied first.
func presentAll[T any](s *server, items []T) []T {
	if len(items) == 0 {
		return items
	}
	switch any(&items[0]).(type) {
	case *config.Certificate, *config.Service, *config.Route, *config.Consumer, *config.Issuer:
	default:
		return items
	}
	out := slices.Clone(items)
	for i := range out {
		s.present(any(&out[i]))
	}
	return out
}

// servedBy lists the connected data planes whose TLS listener is on and
// that applied the certificate's revision (in the current epoch) without
// rejecting it.
func (s *server) servedBy(c *config.Certificate) []string {
	if s.Nodes == nil {
		return nil
	}
	cur := s.Catalog.Current().State
	var out []string
	for _, n := range s.Nodes.ListAt(cur.Revision, cur.Epoch.ID) {
		if n.Status != "connected" || n.TLS == nil || n.AppliedRevision < c.Revision || n.AppliedEpoch != cur.Epoch.ID {
			continue
		}
		if slices.ContainsFunc(n.Rejected, func(r config.Rejected) bool {
			return r.Kind == config.KindCertificate && r.Name == c.Name
		}) {
			continue
		}
		out = append(out, n.ID)
	}
	return out
}
