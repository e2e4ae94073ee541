package ratelimit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/testutil"
)

// BenchmarkAllow measures one decision: against a local redis-server (a
// round trip, so mostly the client and the loopback), and in process.
func BenchmarkAllow(b *testing.B) {
	// High enough that every decision is an admission that writes.
	p := Policy{Limit: 1_000_000_000, Window: time.Second}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "bench:ip:10.0.0." + strconv.Itoa(i)
	}
	b.Run("redis", func(b *testing.B) {
		srv := testutil.StartRedis(b)
		lim := NewRedis(Options{Client: newClient(b, srv.URL()), Budget: time.Second})
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if d := lim.Allow(ctx, keys[i%len(keys)], p); d.Source != SourceRedis {
				b.Fatalf("decision from %s", d.Source)
			}
			i++
		}
	})
	// Many requests deciding at once, as under load: the decisions go
	// to Redis in batches, so this is the batch path's cost per decision
	// (hand-off to the worker, pipeline, reply).
	b.Run("redis-parallel", func(b *testing.B) {
		srv := testutil.StartRedis(b)
		lim := NewRedis(Options{Client: newClient(b, srv.URL()), Budget: time.Second})
		b.ReportAllocs()
		b.SetParallelism(16)
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				if d := lim.Allow(ctx, keys[next.Add(1)%int64(len(keys))], p); d.Source != SourceRedis {
					b.Errorf("decision from %s", d.Source)
					return
				}
			}
		})
	})
	b.Run("local", func(b *testing.B) {
		lim := NewLocal(nil)
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			lim.Allow(ctx, keys[i%len(keys)], p)
			i++
		}
	})
}
