package ratelimit

import (
	"context"
	"hash/maphash"
	"math/bits"
	"sync"
	"time"
)

const (
	localShards = 64
	// DefaultMaxBytes bounds the memory of a LocalLimiter's entries: keys,
	// states and window slot lists, with the map's own overhead estimated
	// at entryBytes per entry. Only keys whose state is not full need an
	// entry, so about a million concurrently limited GCRA keys fit (fewer
	// busy window keys: each holds up to 101 slots); beyond it the limiter
	// forgets some, which admits more, never less.
	DefaultMaxBytes = 64 << 20
	// entryBytes is what one entry costs whatever its key: a 16-byte hash
	// and a pointer in the map (with its control bytes and load factor),
	// and the 48-byte entry it points to.
	entryBytes = 96
	// minSweep is the shard size below which a shard is never swept:
	// sweeping a handful of entries costs more than it saves.
	minSweep = 64
)

// LocalLimiter is an in-process limiter: the limiter when no Redis is
// configured, and RedisLimiter's memory of Redis' state and its fallback
// while Redis is unavailable.
//
// Memory is bounded in bytes without a background goroutine. Keys are
// stored as a 128-bit hash (of the key and the policy's fingerprint), so a
// client's long header value costs no more than a short one. A key whose
// state is full again needs no entry, so each shard drops such entries in a
// sweep whenever it has doubled since the last one (amortised O(1) per new
// key), and a shard at its byte budget evicts arbitrary entries to make
// room.
type LocalLimiter struct {
	now          func() time.Time
	base         time.Time // times are kept as offsets from base
	seed0, seed1 maphash.Seed
	maxBytes     int // per shard
	shards       [localShards]localShard
}

// localKey is a key's 128-bit hash: collisions need 2^64 keys.
type localKey [2]uint64

// state is a key's state: a GCRA TAT, or a sliding window's slots.
type state struct {
	tat   time.Duration // offset from LocalLimiter.base
	slots []slotCount
}

// full reports a state that admits as much as a fresh one at now.
func (s *state) full(now time.Duration, slot time.Duration) bool {
	if s.slots == nil {
		return s.tat <= now
	}
	if len(s.slots) == 0 {
		return true
	}
	last := s.slots[len(s.slots)-1].slot
	return time.Duration(last+windowSlots+1)*slot <= now
}

type localShard struct {
	mu      sync.Mutex
	entries map[localKey]*entry
	bytes   int // entryBytes per entry plus the slot lists' capacity
	sweepAt int // sweep when len(entries) reaches this
	peak    int // largest len(entries) since the map was last reallocated
	_       [32]byte
}

// entry is a key's state and, for a window, its slot length (needed to tell
// whether it is full when sweeping).
type entry struct {
	state
	slot time.Duration
}

func (e *entry) bytes() int { return entryBytes + cap(e.slots)*slotBytes }

// NewLocal returns an in-process limiter reading the clock from now
// (time.Now when nil).
func NewLocal(now func() time.Time) *LocalLimiter {
	return newLocal(now, DefaultMaxBytes)
}

func newLocal(now func() time.Time, maxBytes int) *LocalLimiter {
	if now == nil {
		now = time.Now
	}
	l := &LocalLimiter{
		now:      now,
		base:     now(),
		seed0:    maphash.MakeSeed(),
		seed1:    maphash.MakeSeed(),
		maxBytes: max(maxBytes/localShards, minSweep*entryBytes),
	}
	for i := range l.shards {
		l.shards[i].entries = make(map[localKey]*entry)
		l.shards[i].sweepAt = minSweep
	}
	return l
}

// Allow decides one request for key under p; its Source is "memory".
func (l *LocalLimiter) Allow(_ context.Context, key string, p Policy) Decision {
	g, ok := compile(p, time.Nanosecond)
	if !ok {
		return unlimited(SourceMemory)
	}
	return l.decide(l.hash(key, g.fp), g, 1, SourceMemory)
}

// Status reports the in-memory backend for /status.
func (l *LocalLimiter) Status() Status {
	return Status{Backend: SourceMemory}
}

// hash returns the local key of key under a policy's fingerprint.
func (l *LocalLimiter) hash(key string, fp uint32) localKey {
	return localKey{
		maphash.String(l.seed0, key) ^ uint64(fp),
		bits.RotateLeft64(maphash.String(l.seed1, key), 32) ^ uint64(fp)<<32,
	}
}

// size returns the number of keys tracked and their bytes.
func (l *LocalLimiter) size() (keys, bytes int) {
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		keys += len(s.entries)
		bytes += s.bytes
		s.mu.Unlock()
	}
	return keys, bytes
}

func (l *LocalLimiter) offset() time.Duration {
	// Monotonic offsets: a wall-clock step must not refill or drain state.
	return l.now().Sub(l.base)
}

