package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// BenchmarkPropagationScale measures what a big configuration costs: three
// data planes hold PORTICO_BENCH_ROUTES routes (a comma-separated list,
// default 5000), each receives a steady trickle of requests, and then
// PORTICO_BENCH_WRITES admin writes (default 30) each add a route. It
// reports the propagation of a write (admin call to every data plane
// serving the new route) and the data planes' request p99 while steady and
// in the 300 ms after each write. It prints numbers and checks nothing about
// speed: run it with `make bench-scale`, under the heavy lock.
func BenchmarkPropagationScale(b *testing.B) {
	sizes := []int{5000}
	if env := os.Getenv("PORTICO_BENCH_ROUTES"); env != "" {
		sizes = nil
		for _, f := range strings.Split(env, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("PORTICO_BENCH_ROUTES=%q: want a list of positive counts", env)
			}
			sizes = append(sizes, n)
		}
	}
	writes := 30
	if env := os.Getenv("PORTICO_BENCH_WRITES"); env != "" {
		n, err := strconv.Atoi(env)
		if err != nil || n < 1 {
			b.Fatalf("PORTICO_BENCH_WRITES=%q: want a positive count", env)
		}
		writes = n
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			for b.Loop() {
				runScale(b, n, writes)
			}
		})
	}
}

// sample is one request of the background traffic.
type sample struct {
	at  time.Time
	lat time.Duration
}

