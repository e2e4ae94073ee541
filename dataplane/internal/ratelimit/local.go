package ratelimit

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

const (
	localShards = 64
	// defaultMaxKeys bounds the keys a LocalLimiter tracks. Only keys that
	// are not full need an entry, so this many concurrently limited clients
	// fit; beyond it the limiter forgets some, which admits more, never less.
	defaultMaxKeys = 1 << 18
	// minSweep is the shard size below which a shard is never swept:
	// sweeping a handful of entries costs more than it saves.
	minSweep = 64
)

// LocalLimiter is an in-process GCRA limiter: the limiter when no Redis is
// configured, and RedisLimiter's fallback while Redis is unavailable.
//
// Memory is bounded without a background goroutine. A key whose bucket is
// full again needs no state, so each shard drops such entries in a sweep
// whenever it has doubled since the last one (amortised O(1) per new key),
// and a shard at its cap evicts arbitrary entries to make room.
type LocalLimiter struct {
	now    func() time.Time
	base   time.Time // TATs are kept as offsets from base
	seed   maphash.Seed
	maxKey int // per shard
	shards [localShards]localShard
}

type localShard struct {
	mu sync.Mutex
	// tats holds each key's TAT as an offset from LocalLimiter.base.
	tats    map[string]time.Duration
	sweepAt int      // sweep when len(tats) reaches this
	peak    int      // largest len(tats) since the map was last reallocated
	_       [32]byte // keep shards' locks on separate cache lines
}

// NewLocal returns an in-process limiter reading the clock from now
// (time.Now when nil).
func NewLocal(now func() time.Time) *LocalLimiter {
	return newLocal(now, defaultMaxKeys)
}

func newLocal(now func() time.Time, maxKeys int) *LocalLimiter {
	if now == nil {
		now = time.Now
	}
	l := &LocalLimiter{
		now:    now,
		base:   now(),
		seed:   maphash.MakeSeed(),
		maxKey: max(maxKeys/localShards, minSweep),
	}
	for i := range l.shards {
		l.shards[i].tats = make(map[string]time.Duration)
		l.shards[i].sweepAt = minSweep
	}
	return l
}

// Allow decides one request for key under p; its Source is "memory".
func (l *LocalLimiter) Allow(_ context.Context, key string, p Policy) Decision {
	return l.allow(key, p, SourceMemory)
}

// Status reports the in-memory backend for /status.
func (l *LocalLimiter) Status() Status {
	return Status{Backend: SourceMemory}
}

// size returns the number of keys tracked.
func (l *LocalLimiter) size() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.tats)
		s.mu.Unlock()
	}
	return n
}

func (l *LocalLimiter) allow(key string, p Policy, source string) Decision {
	g, ok := compile(p, time.Nanosecond)
	if !ok {
		return unlimited(source)
	}
	// Monotonic offsets: a wall-clock step must not refill or drain buckets.
	now := l.now().Sub(l.base)
	s := &l.shards[maphash.String(l.seed, key)%localShards]

	s.mu.Lock()
	tat, found := s.tats[key]
	d, newTAT := g.decide(now, tat, p.Limit)
	if d.Allowed {
		if !found {
			s.makeRoom(now, l.maxKey)
			// The caller's key may be a slice of a larger string (a header
			// value, say); an entry must not keep that alive.
			key = strings.Clone(key)
		}
		s.tats[key] = newTAT
	}
	s.mu.Unlock()

	d.Source = source
	return d
}

// makeRoom runs before a new key is added: it sweeps full buckets once the
// shard has doubled since the last sweep and, if the shard is still at its
// cap, evicts entries until an eighth of it is free.
func (s *localShard) makeRoom(now time.Duration, maxKeys int) {
	n := len(s.tats)
	s.peak = max(s.peak, n+1)
	if n < s.sweepAt {
		return
	}
	for k, tat := range s.tats {
		if tat <= now {
			delete(s.tats, k)
		}
	}
	if len(s.tats) >= maxKeys {
		// Go's map iteration order is unspecified, so this forgets
		// arbitrary keys: each of them merely starts again with a full
		// bucket.
		excess := len(s.tats) - maxKeys*7/8
		for k := range s.tats {
			if excess <= 0 {
				break
			}
			delete(s.tats, k)
			excess--
		}
	}
	n = len(s.tats)
	// Maps never shrink; reallocate one that holds a small part of what it
	// once did so a burst of keys does not pin its memory for good.
	if s.peak > 4*minSweep && n < s.peak/4 {
		fresh := make(map[string]time.Duration, n)
		for k, v := range s.tats {
			fresh[k] = v
		}
		s.tats, s.peak = fresh, n
	}
	s.sweepAt = min(max(2*n, minSweep), maxKeys)
}
