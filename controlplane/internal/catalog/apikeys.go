package catalog

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
)

// MaxAPIKeysPerConsumer bounds keys per consumer: rotation needs two at a
// time, not hundreds.
const MaxAPIKeysPerConsumer = 16

// CreateAPIKey adds a fresh key to the consumer and returns it in clear:
// this is the only time it exists outside the client that receives it.
func (c *Catalog) CreateAPIKey(ctx context.Context, consumer string, actor Actor) (key string, rec config.APIKey, ch *Change, err error) {
	key, id, hash, err := apikey.New()
	if err != nil {
		return "", config.APIKey{}, nil, err
	}
	ch, _, err = c.apply(ctx, actor, func(cur *store.State, next *config.Config, now time.Time) (store.AuditEntry, bool, error) {
		cs, ok := next.Consumer(consumer)
		if !ok {
			return store.AuditEntry{}, false, fmt.Errorf("consumer %q: %w", consumer, ErrNotFound)
		}
		if len(cs.APIKeys) >= MaxAPIKeysPerConsumer {
			return store.AuditEntry{}, false, config.Conflict("api_keys", "consumer %q already has %d keys; revoke one first", consumer, len(cs.APIKeys))
		}
		rec = config.APIKey{ID: id, Hash: hash, Prefix: apikey.Prefix(key), CreatedAt: now}
		// A new list: the old one is shared with the published revision.
		cs.APIKeys = append(slices.Clip(cs.APIKeys), rec)
		bump(&cs.Meta, cur.Revision+1, now)
		return store.AuditEntry{Action: "create-api-key", Kind: config.KindConsumer, Name: consumer,
			Version: cs.Version, Summary: "api key " + id}, false, nil
	})
	if err != nil {
		return "", config.APIKey{}, nil, err
	}
	return key, rec, ch, nil
}

// ImportAPIKey adds a key the operator brings (generated elsewhere, e.g. by
// the compose stack's init step, or moved from another gateway). Only its
// hash is kept, as for a created key. Importing a key the consumer already
// has changes nothing (existed is true), so a seed job can run on every
// start; a key another consumer has is a conflict (whole-config validation).
func (c *Catalog) ImportAPIKey(ctx context.Context, consumer, key string, actor Actor) (rec config.APIKey, existed bool, ch *Change, err error) {
	if err := config.ValidateAPIKey(key); err != nil {
		return config.APIKey{}, false, nil, err
	}
	_, id, _, err := apikey.New()
	if err != nil {
		return config.APIKey{}, false, nil, err
	}
	hash := apikey.Hash(key)
	ch, _, err = c.apply(ctx, actor, func(cur *store.State, next *config.Config, now time.Time) (store.AuditEntry, bool, error) {
		cs, ok := next.Consumer(consumer)
		if !ok {
			return store.AuditEntry{}, false, fmt.Errorf("consumer %q: %w", consumer, ErrNotFound)
		}
		if i := slices.IndexFunc(cs.APIKeys, func(k config.APIKey) bool { return k.Hash == hash }); i >= 0 {
			rec, existed = cs.APIKeys[i], true
			return store.AuditEntry{}, true, nil
		}
		if len(cs.APIKeys) >= MaxAPIKeysPerConsumer {
			return store.AuditEntry{}, false, config.Conflict("api_keys", "consumer %q already has %d keys; revoke one first", consumer, len(cs.APIKeys))
		}
		rec, existed = config.APIKey{ID: id, Hash: hash, Prefix: apikey.Prefix(key), CreatedAt: now}, false
		// A new list: the old one is shared with the published revision.
		cs.APIKeys = append(slices.Clip(cs.APIKeys), rec)
		bump(&cs.Meta, cur.Revision+1, now)
		return store.AuditEntry{Action: "import-api-key", Kind: config.KindConsumer, Name: consumer,
			Version: cs.Version, Summary: "api key " + id}, false, nil
	})
	if err != nil {
		return config.APIKey{}, false, nil, err
	}
	return rec, existed, ch, nil
}

// DeleteAPIKey revokes one key of the consumer.
func (c *Catalog) DeleteAPIKey(ctx context.Context, consumer, id string, actor Actor) (*Change, error) {
	ch, _, err := c.apply(ctx, actor, func(cur *store.State, next *config.Config, now time.Time) (store.AuditEntry, bool, error) {
		cs, ok := next.Consumer(consumer)
		if !ok {
			return store.AuditEntry{}, false, fmt.Errorf("consumer %q: %w", consumer, ErrNotFound)
		}
		i := slices.IndexFunc(cs.APIKeys, func(k config.APIKey) bool { return k.ID == id })
		if i < 0 {
			return store.AuditEntry{}, false, fmt.Errorf("api key %q of consumer %q: %w", id, consumer, ErrNotFound)
		}
		// Into a new list: the old one is shared with the published revision.
		cs.APIKeys = slices.Delete(slices.Clone(cs.APIKeys), i, i+1)
		bump(&cs.Meta, cur.Revision+1, now)
		return store.AuditEntry{Action: "delete-api-key", Kind: config.KindConsumer, Name: consumer,
			Version: cs.Version, Summary: "api key " + id}, false, nil
	})
	return ch, err
}

func bump(m *config.Meta, rev int64, now time.Time) {
	m.Version++
	m.Revision = rev
	m.UpdatedAt = now
}

// Global returns the cluster-wide defaults and the revision.
func (c *Catalog) Global() (config.Global, int64) {
	st := c.Current().State
	g := st.Config.Global
	if g.RateLimit != nil {
		rl := *g.RateLimit
		g.RateLimit = &rl
	}
	return g, st.Revision
}

// PutGlobal replaces the cluster-wide defaults, conditional on the revision
// when ifRevision is set.
func (c *Catalog) PutGlobal(ctx context.Context, g config.Global, ifRevision *int64, actor Actor) (*Change, error) {
	ch, _, err := c.apply(ctx, actor, func(cur *store.State, next *config.Config, _ time.Time) (store.AuditEntry, bool, error) {
		if ifRevision != nil && cur.Revision != *ifRevision {
			return store.AuditEntry{}, false, fmt.Errorf("%w: configuration is at revision %d, not %d", ErrPrecondition, cur.Revision, *ifRevision)
		}
		if config.SameSpec(&next.Global, &g) {
			return store.AuditEntry{}, true, nil
		}
		next.Global = g
		return store.AuditEntry{Action: "update", Kind: "global", Name: "global"}, false, nil
	})
	return ch, err
}
