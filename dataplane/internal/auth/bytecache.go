package auth

import (
	"container/list"
	"sync"
	"time"
)

// byteCache remembers values under a 32-byte hash, each until a time of its
// own, within a bound on the bytes they take (as their callers estimate
// them): adding past the bound drops the least recently used entries
// first. An entry is never answered after its time; expired entries are
// dropped when met and when space is needed. One mutex guards it: a hit
// is a map lookup and a list move, far below the cost of what it saves (a
// call to an identity provider).
type byteCache[V any] struct {
	maxBytes int64
	mu       sync.Mutex
	bytes    int64
	items    map[[32]byte]*list.Element
	lru      list.List // front: most recently used
}

type byteEntry[V any] struct {
	key   [32]byte
	val   V
	until time.Time
	size  int64
}

func newByteCache[V any](maxBytes int64) *byteCache[V] {
	return &byteCache[V]{maxBytes: maxBytes, items: make(map[[32]byte]*list.Element)}
}

func (c *byteCache[V]) get(key [32]byte, now time.Time) (V, bool) {
	var zero V
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return zero, false
	}
	e := el.Value.(*byteEntry[V])
	if !now.Before(e.until) {
		c.removeLocked(el)
		return zero, false
	}
	c.lru.MoveToFront(el)
	return e.val, true
}

// put remembers val until until; size is what it costs. An entry larger
// than the whole bound is not kept.
func (c *byteCache[V]) put(key [32]byte, val V, until time.Time, size int64) {
	if size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.removeLocked(el)
	}
	for c.bytes+size > c.maxBytes {
		c.removeLocked(c.lru.Back())
	}
	c.items[key] = c.lru.PushFront(&byteEntry[V]{key: key, val: val, until: until, size: size})
	c.bytes += size
}

func (c *byteCache[V]) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*byteEntry[V])
	delete(c.items, e.key)
	c.bytes -= e.size
}

// stats reports the entries and bytes held (tests, metrics).
func (c *byteCache[V]) stats() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items), c.bytes
}
