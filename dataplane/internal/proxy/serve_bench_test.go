package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/redisconn"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/dataplane/internal/ratelimit"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
	"github.com/portico-gw/portico/shared/testutil"
)

// BenchmarkServe is a load run through the whole request path over real
// loopback HTTP (client → gateway → upstream), with parallel clients: a
// plain route against the same route with JWT verification and a rate
// limit counted in Redis (or in process), and the full chain of `make
// bench-load` (JWT, a Redis limit per consumer, tracing sampled at 1% as
// OTEL_TRACES_SAMPLER=parentbased_traceidratio sets it). Compare ns/op and
// allocs/op between the sub-benchmarks of one run; absolute numbers depend
// on the machine.
func BenchmarkServe(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer up.Close()
	redis := testutil.StartRedis(b)
	rc, err := redisconn.ParseURL(redis.URL())
	if err != nil {
		b.Fatal(err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "https://id.example.com", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(hmacSecret))
	if err != nil {
		b.Fatal(err)
	}
	lots := &config.RateLimit{Limit: 1_000_000_000, Window: config.Duration(time.Second), Burst: 1_000_000}
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}}},
		Issuers: []config.Issuer{{Name: "corp", Issuer: "https://id.example.com", Algorithms: []string{"HS256"},
			Keys: []string{hmacSecret}}},
		Routes: []*config.Route{
			{Name: "plain", Paths: []string{"/plain"}, Service: "s"},
			{Name: "guarded", Paths: []string{"/guarded"}, Service: "s", Auth: &config.RouteAuth{JWT: true},
				RateLimit: &config.RateLimit{Limit: lots.Limit, Window: lots.Window, Burst: lots.Burst, Key: "consumer"}},
		},
	}
	cfg.Sort()
	snap, _, err := snapshot.Encode(1, cfg, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	redisLimiter := ratelimit.NewRedis(ratelimit.Options{Client: rc, Budget: 50 * time.Millisecond, Log: quiet})
	// No span processor: the sampled 1% are recorded and dropped at End,
	// so what is measured is the gateway's side of tracing.
	sampled := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))))
	defer func() { _ = sampled.Shutdown(context.Background()) }()
	for _, c := range []struct {
		name    string
		path    string
		limiter ratelimit.Limiter
		tp      trace.TracerProvider
	}{
		{"plain", "/plain", nil, nil},
		{"jwt+ratelimit-local", "/guarded", ratelimit.NewLocal(time.Now), nil},
		{"jwt+ratelimit-redis", "/guarded", redisLimiter, nil},
		{"full-chain", "/guarded", redisLimiter, sampled},
	} {
		b.Run(c.name, func(b *testing.B) {
			o := Options{Log: quiet, Metrics: NewMetrics(prometheus.NewRegistry())}
			if c.tp != nil {
				o.Observe.TracerProvider = c.tp
				o.Observe.Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
			}
			h := NewHandler(o)
			deps := testDeps()
			deps.Limiter = c.limiter
			applier := NewApplier(h, deps)
			if _, err := applier.Apply(snap); err != nil {
				b.Fatal(err)
			}
			defer applier.Close()
			gw := httptest.NewServer(h)
			defer gw.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", gw.URL+c.path, nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
