package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/MicahParks/jwkset"
	"golang.org/x/time/rate"

	"github.com/portico-gw/portico/shared/jwtkey"
)

// Bounds of JWKS fetches: an identity provider that hangs or answers with an
// endless body must not tie up the gateway.
const (
	jwksFetchTimeout = 5 * time.Second
	maxJWKSBytes     = 1 << 20
)

// MinJWKSMaxAge is the shortest refresh interval a JWKS response's
// Cache-Control may ask for: an identity provider answering max-age=0 must
// not turn the gateway into a client that fetches on every tick.
const MinJWKSMaxAge = 5 * time.Second

// jwksSource serves keys from a JWKS URL. jwkset parses each JWK; fetching,
// the refresh schedule and key selection are ours: the schedule follows the
// response's Cache-Control within bounds (jwkset's refresh is a fixed
// ticker), and selection applies the same kid, algorithm and key-type rules
// as for inline keys.
type jwksSource struct {
	name, url string
	client    *http.Client
	log       *slog.Logger
	// every is the longest time between two fetches (the issuer's
	// jwks_refresh); a response's max-age may shorten it, down to
	// MinJWKSMaxAge, never lengthen it.
	every time.Duration
	// keys is the last set fetched successfully (nil before the first).
	keys atomic.Pointer[[]keyEntry]
	// gen counts the changes of the fetched document; last is a hash of
	// the one in keys.
	gen  atomic.Uint64
	last uint64
	// fetching serialises fetches; the request path never waits on it.
	fetching sync.Mutex
	// unknownKID admits one on-demand refresh per interval. It is asked with
	// Allow, never Wait, so a flood of made-up kids cannot pile up
	// goroutines.
	unknownKID *rate.Limiter
}

// newJWKSSource fetches the set once (a failure is logged: tokens fail
// until a fetch succeeds) and refreshes it until ctx ends.
func newJWKSSource(ctx context.Context, name, url string, every time.Duration, o IssuerOptions, log *slog.Logger) *jwksSource {
	s := &jwksSource{
		name: name, url: url, client: boundedClient(o.HTTPClient), log: log, every: every,
		unknownKID: rate.NewLimiter(rate.Every(o.RefreshUnknownKIDRate), 1),
	}
	next := s.refresh(ctx)
	go s.run(ctx, next)
	return s
}

// run refreshes the set until ctx ends, each time after the interval the
// previous fetch chose.
func (s *jwksSource) run(ctx context.Context, next time.Duration) {
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			t.Reset(s.refresh(ctx))
		}
	}
}

// refresh fetches the set, keeps the last good one on failure, and returns
// the time until the next fetch.
func (s *jwksSource) refresh(ctx context.Context) time.Duration {
	s.fetching.Lock()
	defer s.fetching.Unlock()
	maxAge, err := s.fetch(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("auth: JWKS fetch failed; keeping the last good key set", "issuer", s.name, "error", err)
		}
		return s.every
	}
	return s.interval(maxAge)
}

// interval is the time until the next fetch: the configured one, shortened
// by a max-age the response gave (maxAge < 0: none), never below
// MinJWKSMaxAge (or the configured one, if shorter).
func (s *jwksSource) interval(maxAge time.Duration) time.Duration {
	if maxAge < 0 {
		return s.every
	}
	return min(s.every, max(maxAge, MinJWKSMaxAge))
}

