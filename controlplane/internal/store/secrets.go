package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"go.etcd.io/bbolt"
)

// Secrets keeps the control plane's own secrets (the ACME account keys)
// beside the configuration but outside it: never in a revision, so never in
// a snapshot, a data plane's state dir, the audit log or the export. Both
// backends implement it (the contract suite checks it).
type Secrets interface {
	// GetSecret returns the named secret, or ok=false when there is none.
	GetSecret(ctx context.Context, name string) (value []byte, ok bool, err error)
	// PutSecret stores the named secret, replacing any other.
	PutSecret(ctx context.Context, name string, value []byte) error
}

// Leases give one control plane at a time the right to act for the
// cluster (the ACME client orders certificates once, not once per
// replica).
type Leases interface {
	// Lead blocks until this process holds the named lease or ctx ends.
	// The returned context ends when the lease is lost (or ctx ends);
	// release gives it up.
	Lead(ctx context.Context, name string) (held context.Context, release func(), err error)
}

// ActorSupport returns s's secrets and leases, which a cluster-wide actor
// (the ACME client, the ticket-key keeper) needs both of; who names the
// actor in the error.
func ActorSupport(s Store, who string) (Secrets, Leases, error) {
	secrets, ok := s.(Secrets)
	if !ok {
		return nil, nil, fmt.Errorf("%s: store %s keeps no secrets", who, Describe(s))
	}
	leases, ok := s.(Leases)
	if !ok {
		return nil, nil, fmt.Errorf("%s: store %s has no leases", who, Describe(s))
	}
	return secrets, leases, nil
}

// MaxSecretBytes bounds one secret.
const MaxSecretBytes = 64 << 10

func checkSecret(name string, value []byte) error {
	switch {
	case name == "" || strings.ContainsAny(name, "/\x00") || len(name) > 200:
		return fmt.Errorf("store: secret name %q: 1 to 200 characters, no '/'", name)
	case len(value) > MaxSecretBytes:
		return fmt.Errorf("store: secret %q: at most %d bytes", name, MaxSecretBytes)
	}
	return nil
}

var bucketSecrets = []byte("secrets")

// GetSecret implements Secrets.
func (b *Bolt) GetSecret(_ context.Context, name string) (value []byte, ok bool, err error) {
	if err := checkSecret(name, nil); err != nil {
		return nil, false, err
	}
	err = b.view(func(tx *bbolt.Tx) error {
		if bk := tx.Bucket(bucketSecrets); bk != nil {
			if v := bk.Get([]byte(name)); v != nil {
				value, ok = append([]byte(nil), v...), true
			}
		}
		return nil
	})
	return value, ok, err
}

// PutSecret implements Secrets. The bucket is made on first use, so files
// written before secrets existed need no upgrade.
func (b *Bolt) PutSecret(_ context.Context, name string, value []byte) error {
	if err := checkSecret(name, value); err != nil {
		return err
	}
	return b.update(func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketSecrets)
		if err != nil {
			return err
		}
		return bk.Put([]byte(name), value)
	})
}

// Lead implements Leases: the file is locked by one process at a time
// (bbolt's flock, see OpenBolt), so the process that opened it is the only
// one that can act; the lease is held at once and lost only with ctx.
func (b *Bolt) Lead(ctx context.Context, _ string) (context.Context, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	held, cancel := context.WithCancel(ctx)
	return held, cancel, nil
}

func (s *Consul) secretKey(name string) string { return s.prefix + "/secrets/" + name }

// GetSecret implements Secrets.
func (s *Consul) GetSecret(ctx context.Context, name string) ([]byte, bool, error) {
	if err := checkSecret(name, nil); err != nil {
		return nil, false, err
	}
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, false, err
	}
	defer done()
	q := s.q(ctx)
	q.RequireConsistent = true
	pair, _, err := s.kv.Get(s.secretKey(name), q)
	if err != nil {
		return nil, false, fmt.Errorf("store: get secret %q: %w", name, s.cause(ctx, err))
	}
	if pair == nil {
		return nil, false, nil
	}
	return pair.Value, true, nil
}

// PutSecret implements Secrets.
func (s *Consul) PutSecret(ctx context.Context, name string, value []byte) error {
	if err := checkSecret(name, value); err != nil {
		return err
	}
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := s.kv.Put(&api.KVPair{Key: s.secretKey(name), Value: value}, s.w(ctx)); err != nil {
		return fmt.Errorf("store: put secret %q: %w", name, s.cause(ctx, err))
	}
	return nil
}

// consulLeaseTTL is the session TTL behind a lease: a control plane that
// dies without releasing it is replaced after at most this (plus Consul's
// lock delay).
const consulLeaseTTL = "15s"

// Lead implements Leases with a Consul lock (a session with a TTL,
// renewed while held) on <prefix>/leases/<name>: several control planes
// sharing the store take turns, one at a time.
func (s *Consul) Lead(ctx context.Context, name string) (context.Context, func(), error) {
	if err := checkSecret(name, nil); err != nil {
		return nil, nil, err
	}
	if s.life.Err() != nil {
		return nil, nil, ErrClosed
	}
	lock, err := s.client.LockOpts(&api.LockOptions{
		Key:          s.prefix + "/leases/" + name,
		SessionName:  "portico lease " + name,
		SessionTTL:   consulLeaseTTL,
		LockWaitTime: 5 * time.Second,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: lease %q: %w", name, err)
	}
	stop := make(chan struct{})
	unwatch := context.AfterFunc(ctx, func() { close(stop) })
	lost, err := lock.Lock(stop)
	if err != nil || lost == nil {
		unwatch()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if err == nil {
			err = errors.New("not acquired")
		}
		return nil, nil, fmt.Errorf("store: lease %q: %w", name, s.cause(ctx, err))
	}
	held, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-lost:
		case <-held.Done():
		case <-s.life.Done():
		}
		cancel()
	}()
	release := func() {
		cancel()
		unwatch()
		_ = lock.Unlock()
	}
	return held, release, nil
}

// Secrets and leases pass through the instrumentation unchanged (they are
// rare: an ACME order, a lease taken).

// GetSecret implements Secrets when the wrapped store does.
func (i *instrumented) GetSecret(ctx context.Context, name string) ([]byte, bool, error) {
	s, ok := i.Store.(Secrets)
	if !ok {
		return nil, false, fmt.Errorf("store %s keeps no secrets", Describe(i.Store))
	}
	return s.GetSecret(ctx, name)
}

// PutSecret implements Secrets when the wrapped store does.
func (i *instrumented) PutSecret(ctx context.Context, name string, value []byte) error {
	s, ok := i.Store.(Secrets)
	if !ok {
		return fmt.Errorf("store %s keeps no secrets", Describe(i.Store))
	}
	return s.PutSecret(ctx, name, value)
}

// Lead implements Leases when the wrapped store does.
func (i *instrumented) Lead(ctx context.Context, name string) (context.Context, func(), error) {
	l, ok := i.Store.(Leases)
	if !ok {
		return nil, nil, fmt.Errorf("store %s has no leases", Describe(i.Store))
	}
	return l.Lead(ctx, name)
}

var (
	_ Secrets = (*Bolt)(nil)
	_ Secrets = (*Consul)(nil)
	_ Leases  = (*Bolt)(nil)
	_ Leases  = (*Consul)(nil)
)