func runScale(b *testing.B, routes, writes int) {
	const (
		dataPlanes = 3
		// Requests per second per data plane: enough for a p99 over a few
		// seconds, little enough to leave the CPU to the gateway.
		rate = 200
		// after is how long after a write a request counts as "during".
		after = 300 * time.Millisecond
	)
	ctx := context.Background()
	up := startUpstream(b, "scale-svc")
	dir := b.TempDir()
	cp := startControlPlane(b, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	// PORTICO_BENCH_KEEP=<dir> keeps the logs of the control plane and the
	// data planes, which then log at info level (each applied revision with
	// its apply time) and with GODEBUG=gctrace=1 (one line per GC, with the
	// assist time taken from request goroutines).
	keep := os.Getenv("PORTICO_BENCH_KEEP")
	var env, extra []string
	if keep != "" {
		env, extra = []string{"GODEBUG=gctrace=1"}, []string{"--log-level", "info", "--ops-pprof"}
	}
	// PORTICO_BENCH_DP_ARGS adds flags to the data planes (space-separated),
	// to compare settings.
	extra = append(extra, strings.Fields(os.Getenv("PORTICO_BENCH_DP_ARGS"))...)
	var dps []*dataPlane
	for i := range dataPlanes {
		id := fmt.Sprintf("dp-%d", i)
		dps = append(dps, startDataPlaneEnv(b, env, id, cp.url, filepath.Join(dir, id), extra...))
	}
	if keep != "" {
		b.Cleanup(func() {
			for _, p := range append([]*proc{cp.proc}, dps[0].proc, dps[1].proc, dps[2].proc) {
				if data, err := os.ReadFile(p.log); err == nil {
					_ = os.WriteFile(filepath.Join(keep, fmt.Sprintf("routes%d-%s.log", routes, p.name)), data, 0o644)
				}
			}
		})
	}
	cfg := &config.Config{Services: []config.Service{svc(up)}}
	cfg.Services[0].Name = "scale"
	cfg.Routes = append(cfg.Routes, &config.Route{Name: "hot", Paths: []string{"/hot"}, Service: "scale"})
	for i := range routes - 1 {
		cfg.Routes = append(cfg.Routes, &config.Route{Name: fmt.Sprintf("r%06d", i), Paths: []string{fmt.Sprintf("/api/r%d/{id}", i)}, Service: "scale"})
	}
	start := time.Now()
	if _, err := cp.admin.ImportConfig(ctx, cfg, false); err != nil {
		b.Fatal(err)
	}
	for _, dp := range dps {
		deadline := time.Now().Add(5 * time.Minute)
		for !serves(dp.url+"/hot", "scale-svc") {
			if time.Now().After(deadline) {
				b.Fatalf("%s did not serve /hot within 5m", dp.id)
			}
			time.Sleep(50 * time.Millisecond) // pacing a poll, not synchronising
		}
	}
	b.Logf("%d routes imported and served by %d data planes in %v", routes, dataPlanes, time.Since(start).Round(time.Millisecond))

	// Background traffic: an open-loop trickle to each data plane.
	stop := make(chan struct{})
	var mu sync.Mutex
	var samples []sample
	var failures int
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for _, dp := range dps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / rate)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				t0 := time.Now()
				resp, err := hc.Get(dp.url + "/hot")
				ok := err == nil && resp.StatusCode == 200
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				lat := time.Since(t0)
				mu.Lock()
				if ok {
					samples = append(samples, sample{t0, lat})
				} else {
					failures++
				}
				mu.Unlock()
			}
		}()
	}
	steadyFrom := time.Now().Add(time.Second) // let connections warm up
	writesFrom := steadyFrom.Add(4 * time.Second)
	time.Sleep(time.Until(writesFrom)) // the steady phase is a duration of traffic

	if keep != "" {
		// A CPU profile of dp-0 over the writes (about 0.6 s each) and its
		// allocations since start, for `go tool pprof`.
		secs := max(1, writes/2)
		profiled := make(chan struct{})
		defer func() { <-profiled }()
		go func() {
			defer close(profiled)
			fetchTo(filepath.Join(keep, fmt.Sprintf("routes%d-dp-0.cpu.pprof", routes)), fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", dps[0].ops, secs))
			fetchTo(filepath.Join(keep, fmt.Sprintf("routes%d-dp-0.allocs.pprof", routes)), dps[0].ops+"/debug/pprof/allocs")
		}()
	}
	var prop, ack []time.Duration
	var writeTimes []time.Time
	for i := range writes {
		path := fmt.Sprintf("/w%d", i)
		t0 := time.Now()
		if _, _, err := cp.admin.Routes().Put(ctx, fmt.Sprintf("w%06d", i), config.Route{Paths: []string{path}, Service: "scale"}); err != nil {
			b.Fatal(err)
		}
		ack = append(ack, time.Since(t0))
		if keep != "" {
			b.Logf("write %d at %s", i, t0.UTC().Format(time.RFC3339Nano))
		}
		writeTimes = append(writeTimes, t0)
		var pwg sync.WaitGroup
		for _, dp := range dps {
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				deadline := time.Now().Add(30 * time.Second)
				for !serves(dp.url+path, "scale-svc") {
					if time.Now().After(deadline) {
						b.Errorf("%s did not serve %s within 30s", dp.id, path)
						return
					}
					time.Sleep(time.Millisecond) // poll resolution
				}
			}()
		}
		pwg.Wait()
		prop = append(prop, time.Since(t0))
		time.Sleep(after + 200*time.Millisecond) // spacing: one write's aftermath at a time
	}
	close(stop)
	wg.Wait()

	var steady, during []time.Duration
	for _, s := range samples {
		switch {
		case s.at.After(steadyFrom) && s.at.Before(writesFrom):
			steady = append(steady, s.lat)
		case s.at.After(writesFrom):
			for _, w := range writeTimes {
				if !s.at.Before(w) && s.at.Before(w.Add(after)) {
					during = append(during, s.lat)
					break
				}
			}
		}
	}
	b.ReportMetric(quantileMS(prop, 0.50), "prop-p50-ms")
	b.ReportMetric(quantileMS(prop, 0.99), "prop-p99-ms")
	b.ReportMetric(quantileMS(ack, 0.50), "ack-p50-ms")
	b.ReportMetric(quantileMS(ack, 0.99), "ack-p99-ms")
	b.ReportMetric(quantileMS(steady, 0.99), "steady-p99-ms")
	b.ReportMetric(quantileMS(during, 0.99), "write-p99-ms")
	b.ReportMetric(float64(failures), "failed-requests")
	b.Logf("routes=%d writes=%d steady samples=%d during-write samples=%d failed=%d",
		routes, writes, len(steady), len(during), failures)
}

func quantileMS(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return float64(d[min(len(d)-1, int(q*float64(len(d))))].Microseconds()) / 1000
}

// fetchTo saves the body of url to path, best effort (a profile for a
// person to read, not a result).
func fetchTo(path, url string) {
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if data, err := io.ReadAll(resp.Body); err == nil && resp.StatusCode == http.StatusOK {
		_ = os.WriteFile(path, data, 0o644)
	}
}
