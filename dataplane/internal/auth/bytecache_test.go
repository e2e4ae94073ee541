package auth

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"
)

func hkey(i int) [32]byte { return sha256.Sum256(fmt.Appendf(nil, "token-%d", i)) }

// TestByteCacheBound: however many entries are put, the bytes held never
// pass the bound; the least recently used go first; an entry larger than
// the bound is not kept.
func TestByteCacheBound(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	far := now.Add(time.Hour)
	c := newByteCache[int](10_000)
	for i := range 1000 {
		c.put(hkey(i), i, far, 300+int64(i%7)*50)
		if _, b := c.stats(); b > 10_000 {
			t.Fatalf("after %d puts the cache holds %d bytes, bound 10000", i+1, b)
		}
	}
	n, b := c.stats()
	if n == 0 || b == 0 {
		t.Fatal("cache empty after 1000 puts")
	}
	// The newest entries are there, the oldest gone.
	if v, ok := c.get(hkey(999), now); !ok || v != 999 {
		t.Fatalf("newest entry: %v %v", v, ok)
	}
	if _, ok := c.get(hkey(0), now); ok {
		t.Fatal("the oldest entry survived 1000 puts into a 10 kB cache")
	}
	// Recently used survives: touch the oldest survivor, then push one more.
	oldest := 1000 - n
	if _, ok := c.get(hkey(oldest), now); !ok {
		t.Fatalf("entry %d should be the oldest survivor", oldest)
	}
	c.put(hkey(5000), 5000, far, 600)
	if _, ok := c.get(hkey(oldest), now); !ok {
		t.Fatal("a just-used entry was evicted before unused ones")
	}
	// Too big for the whole cache: not kept, nothing evicted for it.
	before, _ := c.stats()
	c.put(hkey(6000), 6000, far, 20_000)
	if _, ok := c.get(hkey(6000), now); ok {
		t.Fatal("an entry larger than the bound was kept")
	}
	if after, _ := c.stats(); after != before {
		t.Fatalf("an oversized put changed the entries: %d -> %d", before, after)
	}
	// Replacing an entry does not count it twice.
	c2 := newByteCache[int](1000)
	for range 10 {
		c2.put(hkey(1), 1, far, 400)
	}
	if n, b := c2.stats(); n != 1 || b != 400 {
		t.Fatalf("one key put 10 times: %d entries, %d bytes", n, b)
	}
}

// TestByteCacheExpiry: an entry is never answered at or after its time,
// and is dropped when met.
func TestByteCacheExpiry(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newByteCache[string](1 << 20)
	c.put(hkey(1), "a", now.Add(time.Second), 100)
	cases := []struct {
		at   time.Duration
		want bool
	}{
		{0, true},
		{999 * time.Millisecond, true},
		{time.Second, false},
		{0, false}, // dropped when met after its time
	}
	for i, tc := range cases {
		if _, ok := c.get(hkey(1), now.Add(tc.at)); ok != tc.want {
			t.Fatalf("case %d: get at +%s = %v, want %v", i, tc.at, ok, tc.want)
		}
	}
	if n, b := c.stats(); n != 0 || b != 0 {
		t.Fatalf("expired entry still held: %d entries, %d bytes", n, b)
	}
}
