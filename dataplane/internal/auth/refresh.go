package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Refreshing a session once for the whole cluster.
//
// Providers that rotate refresh tokens (ORY Hydra, Keycloak, Auth0,
// Okta...) give a new refresh token at each refresh and treat a second use
// of the old one as theft: the whole grant is revoked, the tokens the first
// use obtained included. A browser loading a page sends several requests
// with the same cookie, possibly to several data planes behind a load
// balancer; were each to refresh, the user would be logged out. So a
// refresh token is spent once, and every other request carrying it takes
// that refresh's result:
//
//   - On one data plane, one refresh per refresh token at a time
//     (singleflight keyed by the token's SHA-256); requests arriving
//     meanwhile wait for it, each within its own context.
//   - The result is remembered for refreshReuseWindow (30s) under the old
//     token's hash, so that a request still carrying the old cookie (sent
//     before the browser saw the new one) gets the new session instead of
//     spending the old token again. Bounded: refreshRecentBytes per
//     issuer, least recently used first out.
//   - With --redis, across data planes: before refreshing, a data plane
//     reads the shared result (key portico:oidc:refreshed:<hash>), then
//     takes a lock (SET NX PX, portico:oidc:refresh-lock:<hash>, expiring
//     after refreshLockTTL even if its holder dies); the holder refreshes
//     and stores the result for refreshReuseWindow, the others poll for it
//     (20ms, doubling to 200ms) until it appears or the lock is freed (the
//     holder failed: they try in turn). Each Redis call has
//     refreshRedisBudget; the whole wait is bounded by refreshWait, past
//     which the request gets 503 (try again), never a logout.
//   - A refusal (the grant is revoked or expired, the token already spent)
//     is final: each data plane remembers the refused token's hash until
//     the session's absolute end (refusedBytes per issuer, least recently
//     used first out), and a request still carrying it ends its session
//     without asking the provider again. A client that keeps sending a
//     dead cookie costs the provider one call per data plane, not one per
//     request.
//   - Redis unreachable before anything is known: as without Redis (this
//     data plane refreshes alone). Once another data plane is known to be
//     refreshing, a Redis failure is a 503: presenting the token a second
//     time would revoke the grant.
//
// Neither the tokens nor the session are ever stored in clear: keys are
// hashes, and a result is the refreshed session sealed with the issuer's
// session key (every data plane has it), bound to its key as additional
// data, exactly like the cookie it becomes.
//
// Without Redis, two data planes may still both present the old token at
// the same instant. The provider's remedy is a rotation grace period
// (Hydra: oauth2.grant.refresh_token.rotation_grace_period, at most 5m,
// default 0) during which a used refresh token still works; see
// docs/CONFIGURATION.md.

const (
	refreshReuseWindow = 30 * time.Second
	refreshRecentBytes = 4 << 20
	refusedBytes       = 1 << 20
	// refusedEntryBytes is what one remembered refusal is charged: the
	// cache's entry, its list element and the map's share (measured by
	// TestRefusedEntrySize).
	refusedEntryBytes  = 256
	refreshLockTTL     = oidcTimeout + 5*time.Second
	refreshWait        = oidcTimeout + 2*time.Second
	refreshRedisBudget = 250 * time.Millisecond
	refreshPollFirst   = 20 * time.Millisecond
	refreshPollMax     = 200 * time.Millisecond

	refreshLockPrefix   = "portico:oidc:refresh-lock:"
	refreshResultPrefix = "portico:oidc:refreshed:"
)

// errRefusedBefore: the provider refused this refresh token earlier (see
// refresher.refused); refusedRefresh counts it as a refusal.
var errRefusedBefore = errors.New("auth: the provider refused this session's refresh earlier")

// errRefreshBusy: another request (here or on another data plane) is
// refreshing the session and its result did not come in time.
var errRefreshBusy = errors.New("auth: the session is being refreshed elsewhere; try again")

// refresher spends each refresh token once (see above).
type refresher struct {
	c       *oidcClient
	redis   redis.UniversalClient // nil: this data plane only
	metrics *SessionMetrics
	flight  singleflight.Group
	recent  *byteCache[string]   // sealed results by the old refresh token's hash
	refused *byteCache[struct{}] // refresh tokens the provider refused, by hash
}