// fetch GETs the set and, if every key in it parses, replaces the cached
// one: a set with a broken key is refused whole, as jwkset does, rather
// than half used. It returns the response's Cache-Control max-age (-1 when
// it gives none).
func (s *jwksSource) fetch(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return -1, fmt.Errorf("jwks_url: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1, fmt.Errorf("JWKS answered HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body) // bounded by limitedTransport
	if err != nil {
		return -1, fmt.Errorf("JWKS response: %w", err)
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		return -1, fmt.Errorf("JWKS response: %w", err)
	}
	entries := make([]keyEntry, 0, len(set.Keys))
	for _, m := range set.Keys {
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
		switch {
		case errors.Is(err, jwkset.ErrUnsupportedKey):
			continue // e.g. Ed448: not ours to verify with
		case err != nil:
			return -1, fmt.Errorf("JWKS key %s: %w", quoteKID(m.KID), err)
		}
		if e, ok := jwtkey.FromJWK(j); ok {
			entries = append(entries, e)
		}
	}
	// The caller holds s.fetching, which guards last.
	if h := maphash.Bytes(jwksSeed, body); h != s.last || s.keys.Load() == nil {
		s.last = h
		s.keys.Store(&entries)
		s.gen.Add(1)
	}
	return cacheMaxAge(resp.Header), nil
}

var jwksSeed = maphash.MakeSeed()

// version changes with every fetch that brought a different document.
func (s *jwksSource) version() uint64 { return s.gen.Load() }

// cacheMaxAge reads Cache-Control: max-age=N as N seconds; no-cache and
// no-store count as 0 (fetch as often as allowed); -1 when it says nothing.
func cacheMaxAge(h http.Header) time.Duration {
	age := time.Duration(-1)
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-cache", "no-store":
				return 0
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
				if err != nil || n < 0 {
					continue
				}
				age = time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
			}
		}
	}
	return age
}

func (s *jwksSource) key(ctx context.Context, alg, kid string) (any, error) {
	entries := s.cached()
	// TryLock: a fetch already running (the schedule's) will do; the
	// request does not queue behind it.
	if needsFetch(entries, kid) && s.unknownKID.Allow() && s.fetching.TryLock() {
		_, err := s.fetch(ctx)
		s.fetching.Unlock()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("auth: JWKS fetch failed; keeping the last good key set", "issuer", s.name, "error", err)
		}
		entries = s.cached()
	}
	return selectKey(entries, alg, kid)
}

// needsFetch: a kid the cached set lacks may be a freshly rotated key; an
// empty set means no fetch has succeeded yet.
func needsFetch(entries []keyEntry, kid string) bool {
	if kid == "" {
		return len(entries) == 0
	}
	for i := range entries {
		if entries[i].KID == kid {
			return false
		}
	}
	return true
}

// cached is the key set as last fetched.
func (s *jwksSource) cached() []keyEntry {
	if p := s.keys.Load(); p != nil {
		return *p
	}
	return nil
}

// boundedClient copies the caller's client (never mutating a shared one) and
// bounds it: a timeout, a response size limit, and no redirect away from
// https, which would hand key selection to whoever sits on the network.
func boundedClient(base *http.Client) *http.Client {
	var c http.Client
	if base != nil {
		c = *base
	}
	if c.Timeout <= 0 || c.Timeout > jwksFetchTimeout {
		c.Timeout = jwksFetchTimeout
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	// Every fetch is a client span (JWKS refreshes show in traces, with the
	// global tracer provider telemetry.Setup installs).
	c.Transport = otelhttp.NewTransport(limitedTransport{base: rt},
		otelhttp.WithSpanNameFormatter(func(string, *http.Request) string { return "JWKS fetch" }))
	if c.CheckRedirect == nil {
		c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
				return errors.New("refusing redirect from https to " + req.URL.Scheme)
			}
			return nil
		}
	}
	return &c
}

type limitedTransport struct{ base http.RoundTripper }

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > maxJWKSBytes {
		resp.Body.Close()
		return nil, fmt.Errorf("JWKS response of %d bytes exceeds %d", resp.ContentLength, maxJWKSBytes)
	}
	// The decoder reading past the limit gets an error, so an oversized set
	// fails the fetch (and the last good set stays) instead of being cut.
	resp.Body = http.MaxBytesReader(nil, resp.Body, maxJWKSBytes)
	return resp, nil
}
