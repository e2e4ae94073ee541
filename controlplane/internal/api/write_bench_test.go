package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/analytics"
	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/nodes"
	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// BenchmarkWriteToDataPlanes is the control plane's share of a write's
// propagation, over HTTP, in one process: an admin PUT of one route into
// 5,000, on the bolt store, until three long-polling "data planes" (asking
// for deltas, as real ones do) have received the new revision. What the data
// planes do with it is not counted; make bench-scale measures the whole.
func BenchmarkWriteToDataPlanes(b *testing.B) {
	const routes, dataPlanes = 5000, 3
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.OpenBolt(filepath.Join(b.TempDir(), "cp.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	cat, err := catalog.New(context.Background(), st, log)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cat.Run(ctx)
	srv := httptest.NewServer(New(Options{Catalog: cat, Nodes: nodes.NewRegistry(time.Minute, time.Hour), Log: log,
		MaxWait: 5 * time.Second, AdminToken: adminToken, DataplaneToken: dpToken,
		Analytics: analytics.NewAggregator(time.Hour, 10*time.Second, time.Now)}))
	defer srv.Close()
	admin, err := client.New(srv.URL, adminToken, client.WithActor("bench"))
	if err != nil {
		b.Fatal(err)
	}
	cfg := &config.Config{Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://10.0.0.1:80"}}}}}
	for i := range routes {
		cfg.Routes = append(cfg.Routes, &config.Route{Name: fmt.Sprintf("r%06d", i), Paths: []string{fmt.Sprintf("/api/r%d/{id}", i)}, Service: "s"})
	}
	if _, err := admin.ImportConfig(ctx, cfg, false); err != nil {
		b.Fatal(err)
	}
	start := cat.Current().State

	// Each poller holds the revision it last received and reports it.
	var mu sync.Mutex
	got := make([]int64, dataPlanes)
	changed := make(chan struct{}, dataPlanes)
	var wg sync.WaitGroup
	for i := range dataPlanes {
		sync, err := client.New(srv.URL, dpToken)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rev := start.Revision
			for ctx.Err() == nil {
				p, err := sync.PollSnapshot(ctx, client.PollRequest{After: rev, Wait: 5 * time.Second, NodeID: fmt.Sprintf("dp-%d", i),
					AppliedRevision: rev, AppliedEpoch: start.Epoch.ID, Deltas: true})
				if err != nil {
					continue
				}
				switch {
				case p.Delta != nil:
					d, err := snapshot.DecodeDelta(p.Delta)
					if err != nil {
						b.Error(err)
						return
					}
					rev = d.Revision
				case p.Snapshot != nil:
					b.Error("a full snapshot where a delta was expected")
					return
				default:
					continue
				}
				mu.Lock()
				got[i] = rev
				mu.Unlock()
				changed <- struct{}{}
			}
		}()
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, resp, err := admin.Routes().Put(ctx, fmt.Sprintf("w%06d", i), config.Route{Paths: []string{fmt.Sprintf("/w%d", i)}, Service: "s"})
		if err != nil {
			b.Fatal(err)
		}
		for {
			mu.Lock()
			all := true
			for _, r := range got {
				all = all && r >= resp.Revision
			}
			mu.Unlock()
			if all {
				break
			}
			<-changed
		}
	}
	b.StopTimer()
	cancel()
	wg.Wait()
}
