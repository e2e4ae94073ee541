package catalog

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// DiffEntry is one object that an import creates, updates or deletes.
type DiffEntry = apiv1.DiffEntry

// ImportResult answers PUT /v1/config.
type ImportResult struct {
	apiv1.ImportResult
	// Config is the resulting configuration.
	Config *config.Config
}

// Import replaces the whole configuration with desired in one revision.
// Objects whose spec is unchanged keep their version; with dryRun nothing is
// stored and the result says what would change. ifRevision, when not nil,
// makes the import conditional on the current revision.
func (c *Catalog) Import(ctx context.Context, desired *config.Config, dryRun bool, ifRevision *int64, actor Actor) (*ImportResult, error) {
	want := desired.Clone()
	want.Normalize()
	if err := keepCertificateKeys(want, &c.Current().State.Config, time.Now()); err != nil {
		return nil, err
	}
	// Validate in the submitted order so field paths point into the
	// document the operator sent.
	if err := want.Validate(); err != nil {
		return nil, err
	}
	canonicalCollections(want)
	res := &ImportResult{ImportResult: apiv1.ImportResult{DryRun: dryRun}}
	m := func(cur *store.State, next *config.Config, now time.Time) (store.AuditEntry, bool, error) {
		if ifRevision != nil && cur.Revision != *ifRevision {
			return store.AuditEntry{}, false, fmt.Errorf("%w: configuration is at revision %d, not %d", ErrPrecondition, cur.Revision, *ifRevision)
		}
		rev := cur.Revision + 1
		var changes []DiffEntry
		merge(Services, &cur.Config, want, next, rev, now, &changes)
		merge(Routes, &cur.Config, want, next, rev, now, &changes)
		merge(Consumers, &cur.Config, want, next, rev, now, &changes)
		merge(Issuers, &cur.Config, want, next, rev, now, &changes)
		merge(Certificates, &cur.Config, want, next, rev, now, &changes)
		if f := config.ChangedFields(&cur.Config.Global, &want.Global); len(f) > 0 {
			changes = append(changes, DiffEntry{Op: "update", Kind: "global", Name: "global", Fields: f})
		}
		next.Global = want.Global
		res.Changes = changes
		res.Summary = summarize(changes)
		res.Revision = cur.Revision
		if dryRun || len(changes) == 0 {
			return store.AuditEntry{}, true, nil
		}
		return store.AuditEntry{Action: "import", Summary: describe(res.Summary)}, false, nil
	}
	change, st, err := c.apply(ctx, actor, m)
	if err != nil {
		return nil, err
	}
	res.Revision = change.Revision
	res.Config = &st.Config
	if res.Changes == nil {
		res.Changes = []DiffEntry{}
	}
	return res, nil
}

// merge computes the imported collection of one kind: unchanged objects keep
// their metadata, changed ones get the next version, and every difference is
// recorded in changes.
func merge[T any](k *Kind[T], cur, want, next *config.Config, rev int64, now time.Time, changes *[]DiffEntry) {
	n := k.items.len(want)
	k.items.clear(next, n)
	seen := make(map[string]bool, n)
	for j := range n {
		w := *k.items.at(want, j)
		o := k.obj(&w)
		name := o.ObjectName()
		seen[name] = true
		meta := o.ObjectMeta()
		*meta = config.Meta{Version: 1, Revision: rev, CreatedAt: now, UpdatedAt: now}
		if i := k.index(cur, name); i >= 0 {
			old := k.items.at(cur, i)
			fields := config.ChangedFields(old, &w)
			if len(fields) == 0 {
				k.items.take(next, cur, i)
				continue
			}
			om := k.obj(old).ObjectMeta()
			meta.Version, meta.CreatedAt = om.Version+1, om.CreatedAt
			*changes = append(*changes, DiffEntry{Op: "update", Kind: k.Kind, Name: name, Fields: fields})
		} else {
			*changes = append(*changes, DiffEntry{Op: "create", Kind: k.Kind, Name: name})
		}
		k.items.add(next, w)
	}
	for i := range k.items.len(cur) {
		if name := k.obj(k.items.at(cur, i)).ObjectName(); !seen[name] {
			*changes = append(*changes, DiffEntry{Op: "delete", Kind: k.Kind, Name: name})
		}
	}
}

func summarize(changes []DiffEntry) map[string]int {
	s := map[string]int{"create": 0, "update": 0, "delete": 0}
	for _, c := range changes {
		s[c.Op]++
	}
	return s
}

func describe(s map[string]int) string {
	keys := []string{"create", "update", "delete"}
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", s[k], k))
	}
	return "import: " + strings.Join(parts, ", ")
}

// Export returns the current configuration and its revision.
func (c *Catalog) Export() (*config.Config, int64) {
	st := c.Current().State
	return st.Config.Clone(), st.Revision
}

// keepCertificateKeys fills the keys an import leaves out (an export has
// none) from the stored certificates of the same name, when they match
// (and services' tls.client_key and consumers' basic-auth hashes the same
// way),
// and applies the write-time expiry rule to the certificates the import
// creates or changes: an unchanged certificate that has expired since it
// was stored does not block re-applying a configuration. Field paths point
// into the submitted document.
func keepCertificateKeys(want, cur *config.Config, now time.Time) error {
	for i := range want.Services {
		if old, ok := cur.Service(want.Services[i].Name); ok {
			config.ServiceKeepsKey(old, &want.Services[i])
		}
	}
	for i := range want.Consumers {
		if old, ok := cur.Consumer(want.Consumers[i].Name); ok {
			config.ConsumerKeepsHashes(old, &want.Consumers[i])
		}
	}
	for i := range want.Issuers {
		old, _ := cur.Issuer(want.Issuers[i].Name)
		config.IssuerKeepsSecrets(old, &want.Issuers[i])
	}
	var fields []config.FieldError
	for i := range want.Certificates {
		w := &want.Certificates[i]
		old, ok := cur.Certificate(w.Name)
		if ok {
			config.CertificateKeepsKey(old, w)
		} else {
			config.ACMEKeep(nil, w) // nothing maintained yet
		}
		if ok && old.Cert == w.Cert {
			continue
		}
		if _, err := config.CertificateExpiry(w, now); err != nil {
			for _, f := range config.FieldErrors(err) {
				fields = append(fields, config.FieldError{Field: fmt.Sprintf("certificates[%d].%s", i, f.Field), Message: f.Message})
			}
		}
	}
	if len(fields) > 0 {
		return &config.ValidationError{Kind: config.ErrInvalid, Fields: fields}
	}
	return nil
}
