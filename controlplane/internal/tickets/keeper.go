package tickets

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/pause"
)

// LeaseName is the store lease of the control plane that changes the keys.
const LeaseName = "tls-session-tickets"

// Options configure a Keeper.
type Options struct {
	// Store keeps the keys (store.Secrets) and gives the lease
	// (store.Leases).
	Store  store.Store
	Policy Policy
	Log    *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Keeper makes, rotates and publishes the cluster's ticket keys.
type Keeper struct {
	o       Options
	secrets store.Secrets
	leases  store.Leases
	// keys are the stored keys last read; header their encoding in Order
	// at the last refresh.
	keys   atomic.Pointer[[]Key]
	header atomic.Pointer[string]
}

// New returns a Keeper; the store must keep secrets and give leases.
func New(o Options) (*Keeper, error) {
	if err := o.Policy.Validate(); err != nil {
		return nil, err
	}
	secrets, leases, err := store.ActorSupport(o.Store, "tickets")
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	k := &Keeper{o: o, secrets: secrets, leases: leases}
	empty := ""
	k.header.Store(&empty)
	return k, nil
}

// Header is apiv1.HeaderTicketKeys' value for a sync answer now: "" before
// the first keys were read.
func (k *Keeper) Header() string { return *k.header.Load() }

// Refresh reads the stored keys and publishes them in the order of now.
func (k *Keeper) Refresh(ctx context.Context) error {
	set, err := k.load(ctx)
	if err != nil {
		return err
	}
	k.publish(set.Keys)
	return nil
}

// Rotate is one step of the control plane holding the lease: read the
// keys, store the Plan for now when it differs, publish.
func (k *Keeper) Rotate(ctx context.Context) error {
	set, err := k.load(ctx)
	if err != nil {
		return err
	}
	next, changed, err := Plan(set.Keys, k.o.Now(), k.o.Policy, Random)
	if err != nil {
		return err
	}
	if changed {
		raw, err := Set{Keys: next}.Encode()
		if err != nil {
			return fmt.Errorf("tickets: encode: %w", err)
		}
		if err := k.secrets.PutSecret(ctx, SecretName, raw); err != nil {
			return fmt.Errorf("tickets: store the keys: %w", err)
		}
		k.o.Log.Info("tls session-ticket keys rotated", "keys", len(next),
			"encrypting", Order(next, k.o.Now()))
	}
	k.publish(next)
	return nil
}

func (k *Keeper) load(ctx context.Context) (Set, error) {
	raw, ok, err := k.secrets.GetSecret(ctx, SecretName)
	if err != nil {
		return Set{}, fmt.Errorf("tickets: read the keys: %w", err)
	}
	if !ok {
		return Set{}, nil
	}
	return DecodeSet(raw)
}

func (k *Keeper) publish(keys []Key) {
	k.keys.Store(&keys)
	h := apiv1.EncodeTicketKeys(Order(keys, k.o.Now()))
	k.header.Store(&h)
}

// tick is how often Run looks at the store: a replica learns the next key
// long before it encrypts (a whole rotation), so a minute is plenty; short
// test rotations look more often.
func (k *Keeper) tick() time.Duration {
	return min(max(k.o.Policy.Rotation/8, 100*time.Millisecond), time.Minute)
}

// Run keeps the keys until ctx ends: every replica re-reads them every
// tick (and at each change Order foresees), the lease holder also rotates
// them. Store errors are logged and retried at the next tick: data planes
// keep the keys they have meanwhile.
func (k *Keeper) Run(ctx context.Context) error {
	var leading atomic.Bool
	// wake makes the loop rotate at once when this replica takes the
	// lease (the first keys of a new cluster are not a tick late).
	wake := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			held, release, err := k.leases.Lead(ctx, LeaseName)
			if err != nil {
				if ctx.Err() == nil {
					k.o.Log.Warn("tickets: taking the lease failed; retrying", "err", err)
					pause.For(ctx, 5*time.Second, nil)
				}
				continue
			}
			leading.Store(true)
			select {
			case wake <- struct{}{}:
			default:
			}
			<-held.Done()
			leading.Store(false)
			release()
		}
	}()
	defer func() { <-done }()
	failing := false
	for {
		var err error
		if leading.Load() {
			err = k.Rotate(ctx)
		} else {
			err = k.Refresh(ctx)
		}
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			k.o.Log.Warn("tickets: the session-ticket keys could not be refreshed; data planes keep theirs", "err", err)
			failing = true
		case err == nil && failing:
			k.o.Log.Info("tickets: session-ticket keys refreshed again")
			failing = false
		}
		wait := k.tick()
		if keys := k.keys.Load(); keys != nil {
			if at := NextChange(*keys, k.o.Now(), k.o.Policy); !at.IsZero() {
				wait = min(wait, max(at.Sub(k.o.Now()), time.Millisecond))
			}
		}
		if !pause.For(ctx, wait, wake) {
			return nil
		}
	}
}