func newRefresher(c *oidcClient, rc redis.UniversalClient, m *SessionMetrics) *refresher {
	return &refresher{c: c, redis: rc, metrics: m, recent: newByteCache[string](refreshRecentBytes),
		refused: newByteCache[struct{}](refusedBytes)}
}

// SessionMetrics count OIDC session refreshes by issuer and outcome, one
// per request that found its session due: spent (this request used the
// refresh token at the provider), shared (it took the result of another
// request, on this data plane or, through Redis, another), refused (the
// provider said no: the session ended), refused_before (the provider had
// refused this refresh token before: not asked again), failed (the
// provider failed or could not be reached), busy (another request's
// refresh did not finish in time: 503). Across a cluster, spent counts the uses of refresh tokens:
// with Redis, one per refresh. Make one per process; nil counts nothing.
type SessionMetrics struct {
	refreshes *prometheus.CounterVec
}

// NewSessionMetrics registers portico_oidc_session_refreshes_total with reg.
func NewSessionMetrics(reg prometheus.Registerer) *SessionMetrics {
	m := &SessionMetrics{refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_oidc_session_refreshes_total",
		Help: "OIDC session refreshes, by issuer and outcome (spent: this request used the refresh token; shared: it took another request's result, here or through Redis; refused: the provider ended the session; refused_before: it had refused this refresh token before and was not asked again; failed: the provider failed; busy: another request's refresh did not finish in time).",
	}, []string{"issuer", "outcome"})}
	reg.MustRegister(m.refreshes)
	return m
}

func (m *SessionMetrics) count(issuer, outcome string) {
	if m != nil {
		m.refreshes.WithLabelValues(issuer, outcome).Inc()
	}
}

// unlockScript frees the lock only for its holder (a holder past the
// lock's expiry must not free the next holder's lock).
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// refresh returns s refreshed, by this request or by whichever request
// (on any data plane) spent s's refresh token first.
func (r *refresher) refresh(ctx context.Context, s *oidcSession, now time.Time) (*oidcSession, error) {
	key := sha256.Sum256([]byte(s.Refresh))
	if _, ok := r.refused.get(key, now); ok {
		r.metrics.count(r.c.issuer.name, "refused_before")
		return nil, errRefusedBefore
	}
	if ns, ok := r.remembered(key, now); ok {
		r.metrics.count(r.c.issuer.name, "shared")
		return ns, nil
	}
	// spent is set only by the request whose function the flight runs,
	// and read after the flight's answer (the channel orders them).
	spent := false
	ch := r.flight.DoChan(string(key[:]), func() (any, error) {
		// Another flight may have ended between remembered and here.
		if ns, ok := r.remembered(key, now); ok {
			return ns, nil
		}
		// Detached from the first request (the others wait for it too),
		// bounded on its own.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshWait)
		defer cancel()
		ns, sealed, mine, err := r.coordinated(fctx, key, s, now)
		spent = mine
		if err != nil {
			if refusedRefresh(err) {
				r.refused.put(key, struct{}{}, time.Unix(s.Until, 0), refusedEntryBytes)
			}
			return nil, err
		}
		if sealed != "" {
			r.recent.put(key, sealed, now.Add(refreshReuseWindow), int64(len(sealed)))
		}
		return ns, nil
	})
	select {
	case res := <-ch:
		switch {
		case res.Err == nil && spent:
			r.metrics.count(r.c.issuer.name, "spent")
		case res.Err == nil:
			r.metrics.count(r.c.issuer.name, "shared")
		case errors.Is(res.Err, errRefreshBusy):
			r.metrics.count(r.c.issuer.name, "busy")
		case refusedRefresh(res.Err):
			r.metrics.count(r.c.issuer.name, "refused")
		default:
			r.metrics.count(r.c.issuer.name, "failed")
		}
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*oidcSession), nil
	case <-ctx.Done():
		r.metrics.count(r.c.issuer.name, "busy")
		return nil, errRefreshBusy
	}
}

// remembered is the result of an earlier refresh of this token here.
func (r *refresher) remembered(key [32]byte, now time.Time) (*oidcSession, bool) {
	sealed, ok := r.recent.get(key, now)
	if !ok {
		return nil, false
	}
	ns, err := r.open(key, sealed)
	return ns, err == nil
}

