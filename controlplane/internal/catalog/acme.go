package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/config"
)

// ACMEActor is who the ACME client's writes are audited as.
var ACMEActor = Actor{Principal: "acme"}

// UpdateACME applies a change of the ACME client (controlplane/internal/acme)
// to the named certificate: fn edits a copy of the stored object (its
// acme section already copied, so that fn may set the issued cert and key,
// acme.state and acme.challenges) and the result is stored as the object's
// next version, audited as "acme", through the same validation as any
// write. It returns ErrNotFound when the certificate is gone or no longer
// asks for ACME, so a client that raced an operator's delete stops there.
func (c *Catalog) UpdateACME(ctx context.Context, name string, fn func(cert *config.Certificate) error) (*config.Certificate, *Change, error) {
	var out config.Certificate
	change, st, err := c.apply(ctx, ACMEActor, func(cur *store.State, next *config.Config, now time.Time) (store.AuditEntry, bool, error) {
		i := Certificates.index(next, name)
		if i < 0 || next.Certificates[i].ACME == nil {
			return store.AuditEntry{}, false, fmt.Errorf("ACME certificate %q: %w", name, ErrNotFound)
		}
		obj := next.Certificates[i]
		a := *obj.ACME
		obj.ACME = &a
		if err := fn(&obj); err != nil {
			return store.AuditEntry{}, false, err
		}
		if config.SameSpec(&next.Certificates[i], &obj) {
			return store.AuditEntry{}, true, nil
		}
		if err := next.CheckCertificate(&obj); err != nil {
			return store.AuditEntry{}, false, err
		}
		obj.Version++
		obj.Revision, obj.UpdatedAt = cur.Revision+1, now
		next.Certificates[i] = obj
		return store.AuditEntry{Action: "acme", Kind: config.KindCertificate, Name: name, Version: obj.Version}, false, nil
	})
	if err != nil {
		return nil, nil, err
	}
	if i := Certificates.index(&st.Config, name); i >= 0 {
		out = st.Config.Certificates[i]
	}
	return &out, change, nil
}
