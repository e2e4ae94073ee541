// Package store persists the control plane's configuration and audit log.
//
// The whole configuration is versioned by one global revision. A write is a
// compare-and-swap of the complete next state against the revision it was
// computed from, committed atomically with its audit entry: either both are
// stored or neither is, so a crash or a racing replica can never leave a
// half-applied change. Backends: an embedded bbolt file (the default) and
// Consul KV (several control-plane replicas sharing one store).
//
// A store also has an identity, its epoch (snapshot.Epoch): a random id
// written with the first revision and carried by every later one. Revisions
// only grow within an epoch, so a control plane that finds a lower revision
// or another epoch than the one it last saw knows the store was emptied or
// rolled back behind its back (a Consul agent restarted without its data, an
// older backup restored). A commit must stay in the stored epoch or name it
// as its predecessor (Epoch.Prev): that is how an operator's explicit "adopt
// the store as it is" starts a new epoch, and nothing else can.
package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// ErrConflict means the stored revision moved since the state being committed
// was read: another writer got there first. Nothing was stored.
var ErrConflict = errors.New("store: revision conflict")

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("store: closed")

// State is the whole configuration at one revision. Revision 0 is the empty
// state of a new store.
type State struct {
	Revision int64 `json:"revision"`
	// Epoch is the store history Revision belongs to; zero in a new store
	// and in one written before epochs existed.
	Epoch  snapshot.Epoch `json:"epoch,omitzero"`
	Config config.Config  `json:"config"`
	// Touched, when set on a state given to Commit, names the objects
	// (and whether the global section) that differ from the stored
	// revision Revision-1 of the same epoch: the caller vouches for it. A
	// backend that stores objects one by one then writes only those (the
	// embedded store: one route written into 100,000 is one key, not the
	// whole configuration). It is never stored, and a backend may ignore
	// it. Nil means "unknown": everything is written.
	Touched *snapshot.Touched `json:"-"`
	// Tokens are the admin API's scoped tokens, in name order. They are
	// the control plane's own and never reach a snapshot, but they are
	// committed like the configuration: atomically with an audit entry,
	// seen by every replica sharing the store.
	Tokens []Token `json:"tokens,omitempty"`
	// Prev, when set on a state given to Commit, is the configuration of
	// the stored revision Revision-1 that Config was made from, as the
	// store accepted it: routes Config shares with it in the same order
	// are known to be in order (config.RoutesInOrder), so the order check
	// does not read them. Never stored; nil means "unknown".
	Prev *config.Config `json:"-"`
}

// Token is a stored admin API token: what the API shows and the hash that
// stands for its secret (admintoken.Hash); the secret is never stored.
type Token struct {
	apiv1.Token
	Hash string `json:"hash"`
}

// NewEpochID returns a random epoch id.
func NewEpochID() string { return rand.Text()[:16] }

// Describe says where a store lives ("bolt:/var/lib/portico.db",
// "consul://127.0.0.1:8500/portico"), for messages to operators.
func Describe(s Store) string {
	if w, ok := s.(interface{ Where() string }); ok {
		return w.Where()
	}
	return fmt.Sprintf("%T", s)
}

// checkEpoch is the epoch rule of Commit: a commit stays in the stored
// epoch or names it as its predecessor; an empty store takes any epoch.
func checkEpoch(storedRev int64, storedEpoch string, next snapshot.Epoch) error {
	if storedRev == 0 || next.ID == storedEpoch || next.Prev == storedEpoch {
		return nil
	}
	return fmt.Errorf("%w: stored epoch is %q, commit is in epoch %q (after %q)", ErrConflict, storedEpoch, next.ID, next.Prev)
}

// AuditEntry records one accepted change; it is stored as it is served.
type AuditEntry = apiv1.AuditEntry

// Store is the persistence contract every backend passes (see storetest).
type Store interface {
	// Load returns the latest committed state.
	Load(ctx context.Context) (*State, error)
	// Commit stores next together with entry if and only if the stored
	// revision is next.Revision-1 and next.Epoch passes the epoch rule (see
	// the package doc); otherwise it returns ErrConflict.
	// entry.Revision must equal next.Revision.
	Commit(ctx context.Context, next *State, entry AuditEntry) error
	// WaitRevision blocks until the stored revision is greater than after
	// (including writes by other processes sharing the store) or ctx ends,
	// and returns the stored revision.
	WaitRevision(ctx context.Context, after int64) (int64, error)
	// Audit returns up to limit entries with a revision greater than after,
	// oldest first. limit must be at least 1.
	Audit(ctx context.Context, after int64, limit int) ([]AuditEntry, error)
	Close() error
}

// Open opens the store named by spec: "bolt:<file>" or
// "consul://<host:port>/<kv-prefix>".
func Open(ctx context.Context, spec string) (Store, error) {
	switch {
	case strings.HasPrefix(spec, "bolt:"):
		path := strings.TrimPrefix(spec, "bolt:")
		if path == "" {
			return nil, fmt.Errorf("store %q: bolt needs a file path (bolt:/var/lib/portico/portico.db)", spec)
		}
		return OpenBolt(path)
	case strings.HasPrefix(spec, "consul://"):
		return OpenConsul(ctx, spec)
	}
	return nil, fmt.Errorf("store %q: want bolt:<file> or consul://<host:port>/<kv-prefix>", spec)
}

func checkCommit(next *State, entry AuditEntry) error {
	if next == nil || next.Revision < 1 {
		return fmt.Errorf("store: commit needs a state with revision >= 1")
	}
	if entry.Revision != next.Revision {
		return fmt.Errorf("store: audit entry revision %d != state revision %d", entry.Revision, next.Revision)
	}
	if err := canonical("token", next.Tokens, func(t *Token) string { return t.Name }); err != nil {
		return err
	}
	return checkCanonical(&next.Config, next.Prev)
}

// checkCanonical refuses collections that are not in strict name order
// with non-empty names: the canonical form the catalog stores (names are
// unique per kind, and sorted). A store may then keep objects by name and
// give them back in the same order.
func checkCanonical(c, prev *config.Config) error {
	var routes error
	if prev == nil || !config.RoutesInOrder(c.Routes, prev.Routes) {
		// Which route is out of order, or unnamed.
		routes = canonical(config.KindRoute, c.Routes, func(r **config.Route) string { return (*r).Name })
	}
	return errors.Join(
		canonical(config.KindService, c.Services, func(s *config.Service) string { return s.Name }),
		routes,
		canonical(config.KindConsumer, c.Consumers, func(c *config.Consumer) string { return c.Name }),
		canonical(config.KindIssuer, c.Issuers, func(i *config.Issuer) string { return i.Name }),
		canonical(config.KindCertificate, c.Certificates, func(c *config.Certificate) string { return c.Name }),
	)
}

func canonical[T any, K ~string](kind K, items []T, name func(*T) string) error {
	for i := range items {
		n := name(&items[i])
		if n == "" {
			return fmt.Errorf("store: %s %d has no name", kind, i)
		}
		if i > 0 && name(&items[i-1]) >= n {
			return fmt.Errorf("store: %ss not in strict name order at %q", kind, n)
		}
	}
	return nil
}

func checkAudit(limit int) error {
	if limit < 1 {
		return fmt.Errorf("store: audit limit %d, want at least 1", limit)
	}
	return nil
}

// emptyState is what a new store holds. Its collections are empty rather than
// nil (config.FillEmpty, which every Load applies too) so that it encodes as
// [] like every later state, and callers need not tell "none" from "absent".
func emptyState() *State {
	s := &State{}
	s.Config.FillEmpty()
	return s
}
