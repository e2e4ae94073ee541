package cache

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portico-gw/portico/shared/testutil"
)

func TestMemoryLRU(t *testing.T) {
	ctx := t.Context()
	clk := newClock()
	m := NewMemory(30).WithClock(clk.Now)
	set := func(k, v string) {
		t.Helper()
		if err := m.Set(ctx, k, []byte(v), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	has := func(k string) bool {
		_, err := m.Get(ctx, k)
		if err != nil && !errors.Is(err, ErrMiss) {
			t.Fatal(err)
		}
		return err == nil
	}
	set("a", "123456789") // 10 bytes each
	set("b", "123456789")
	set("c", "123456789")
	if m.Len() != 3 || m.Bytes() != 30 {
		t.Fatalf("Len %d Bytes %d, want 3 30", m.Len(), m.Bytes())
	}
	has("a") // a is now the most recent: b goes first
	set("d", "123456789")
	if has("b") || !has("a") || !has("c") || !has("d") {
		t.Fatal("want b evicted, a, c, d kept")
	}
	set("e", strings.Repeat("x", 19)) // 20 bytes: two entries go
	if m.Len() != 2 || m.Bytes() != 30 || !has("e") || !has("d") {
		t.Fatalf("Len %d Bytes %d after a large entry, want e and d", m.Len(), m.Bytes())
	}
	set("d", "1") // replacing adjusts the size
	if m.Bytes() != 22 {
		t.Fatalf("Bytes %d after replacing, want 22", m.Bytes())
	}
	set("d", strings.Repeat("x", 30)) // alone too big: not stored, old value gone
	if has("d") || m.Bytes() != 20 {
		t.Fatalf("an oversized value: has %v, Bytes %d", has("d"), m.Bytes())
	}
	clk.Add(time.Minute)
	if has("e") {
		t.Fatal("an expired entry was returned")
	}
	if m.Len() != 0 || m.Bytes() != 0 {
		t.Fatalf("Len %d Bytes %d after expiry, want 0 0", m.Len(), m.Bytes())
	}
	if err := m.Set(ctx, "z", []byte("v"), 0); err != nil || has("z") {
		t.Fatal("a zero ttl stored something")
	}
}

func sampleEntry() *entry {
	return &entry{
		kind: kindResponse, status: 203,
		header:   http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}, "X-Empty": {}},
		body:     []byte("hello"),
		storedAt: time.Unix(1700000000, 123), upstreamAge: 3 * time.Second, lifetime: time.Minute,
		vary: []string{"Accept-Encoding"}, shared: true,
	}
}

func TestEntryRoundTrip(t *testing.T) {
	for _, e := range []*entry{
		sampleEntry(),
		{kind: kindResponse, status: 200, header: http.Header{}, storedAt: time.Unix(0, 0)},
		{kind: kindVary, vary: []string{"A", "B"}, header: http.Header{}, storedAt: time.Unix(5, 0), lifetime: time.Second},
	} {
		got, err := decodeEntry(e.encode())
		if err != nil {
			t.Fatal(err)
		}
		if got.kind != e.kind || got.status != e.status || !bytes.Equal(got.body, e.body) || !got.storedAt.Equal(e.storedAt) ||
			got.upstreamAge != e.upstreamAge || got.lifetime != e.lifetime || got.shared != e.shared ||
			strings.Join(got.vary, ",") != strings.Join(e.vary, ",") || len(got.header) != len(e.header) {
			t.Fatalf("decoded %+v, want %+v", got, e)
		}
		for k, vs := range e.header {
			if strings.Join(got.header[k], "|") != strings.Join(vs, "|") {
				t.Errorf("header %s = %q, want %q", k, got.header[k], vs)
			}
		}
	}
}

func TestDecodeGarbage(t *testing.T) {
	good := sampleEntry().encode()
	for i := range len(good) {
		if _, err := decodeEntry(good[:i]); err == nil {
			t.Errorf("a truncation to %d bytes decoded", i)
		}
	}
	for _, b := range [][]byte{nil, []byte("garbage"), append(good[:len(good):len(good)], 0), {'P', 1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		if _, err := decodeEntry(b); err == nil {
			t.Errorf("%q decoded", b)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(sampleEntry().encode())
	f.Add([]byte("P\x01\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err == nil {
			if _, err := decodeEntry(e.encode()); err != nil {
				t.Fatalf("re-encoding a decoded entry: %v", err)
			}
		}
	})
}

func TestRedisStore(t *testing.T) {
	srv := testutil.StartRedis(t)
	client := newRedisClient(t, srv.Addr)
	s := NewRedis(client, time.Second)
	ctx := t.Context()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, ErrMiss) {
		t.Fatalf("Get absent: %v, want ErrMiss", err)
	}
	if err := s.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if ttl := client.PTTL(ctx, RedisPrefix+"k").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL = %v, want the ttl given", ttl)
	}
	if err := s.Set(ctx, "forever", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if n := client.Exists(ctx, RedisPrefix+"forever").Val(); n != 0 {
		t.Fatal("a zero ttl was stored (it would never expire)")
	}

	tok, ok, err := s.Lock(ctx, "k", 5*time.Second)
	if err != nil || !ok {
		t.Fatalf("Lock = %v, %v", ok, err)
	}
	if _, ok, _ := s.Lock(ctx, "k", 5*time.Second); ok {
		t.Fatal("a held lock was taken again")
	}
	if err := s.Unlock(ctx, "k", "someone else"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Lock(ctx, "k", 5*time.Second); ok {
		t.Fatal("Unlock with another token released the lock")
	}
	if err := s.Unlock(ctx, "k", tok); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Lock(ctx, "k", 5*time.Second); !ok {
		t.Fatal("the lock was not released")
	}

	srv.Stop()
	if _, err := s.Get(ctx, "k"); err == nil || errors.Is(err, ErrMiss) {
		t.Fatalf("Get with Redis down: %v, want an error", err)
	}
	if err := s.Set(ctx, "k", []byte("v"), time.Minute); err == nil {
		t.Fatal("Set with Redis down succeeded")
	}
}

// Every call is held to the budget, also through a client that ignores
// context deadlines (its own socket timeouts are seconds).
func TestRedisBudget(t *testing.T) {
	for _, honours := range []bool{true, false} {
		srv := testutil.StartRedis(t)
		client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: honours, MaxRetries: -1})
		defer client.Close()
		s := NewRedis(client, 50*time.Millisecond)
		if err := s.Set(t.Context(), "k", []byte("v"), time.Minute); err != nil {
			t.Fatal(err) // connects before the pause
		}
		srv.Pause(3 * time.Second)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := s.Get(ctx, "k")
		if err == nil || errors.Is(err, ErrMiss) || ctx.Err() != nil {
			t.Errorf("ContextTimeoutEnabled=%v: Get on a paused Redis: %v (outer context %v), want the budget to end it", honours, err, ctx.Err())
		}
		cancel()
	}
}
