package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// refreshTestClient is an issuer's OIDC client whose provider cannot be
// reached (a closed port): any attempt to spend a refresh token fails with
// errProviderDown, so a success can only come from another data plane's
// result.
func refreshTestClient(t *testing.T, key string, rc redis.UniversalClient, m *SessionMetrics) *oidcClient {
	t.Helper()
	is, err := NewIssuer(context.Background(), &config.Issuer{Name: "corp", Issuer: "http://127.0.0.1:1",
		OIDC: &config.IssuerOIDC{ClientID: "web", ClientSecret: "s", SessionKey: key}}, IssuerOptions{Redis: rc, SessionMetrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Close)
	return is.oidc
}

// TestRefreshShared: with Redis, a data plane takes another data plane's
// sealed result for the refresh token it holds instead of spending it; a
// result sealed under another token's hash, or with another session key,
// is not taken; while another data plane holds the lock and no result
// comes, the wait ends as errRefreshBusy (503), never as a second use of
// the token; without anything in Redis the data plane refreshes itself;
// what Redis holds is the sealed session, no token in clear; and each
// request's outcome is counted.
func TestRefreshShared(t *testing.T) {
	srv := testutil.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rc.Close() })
	ctx := context.Background()
	sessionKey := config.NewSessionKey()
	winner := refreshTestClient(t, sessionKey, rc, nil) // "dp-1"
	metrics := NewSessionMetrics(prometheus.NewRegistry())
	loser := refreshTestClient(t, sessionKey, rc, metrics) // "dp-2"
	now := time.Now()
	old := &oidcSession{Claims: map[string]any{"sub": "alice"}, Refresh: "ory_rt_old-refresh-token", Issued: now.Add(-time.Hour).Unix(),
		Expiry: now.Add(-time.Second).Unix(), Until: now.Add(time.Hour).Unix(), Client: "web"}
	next := *old
	next.Refresh, next.Issued, next.Expiry = "ory_rt_new-refresh-token", now.Unix(), now.Add(time.Hour).Unix()
	key := sha256.Sum256([]byte(old.Refresh))
	resultKey := refreshResultPrefix + hex.EncodeToString(key[:])
	store := func(t *testing.T, c *oidcClient, under [32]byte, s *oidcSession) {
		t.Helper()
		sealed, err := sealSession(c.sealer, resultName(under), s)
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Set(ctx, refreshResultPrefix+hex.EncodeToString(under[:]), sealed, refreshReuseWindow).Err(); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("nothing shared: refreshes itself", func(t *testing.T) {
		if _, err := loser.refresher.refresh(ctx, old, now); !errors.Is(err, errProviderDown) {
			t.Fatalf("err = %v, want the provider's (it tried itself)", err)
		}
		if n, _ := rc.Exists(ctx, refreshLockPrefix+hex.EncodeToString(key[:])).Result(); n != 0 {
			t.Fatal("the lock outlived a failed refresh")
		}
	})
	t.Run("another token's result is not taken", func(t *testing.T) {
		// A result moved from another token's key does not open here.
		other := sha256.Sum256([]byte("ory_rt_someone-else"))
		sealed, _ := sealSession(winner.sealer, resultName(other), &next)
		rc.Set(ctx, resultKey, sealed, refreshReuseWindow)
		if _, err := loser.refresher.refresh(ctx, old, now); !errors.Is(err, errProviderDown) {
			t.Fatalf("err = %v, want the provider's", err)
		}
	})
	t.Run("another session key's result is not taken", func(t *testing.T) {
		store(t, refreshTestClient(t, config.NewSessionKey(), rc, nil), key, &next)
		if _, err := loser.refresher.refresh(ctx, old, now); !errors.Is(err, errProviderDown) {
			t.Fatalf("err = %v, want the provider's", err)
		}
	})
	t.Run("the winner's result is taken", func(t *testing.T) {
		store(t, winner, key, &next)
		val, _ := rc.Get(ctx, resultKey).Result()
		for _, clear := range []string{old.Refresh, next.Refresh, "alice"} {
			if strings.Contains(val, clear) {
				t.Fatalf("Redis holds %q in clear", clear)
			}
		}
		got, err := loser.refresher.refresh(ctx, old, now)
		if err != nil || got.Refresh != next.Refresh || got.Expiry != next.Expiry {
			t.Fatalf("refresh = %+v, %v; want the winner's session", got, err)
		}
		// Remembered here too: taken again with Redis emptied.
		rc.FlushAll(ctx)
		if got, err := loser.refresher.refresh(ctx, old, now); err != nil || got.Refresh != next.Refresh {
			t.Fatalf("again = %+v, %v", got, err)
		}
	})
	t.Run("locked elsewhere, no result: busy, not spent", func(t *testing.T) {
		stale := *old
		stale.Refresh = "ory_rt_locked-token"
		k := sha256.Sum256([]byte(stale.Refresh))
		rc.Set(ctx, refreshLockPrefix+hex.EncodeToString(k[:]), "another-data-plane", refreshLockTTL)
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, err := loser.refresher.refresh(wctx, &stale, now); !errors.Is(err, errRefreshBusy) {
			t.Fatalf("err = %v, want errRefreshBusy", err)
		}
	})
	for outcome, want := range map[string]float64{"spent": 0, "shared": 2, "failed": 3, "refused": 0, "busy": 1} {
		if got := promtest.ToFloat64(metrics.refreshes.WithLabelValues("corp", outcome)); got != want {
			t.Errorf("portico_oidc_session_refreshes_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

// TestRefusedRefresh: only the provider's refusal ends a session; its
// failures do not.
func TestRefusedRefresh(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"invalid_grant 400", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant"}, true},
		{"401", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 401}}, true},
		{"bad ID token", &oauth2.RetrieveError{ErrorCode: "invalid_id_token"}, true},
		{"500 server_error", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 500}, ErrorCode: "server_error"}, false},
		{"503", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 503}}, false},
		{"unreachable", errProviderDown, false},
		{"busy", errRefreshBusy, false},
		{"wrapped 400", errors.Join(errors.New("x"), &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}}), true},
		{"refused before", errRefusedBefore, true},
		{"wrapped refused before", fmt.Errorf("x: %w", errRefusedBefore), true},
	} {
		if got := refusedRefresh(tc.err); got != tc.want {
			t.Errorf("%s: refusedRefresh = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRefusedEntrySize: a remembered refusal costs no more than the
// refusedEntryBytes it is charged, so refusedBytes bounds the memory.
func TestRefusedEntrySize(t *testing.T) {
	const n = 10_000
	c := newByteCache[struct{}](n * refusedEntryBytes)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	until := time.Now().Add(time.Hour)
	for i := range n {
		var k [32]byte
		k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
		c.put(k, struct{}{}, until, refusedEntryBytes)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (after.HeapAlloc - before.HeapAlloc) / n
	runtime.KeepAlive(c)
	if entries, _ := c.stats(); entries != n {
		t.Fatalf("%d entries kept, want %d", entries, n)
	}
	t.Logf("%d bytes per remembered refusal", per)
	if per > refusedEntryBytes {
		t.Fatalf("a remembered refusal costs %d bytes, more than the %d charged", per, refusedEntryBytes)
	}
}
