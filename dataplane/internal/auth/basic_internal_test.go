package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/crypto/bcrypt"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// cheapHash is a bcrypt hash at the library's minimum cost: the checker
// does not look at the cost (validation does), and these tests check the
// bounds, not bcrypt.
func cheapHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func basicConsumers(t testing.TB, n int) []config.Consumer {
	out := make([]config.Consumer, n)
	for i := range out {
		out[i] = config.Consumer{Name: fmt.Sprintf("c%d", i), BasicAuth: []config.BasicCredential{
			{ID: "basic-1", Username: fmt.Sprintf("user%d", i), Hash: cheapHash(t, fmt.Sprintf("password-%d", i))}}}
	}
	return out
}

// The cache holds at most its byte bound over basicEntryBytes, however
// many credentials succeed.
func TestBasicCacheBounded(t *testing.T) {
	b := NewBasicChecker(BasicOptions{CacheBytes: basicEntryBytes * basicShards * 2}) // one entry per shard generation
	if b.CacheCapacity() != 32 {
		t.Fatalf("capacity %d", b.CacheCapacity())
	}
	v := NewVerifier(nil, basicConsumers(t, 100), WithBasicChecker(b))
	for i := range 100 {
		if id, err := v.VerifyBasic(context.Background(), fmt.Sprintf("user%d", i), fmt.Sprintf("password-%d", i)); err != nil || id.Consumer != fmt.Sprintf("c%d", i) {
			t.Fatalf("user%d: %v %v", i, id, err)
		}
		if n := b.CacheEntries(); n > b.CacheCapacity() {
			t.Fatalf("after %d successes the cache holds %d > %d", i+1, n, b.CacheCapacity())
		}
	}
	if b.Checks() != 100 {
		t.Fatalf("%d checks", b.Checks())
	}
}

// basicEntryBytes covers what one entry costs: the map's share per entry
// (measured with 10,000 entries) plus the hash it keeps alive.
func TestBasicCacheEntrySize(t *testing.T) {
	const n = 10_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := make(map[[32]byte]basicEntry)
	for i := range n {
		var k [32]byte
		k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
		m[k] = basicEntry{hash: string(make([]byte, 60)), until: int64(i)}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (after.HeapAlloc - before.HeapAlloc) / n
	runtime.KeepAlive(m)
	t.Logf("%d bytes per entry (entry struct %d)", per, unsafe.Sizeof(basicEntry{}))
	if per > basicEntryBytes {
		t.Fatalf("an entry costs %d bytes, more than the %d charged", per, basicEntryBytes)
	}
}

// At most MaxConcurrent checks run; MaxWaiting more wait, while their
// request lasts; beyond that ErrBusy at once. Remembered credentials never
// wait.
func TestBasicConcurrencyBound(t *testing.T) {
	b := NewBasicChecker(BasicOptions{MaxConcurrent: 1, MaxWaiting: 1})
	cs := basicConsumers(t, 2)
	v := NewVerifier(nil, cs, WithBasicChecker(b))
	ctx := context.Background()
	if _, err := v.VerifyBasic(ctx, "user0", "password-0"); err != nil { // remembered from now on
		t.Fatal(err)
	}
	b.slots <- struct{}{} // a check in progress holds the only slot

	wctx, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() {
		_, err := v.VerifyBasic(wctx, "user1", "password-1")
		waited <- err
	}()
	testutil.Eventually(t, 10*time.Second, func() bool { return b.waiting.Load() == 1 }, "a request waiting for a slot")
	if _, err := v.VerifyBasic(ctx, "user1", "wrong password!"); !errors.Is(err, ErrBusy) {
		t.Fatalf("over the waiting bound: %v, want ErrBusy", err)
	}
	if _, err := v.VerifyBasic(ctx, "nobody", "wrong password!"); !errors.Is(err, ErrBusy) {
		t.Fatalf("unknown user over the bound: %v, want ErrBusy", err)
	}
	if id, err := v.VerifyBasic(ctx, "user0", "password-0"); err != nil || id.Consumer != "c0" {
		t.Fatalf("a remembered credential waited: %v %v", id, err)
	}
	cancel()
	if err := <-waited; !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("cancelled waiter: %v", err)
	}
	if Reason(fmt.Errorf("x: %w", ErrBusy)) != "busy" {
		t.Fatal("reason")
	}
	<-b.slots // the check in progress ends
	if id, err := v.VerifyBasic(ctx, "user1", "password-1"); err != nil || id.Consumer != "c1" {
		t.Fatalf("after the slot was freed: %v %v", id, err)
	}
	if b.waiting.Load() != 0 || len(b.slots) != 0 {
		t.Fatalf("left %d waiting, %d slots taken", b.waiting.Load(), len(b.slots))
	}
}

// The cache keeps no password: its keys are HMAC digests under a key of
// the checker, so the same credentials give other keys in another process.
func TestBasicDigestKeyed(t *testing.T) {
	b1, b2 := NewBasicChecker(BasicOptions{}), NewBasicChecker(BasicOptions{})
	d1, d2 := b1.digest("alice", "secret password"), b2.digest("alice", "secret password")
	if d1 == d2 || d1 != b1.digest("alice", "secret password") {
		t.Fatal("digests are not keyed per checker")
	}
	// Length-prefixed: moving the boundary between username and password
	// changes the digest.
	if b1.digest("ab", "c") == b1.digest("a", "bc") {
		t.Fatal("username/password boundary not in the digest")
	}
}

// FuzzBasicCredentials: the reader agrees with net/http's
// Request.BasicAuth on every header within the size bound.
func FuzzBasicCredentials(f *testing.F) {
	for _, s := range []string{"Basic YWxpY2U6c2VjcmV0", "basic YWxpY2U6", "Basic  YWxpY2U6c2VjcmV0", "Basic !!", "Bearer x", "Basic", "BASIC Og==", "Basic YWxpY2U="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		user, pass, basic, ok := basicCredentials(h)
		if len(h) > MaxBasicHeaderBytes {
			if ok {
				t.Fatal("read a header over the bound")
			}
			return
		}
		r := &http.Request{Header: http.Header{"Authorization": {h}}}
		wu, wp, wok := r.BasicAuth()
		if ok != wok || user != wu || pass != wp {
			t.Fatalf("%q: (%q, %q, %v), net/http (%q, %q, %v)", h, user, pass, ok, wu, wp, wok)
		}
		if ok && !basic {
			t.Fatal("credentials without the Basic scheme")
		}
	})
}
