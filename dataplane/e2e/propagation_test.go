package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// BenchmarkPropagation times an admin write until every one of 10 data
// planes serves it, and reports p50/p99/max in milliseconds. It runs real
// processes, so it belongs to `make bench`, not to the test suite.
func BenchmarkPropagation(b *testing.B) {
	const dataPlanes = 10
	ctx := context.Background()
	up := startUpstream(b, "bench-svc")
	dir := b.TempDir()
	cp := startControlPlane(b, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	var dps []*dataPlane
	for i := range dataPlanes {
		id := fmt.Sprintf("dp-%d", i)
		dps = append(dps, startDataPlane(b, id, cp.url, filepath.Join(dir, id)))
	}
	if _, _, err := cp.admin.Services().Put(ctx, "bench", svc(up)); err != nil {
		b.Fatal(err)
	}
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		path := fmt.Sprintf("/p%d", i)
		start := time.Now()
		if _, _, err := cp.admin.Routes().Put(ctx, fmt.Sprintf("r%d", i), config.Route{Paths: []string{path}, Service: "bench"}); err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, dp := range dps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := time.Now().Add(10 * time.Second)
				for !serves(dp.url+path, "bench-svc") {
					if time.Now().After(deadline) {
						b.Errorf("%s did not serve %s within 10s", dp.id, path)
						return
					}
				}
			}()
		}
		wg.Wait()
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(samples)
	q := func(p float64) float64 {
		return float64(samples[min(len(samples)-1, int(p*float64(len(samples))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}
