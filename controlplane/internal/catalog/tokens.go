package catalog

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/admintoken"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// KindToken names admin tokens in the audit log.
const KindToken config.Kind = "token"

// CreateToken stores a new admin API token and returns its secret: this is
// the only time the secret exists outside the client that receives it. A
// token change is a revision like any other, so it is audited, committed
// atomically and seen by every replica sharing the store; data planes see
// a revision that changed nothing they serve.
func (c *Catalog) CreateToken(ctx context.Context, spec apiv1.TokenSpec, actor Actor) (secret string, tok store.Token, ch *Change, err error) {
	if err := admintoken.Validate(&spec, c.now()); err != nil {
		return "", store.Token{}, nil, err
	}
	secret, hash, err := admintoken.New()
	if err != nil {
		return "", store.Token{}, nil, err
	}
	if spec.ExpiresAt != nil {
		t := spec.ExpiresAt.UTC()
		spec.ExpiresAt = &t
	}
	ch, _, err = c.applyTokens(ctx, actor, func(cur *store.State, now time.Time) ([]store.Token, store.AuditEntry, error) {
		i, found := slices.BinarySearchFunc(cur.Tokens, spec.Name, byTokenName)
		if found {
			return nil, store.AuditEntry{}, config.Conflict("name", "a token named %q exists; delete it first", spec.Name)
		}
		if len(cur.Tokens) >= admintoken.MaxTokens {
			return nil, store.AuditEntry{}, config.Conflict("name", "there are already %d tokens; delete one first", len(cur.Tokens))
		}
		tok = store.Token{Token: apiv1.Token{TokenSpec: spec, Prefix: admintoken.Prefix(secret), CreatedAt: now,
			CreatedBy: actorName(actor), Revision: cur.Revision + 1}, Hash: hash}
		next := slices.Insert(slices.Clone(cur.Tokens), i, tok)
		return next, store.AuditEntry{Action: "create", Kind: KindToken, Name: spec.Name, Summary: "role " + spec.Role + kindsSummary(spec.Kinds)}, nil
	})
	if err != nil {
		return "", store.Token{}, nil, err
	}
	return secret, tok, ch, nil
}

// DeleteToken revokes a token: requests carrying it are refused from the
// revision on (on other replicas, once they follow the store).
func (c *Catalog) DeleteToken(ctx context.Context, name string, actor Actor) (*Change, error) {
	ch, _, err := c.applyTokens(ctx, actor, func(cur *store.State, now time.Time) ([]store.Token, store.AuditEntry, error) {
		i, found := slices.BinarySearchFunc(cur.Tokens, name, byTokenName)
		if !found {
			return nil, store.AuditEntry{}, fmt.Errorf("token %q: %w", name, ErrNotFound)
		}
		return slices.Delete(slices.Clone(cur.Tokens), i, i+1), store.AuditEntry{Action: "delete", Kind: KindToken, Name: name}, nil
	})
	return ch, err
}

// Tokens returns the tokens of the published revision, in name order.
func (c *Catalog) Tokens() ([]store.Token, int64) {
	st := c.Current().State
	return st.Tokens, st.Revision
}

func byTokenName(t store.Token, name string) int { return strings.Compare(t.Name, name) }

func kindsSummary(k []config.Kind) string {
	if len(k) == 0 {
		return ""
	}
	s := make([]string, len(k))
	for i, kind := range k {
		s[i] = string(kind)
	}
	return ", kinds " + strings.Join(s, ",")
}

func actorName(a Actor) string {
	var e store.AuditEntry
	a.fill(&e)
	return e.Actor
}

// tokenMutation computes the next token list from the current state.
type tokenMutation func(cur *store.State, now time.Time) ([]store.Token, store.AuditEntry, error)

// applyTokens commits a change of the tokens alone through apply.
func (c *Catalog) applyTokens(ctx context.Context, actor Actor, m tokenMutation) (*Change, *store.State, error) {
	return c.apply(ctx, actor, func(cur *store.State, next *config.Config, now time.Time) (store.AuditEntry, bool, error) {
		tokens, entry, err := m(cur, now)
		if err != nil {
			return entry, false, err
		}
		c.nextTokens = &tokens // read by apply (under writeMu)
		return entry, false, nil
	})
}

// tokenIndex finds a published revision's tokens by the hash of their
// secret, built once per revision on first use.
type tokenIndex struct {
	once   sync.Once
	byHash map[string]int
}

// TokenByHash returns the token whose secret hashes to hash
// (admintoken.Hash). A lookup by a SHA-256 digest of a 256-bit secret
// leaks nothing usable through its timing: steering it needs preimages.
func (p *Published) TokenByHash(hash string) (store.Token, bool) {
	p.tokens.once.Do(func() {
		p.tokens.byHash = make(map[string]int, len(p.State.Tokens))
		for i, t := range p.State.Tokens {
			p.tokens.byHash[t.Hash] = i
		}
	})
	i, ok := p.tokens.byHash[hash]
	if !ok {
		return store.Token{}, false
	}
	return p.State.Tokens[i], true
}