// decide decides one request for k with this data plane's share of g when
// it is one of peers: GCRA with interval T·peers and the same tolerance in
// time, or a window of limit/peers.
func (l *LocalLimiter) decide(k localKey, g params, peers int, source string) Decision {
	now := l.offset()
	limit := g.limit
	if peers > 1 {
		limit = max(1, g.limit/peers)
		if g.alg == GCRA {
			g.interval *= time.Duration(peers)
		}
	}
	s := &l.shards[k[0]%localShards]

	s.mu.Lock()
	e := s.entries[k]
	var d Decision
	if g.alg == SlidingWindow {
		var slots []slotCount
		if e != nil {
			slots = e.slots
		}
		var after []slotCount
		// decideWindow works in place, so the entry takes the result
		// whether admitted or not.
		d, after = g.decideWindow(now, slots, limit)
		if d.Allowed || e != nil {
			e = s.store(k, e, now, l.maxBytes, g.slot)
			s.bytes += (cap(after) - cap(e.slots)) * slotBytes
			e.slots = after
			if s.bytes > l.maxBytes {
				s.makeRoom(now, l.maxBytes)
			}
		}
	} else {
		var tat time.Duration
		if e != nil {
			tat = e.tat
		}
		var newTAT time.Duration
		d, newTAT = g.decideGCRA(now, tat, limit)
		if d.Allowed {
			e = s.store(k, e, now, l.maxBytes, 0)
			e.tat = newTAT
		}
	}
	s.mu.Unlock()

	d.Source = source
	return d
}

// store returns k's entry, adding an empty one (after making room) when
// there is none. slot is the window's slot length, 0 for GCRA.
func (s *localShard) store(k localKey, e *entry, now time.Duration, maxBytes int, slot time.Duration) *entry {
	if e != nil {
		return e
	}
	s.makeRoom(now, maxBytes)
	e = &entry{slot: slot}
	if slot != 0 {
		e.slots = []slotCount{}
	}
	s.entries[k] = e
	s.bytes += entryBytes
	return e
}

// remember records the state Redis reported for k, on this process' clock,
// so that a local decision while Redis is unavailable starts from it: a
// GCRA key's TAT is now + Reset; a window key's count (Limit − Remaining,
// or Limit when refused), divided by peers and rounded up, is put in the
// slot that expires with Reset (the newest slot: erring towards limiting).
func (l *LocalLimiter) remember(k localKey, g params, peers int, d Decision) {
	now := l.offset()
	s := &l.shards[k[0]%localShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[k]
	if g.alg == GCRA {
		if d.Reset <= 0 {
			return
		}
		e = s.store(k, e, now, l.maxBytes, 0)
		e.tat = now + d.Reset
		return
	}
	used := g.limit - d.Remaining
	if !d.Allowed {
		used = g.limit
	}
	n := (used + max(peers, 1) - 1) / max(peers, 1)
	if n <= 0 || d.Reset <= 0 {
		if e != nil {
			e.slots = e.slots[:0]
		}
		return
	}
	// The slot whose expiry, (slot+N+1)·length, is at or after now+Reset.
	last := int64((now+d.Reset+g.slot-1)/g.slot) - windowSlots - 1
	e = s.store(k, e, now, l.maxBytes, g.slot)
	before := cap(e.slots)
	e.slots = append(e.slots[:0], slotCount{slot: last, n: int64(n)})
	s.bytes += (cap(e.slots) - before) * slotBytes
}

// makeRoom runs before a new key is added: it sweeps full states once the
// shard has doubled since the last sweep and, if the shard is still over
// its byte budget, evicts entries until an eighth of it is free.
func (s *localShard) makeRoom(now time.Duration, maxBytes int) {
	n := len(s.entries)
	s.peak = max(s.peak, n+1)
	if n < s.sweepAt && s.bytes+entryBytes <= maxBytes {
		return
	}
	for k, e := range s.entries {
		if e.full(now, e.slot) {
			s.bytes -= e.bytes()
			delete(s.entries, k)
		}
	}
	if s.bytes+entryBytes > maxBytes {
		// Go's map iteration order is unspecified, so this forgets
		// arbitrary keys: each of them merely starts again full.
		for k, e := range s.entries {
			if s.bytes <= maxBytes*7/8 {
				break
			}
			s.bytes -= e.bytes()
			delete(s.entries, k)
		}
	}
	n = len(s.entries)
	// Maps never shrink; reallocate one that holds a small part of what it
	// once did so a burst of keys does not pin its memory for good.
	if s.peak > 4*minSweep && n < s.peak/4 {
		fresh := make(map[localKey]*entry, n)
		for k, v := range s.entries {
			fresh[k] = v
		}
		s.entries, s.peak = fresh, n
	}
	s.sweepAt = max(2*n, minSweep)
}
