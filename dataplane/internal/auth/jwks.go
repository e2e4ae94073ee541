package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"

	"github.com/portico-gw/portico/shared/jwtkey"
)

// Bounds of JWKS fetches: an identity provider that hangs or answers with an
// endless body must not tie up the gateway.
const (
	jwksFetchTimeout = 5 * time.Second
	maxJWKSBytes     = 1 << 20
)

// jwksSource serves keys from a JWKS URL. keyfunc/v3 builds the jwkset
// storage that fetches and refreshes the set; key selection is ours, to apply
// the same kid, algorithm and key-type rules as for inline keys.
type jwksSource struct {
	store jwkset.Storage
	// unknownKID admits one on-demand refresh per interval. It is asked with
	// Allow, never Wait: jwkset's own limiter blocks the request until the
	// next slot, which lets a flood of made-up kids pile up goroutines.
	unknownKID *rate.Limiter
}

func newJWKSSource(ctx context.Context, name, url string, o IssuerOptions, log *slog.Logger) (*jwksSource, error) {
	noErrorOnFirstFetch := true
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
		Client:      boundedClient(o.HTTPClient),
		HTTPTimeout: jwksFetchTimeout,
		// A JWKS endpoint that is down when the configuration loads must not
		// keep the rest of it from loading; its tokens fail until a fetch
		// succeeds.
		NoErrorReturnFirstHTTPReq: &noErrorOnFirstFetch,
		RefreshInterval:           o.RefreshInterval,
		// The library's limiter lets every miss through: unknownKID above has
		// already decided, without blocking, that this miss may fetch. The
		// wait bound also bounds that fetch, since jwkset uses one context
		// for both.
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
		RateLimitWaitMax:  jwksFetchTimeout,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				log.Warn("auth: JWKS fetch failed; keeping the last good key set", "issuer", name, "error", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("jwks_url: %w", err)
	}
	return &jwksSource{
		store:      kf.Storage(),
		unknownKID: rate.NewLimiter(rate.Every(o.RefreshUnknownKIDRate), 1),
	}, nil
}

func (s *jwksSource) key(ctx context.Context, alg, kid string) (any, error) {
	entries, err := s.cached(ctx)
	if err != nil {
		return nil, err
	}
	if needsFetch(entries, kid) && s.unknownKID.Allow() {
		// jwkset refreshes on demand only when a KeyRead misses; the miss is
		// certain here (the kid is absent, or the set is empty).
		_, _ = s.store.KeyRead(ctx, kid)
		if entries, err = s.cached(ctx); err != nil {
			return nil, err
		}
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

// cached reads the key set as last fetched; KeyReadAll never fetches.
func (s *jwksSource) cached(ctx context.Context) ([]keyEntry, error) {
	jwks, err := s.store.KeyReadAll(ctx)
	if err != nil {
		return nil, fail(ErrUnknownKey, err)
	}
	entries := make([]keyEntry, 0, len(jwks))
	for _, j := range jwks {
		if e, ok := jwtkey.FromJWK(j); ok {
			entries = append(entries, e)
		}
	}
	return entries, nil
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
