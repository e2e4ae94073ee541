package catalog

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/basicauth"
	"github.com/portico-gw/portico/shared/config"
)

// CreateBasicCredential adds a basic-auth credential to the consumer. An
// empty password is generated; the password is returned in clear (the only
// time it exists outside the client) and only its bcrypt hash is stored.
// The username must be free across all consumers (409 otherwise).
func (c *Catalog) CreateBasicCredential(ctx context.Context, consumer, username, password string, actor Actor) (string, config.BasicCredential, *Change, error) {
	var fields []config.FieldError
	if msg := config.BasicUsernameProblem(username); msg != "" {
		fields = append(fields, config.FieldError{Field: "username", Message: msg})
	}
	if password != "" {
		if msg := config.BasicPasswordProblem(password); msg != "" {
			fields = append(fields, config.FieldError{Field: "password", Message: msg})
		}
	}
	if len(fields) > 0 {
		return "", config.BasicCredential{}, nil, &config.ValidationError{Kind: config.ErrInvalid, Fields: fields}
	}
	var err error
	if password == "" {
		if password, err = basicauth.NewPassword(); err != nil {
			return "", config.BasicCredential{}, nil, err
		}
	}
	id, err := basicauth.NewID()
	if err != nil {
		return "", config.BasicCredential{}, nil, err
	}
	// Hashed before the write lock: bcrypt takes tens of milliseconds.
	hash, err := basicauth.Hash(password)
	if err != nil {
		return "", config.BasicCredential{}, nil, err
	}
	var rec config.BasicCredential
	ch, _, err := c.apply(ctx, actor, func(cur *store.State, next *config.Config, now time.Time) (store.AuditEntry, bool, error) {
		cs, ok := next.Consumer(consumer)
		if !ok {
			return store.AuditEntry{}, false, fmt.Errorf("consumer %q: %w", consumer, ErrNotFound)
		}
		if len(cs.BasicAuth) >= config.MaxBasicCredentials {
			return store.AuditEntry{}, false, config.Conflict("basic_auth", "consumer %q already has %d credentials; delete one first", consumer, len(cs.BasicAuth))
		}
		if owner := next.BasicUsernameOwner(username); owner != "" {
			return store.AuditEntry{}, false, config.Conflict("username", "username %q already belongs to consumer %q", username, owner)
		}
		rec = config.BasicCredential{ID: id, Username: username, Hash: hash, CreatedAt: now}
		// A new list: the old one is shared with the published revision.
		cs.BasicAuth = append(slices.Clip(cs.BasicAuth), rec)
		bump(&cs.Meta, cur.Revision+1, now)
		return store.AuditEntry{Action: "create-basic-auth", Kind: config.KindConsumer, Name: consumer,
			Version: cs.Version, Summary: "basic-auth credential " + id + " (username " + username + ")"}, false, nil
	})
	if err != nil {
		return "", config.BasicCredential{}, nil, err
	}
	return password, rec, ch, nil
}

// DeleteBasicCredential removes one basic-auth credential of the consumer.
func (c *Catalog) DeleteBasicCredential(ctx context.Context, consumer, id string, actor Actor) (*Change, error) {
	ch, _, err := c.apply(ctx, actor, func(cur *store.State, next *config.Config, now time.Time) (store.AuditEntry, bool, error) {
		cs, ok := next.Consumer(consumer)
		if !ok {
			return store.AuditEntry{}, false, fmt.Errorf("consumer %q: %w", consumer, ErrNotFound)
		}
		i := slices.IndexFunc(cs.BasicAuth, func(b config.BasicCredential) bool { return b.ID == id })
		if i < 0 {
			return store.AuditEntry{}, false, fmt.Errorf("basic-auth credential %q of consumer %q: %w", id, consumer, ErrNotFound)
		}
		cs.BasicAuth = slices.Delete(slices.Clone(cs.BasicAuth), i, i+1)
		bump(&cs.Meta, cur.Revision+1, now)
		return store.AuditEntry{Action: "delete-basic-auth", Kind: config.KindConsumer, Name: consumer,
			Version: cs.Version, Summary: "basic-auth credential " + id}, false, nil
	})
	return ch, err
}
