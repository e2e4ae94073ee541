package cache

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portico-gw/portico/dataplane/internal/redisconn"
)

// Store holds encoded entries. Values handed to Set and returned by Get are
// not modified afterwards by either side.
type Store interface {
	// Get returns ErrMiss when key is absent or expired.
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
}

// Locker is a Store shared by several data planes that can hold a short
// lock per key, so that only one of them fetches a missing entry.
type Locker interface {
	// Lock takes key for ttl unless another holder has it; token
	// identifies this holder to Unlock.
	Lock(ctx context.Context, key string, ttl time.Duration) (token string, ok bool, err error)
	// Unlock releases key if token still holds it (it may have expired
	// and been taken by another node meanwhile).
	Unlock(ctx context.Context, key, token string) error
}

// ErrMiss is what a Store returns for an absent key.
var ErrMiss = errors.New("cache miss")

// DefaultMemoryBytes bounds a Memory created with a non-positive size.
const DefaultMemoryBytes = 64 << 20

// Memory is an in-process LRU store bounded by the total bytes of its keys
// and values; entries also expire at their ttl. It is safe for concurrent
// use.
type Memory struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	ll    *list.List // front: most recently used
	items map[string]*list.Element
	now   func() time.Time
}

type memItem struct {
	key string
	val []byte
	exp time.Time
}

// NewMemory returns an empty store holding at most maxBytes of keys and
// values (DefaultMemoryBytes when maxBytes <= 0).
func NewMemory(maxBytes int64) *Memory {
	if maxBytes <= 0 {
		maxBytes = DefaultMemoryBytes
	}
	return &Memory{max: maxBytes, ll: list.New(), items: map[string]*list.Element{}, now: time.Now}
}

// WithClock makes m expire entries by now instead of time.Now (for tests).
func (m *Memory) WithClock(now func() time.Time) *Memory {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = now
	return m
}

// Get returns key's value, or ErrMiss.
func (m *Memory) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if !ok {
		return nil, ErrMiss
	}
	it := el.Value.(*memItem)
	if !m.now().Before(it.exp) {
		m.remove(el)
		return nil, ErrMiss
	}
	m.ll.MoveToFront(el)
	return it.val, nil
}

// Set stores val under key for ttl, evicting the least recently used
// entries to stay within the byte bound. A value that alone exceeds the
// bound is not stored (and replaces nothing: the old value goes too, since
// it is outdated).
func (m *Memory) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[key]; ok {
		m.remove(el)
	}
	size := int64(len(key) + len(val))
	if ttl <= 0 || size > m.max {
		return nil
	}
	m.items[key] = m.ll.PushFront(&memItem{key: key, val: val, exp: m.now().Add(ttl)})
	m.bytes += size
	for m.bytes > m.max {
		m.remove(m.ll.Back())
	}
	return nil
}

func (m *Memory) remove(el *list.Element) {
	it := m.ll.Remove(el).(*memItem)
	delete(m.items, it.key)
	m.bytes -= int64(len(it.key) + len(it.val))
}

// Len is the number of entries held, expired ones not yet reclaimed
// included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

// Bytes is the total size of the keys and values held.
func (m *Memory) Bytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes
}

// RedisPrefix starts every key the Redis store writes.
const RedisPrefix = "portico:cache:"

// unlockScript deletes the lock only if it is still ours: after its PX
// expired another node may hold it.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Redis is a Store (and Locker) in Redis, shared by every data plane. Each
// call is bounded by the budget given to NewRedis. It does not own the
// client.
type Redis struct {
	client  redis.UniversalClient
	budget  time.Duration
	guarded bool // the client ignores context deadlines: enforce the budget around it
}

// NewRedis returns a store in c whose calls each take at most budget.
func NewRedis(c redis.UniversalClient, budget time.Duration) *Redis {
	if budget <= 0 {
		budget = 50 * time.Millisecond
	}
	return &Redis{client: c, budget: budget, guarded: !redisconn.HonoursDeadlines(c)}
}

// do runs fn within the budget. A client that does not apply context
// deadlines to its I/O would wait out its own socket timeouts (seconds), so
// then fn runs in a goroutine that the caller stops waiting for.
func (s *Redis) do(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.budget)
	defer cancel()
	if !s.guarded {
		return fn(ctx)
	}
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get returns key's value, or ErrMiss.
func (s *Redis) Get(ctx context.Context, key string) ([]byte, error) {
	var val []byte
	err := s.do(ctx, func(ctx context.Context) error {
		var err error
		val, err = s.client.Get(ctx, RedisPrefix+key).Bytes()
		return err
	})
	switch {
	case errors.Is(err, redis.Nil):
		return nil, ErrMiss
	case err != nil:
		return nil, fmt.Errorf("cache: redis get: %w", err)
	}
	return val, nil
}

// Set stores val under key for ttl (nothing when ttl <= 0: Redis would
// keep it forever).
func (s *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	// Redis rounds nothing below a millisecond; PX 0 is an error.
	ttl = max(ttl, time.Millisecond)
	err := s.do(ctx, func(ctx context.Context) error {
		return s.client.Set(ctx, RedisPrefix+key, val, ttl).Err()
	})
	if err != nil {
		return fmt.Errorf("cache: redis set: %w", err)
	}
	return nil
}

// Lock takes the fill lock of key with SET NX PX.
func (s *Redis) Lock(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	token := hex.EncodeToString(b[:])
	var ok bool
	err := s.do(ctx, func(ctx context.Context) error {
		var err error
		ok, err = s.client.SetNX(ctx, RedisPrefix+"lock:"+key, token, ttl).Result()
		return err
	})
	if err != nil {
		return "", false, fmt.Errorf("cache: redis lock: %w", err)
	}
	return token, ok, nil
}

// Unlock releases the fill lock of key if token holds it.
func (s *Redis) Unlock(ctx context.Context, key, token string) error {
	err := s.do(ctx, func(ctx context.Context) error {
		return unlockScript.Run(ctx, s.client, []string{RedisPrefix + "lock:" + key}, token).Err()
	})
	if err != nil {
		return fmt.Errorf("cache: redis unlock: %w", err)
	}
	return nil
}