// coordinated refreshes s once for the cluster, returning the new session,
// its sealed form ("" when it cannot be sealed: then it is not shared) and
// whether this call used the refresh token (mine) or took another's result.
func (r *refresher) coordinated(ctx context.Context, key [32]byte, s *oidcSession, now time.Time) (_ *oidcSession, _ string, mine bool, _ error) {
	if r.redis == nil {
		ns, sealed, err := r.spend(ctx, key, s, now)
		return ns, sealed, true, err
	}
	h := hex.EncodeToString(key[:])
	lockKey, resultKey := refreshLockPrefix+h, refreshResultPrefix+h
	owner := randomToken()
	delay := refreshPollFirst
	waited := false
	for {
		sealed, err := redisCall(ctx, func(ctx context.Context) (string, error) { return r.redis.Get(ctx, resultKey).Result() })
		switch {
		case err == nil:
			if ns, err := r.open(key, sealed); err == nil {
				return ns, sealed, false, nil
			}
			// Not sealed with this issuer's key (rotated): not ours to use.
		case !errors.Is(err, redis.Nil):
			ns, sealed, err := r.redisDown(ctx, key, s, now, waited, err)
			return ns, sealed, !waited, err
		}
		got, err := redisCall(ctx, func(ctx context.Context) (bool, error) {
			return r.redis.SetNX(ctx, lockKey, owner, refreshLockTTL).Result()
		})
		if err != nil {
			ns, sealed, err := r.redisDown(ctx, key, s, now, waited, err)
			return ns, sealed, !waited, err
		}
		if got {
			ns, sealed, err := r.spend(ctx, key, s, now)
			if err == nil && sealed != "" {
				if _, perr := redisCall(ctx, func(ctx context.Context) (string, error) {
					return r.redis.Set(ctx, resultKey, sealed, refreshReuseWindow).Result()
				}); perr != nil {
					r.c.log.Warn("OIDC refresh: could not share the result through Redis", "issuer", r.c.issuer.name, "error", perr)
				}
			}
			// Free the lock either way: after a failure, another
			// request may try (the provider decides again).
			_, _ = redisCall(context.WithoutCancel(ctx), func(ctx context.Context) (any, error) {
				return unlockScript.Run(ctx, r.redis, []string{lockKey}, owner).Result()
			})
			return ns, sealed, true, err
		}
		// Another request holds the lock: wait for its result.
		waited = true
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, "", false, errRefreshBusy
		case <-t.C:
		}
		delay = min(2*delay, refreshPollMax)
	}
}

// redisDown decides after a Redis failure: refresh alone while nobody is
// known to be refreshing, else give up for now (503).
func (r *refresher) redisDown(ctx context.Context, key [32]byte, s *oidcSession, now time.Time, waited bool, err error) (*oidcSession, string, error) {
	if waited {
		r.c.log.Warn("OIDC refresh: Redis failed while another data plane was refreshing", "issuer", r.c.issuer.name, "error", err)
		return nil, "", errRefreshBusy
	}
	r.c.log.Warn("OIDC refresh: Redis unreachable, refreshing on this data plane alone", "issuer", r.c.issuer.name, "error", err)
	return r.spend(ctx, key, s, now)
}

// spend uses the refresh token at the provider and seals the result.
func (r *refresher) spend(ctx context.Context, key [32]byte, s *oidcSession, now time.Time) (*oidcSession, string, error) {
	ns, err := r.c.refreshSession(ctx, s, now)
	if err != nil {
		return nil, "", err
	}
	sealed, err := sealSession(r.c.sealer, resultName(key), ns)
	if err != nil {
		return ns, "", nil // too large to share even without the ID token
	}
	return ns, sealed, nil
}

func (r *refresher) open(key [32]byte, sealed string) (*oidcSession, error) {
	var ns oidcSession
	if err := r.c.sealer.open(resultName(key), sealed, &ns); err != nil {
		return nil, err
	}
	return &ns, nil
}

// resultName is the additional data a result is sealed with: a result
// opens only under the key it was stored at.
func resultName(key [32]byte) string {
	return refreshResultPrefix + hex.EncodeToString(key[:])
}

// redisCall runs one Redis command within refreshRedisBudget.
func redisCall[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, refreshRedisBudget)
	defer cancel()
	return f(ctx)
}
