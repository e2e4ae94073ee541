package catalog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/config"
)

// BenchmarkImport10k is a whole-config import of 10,000 routes into a
// catalog that already holds them with one field changed each time: merge
// looks up every object in the current configuration.
func BenchmarkImport10k(b *testing.B) {
	st, err := store.OpenBolt(filepath.Join(b.TempDir(), "cp.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	c, err := New(context.Background(), st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	cfg := &config.Config{Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://h:1"}}}}}
	for i := range 10000 {
		cfg.Routes = append(cfg.Routes, &config.Route{Name: fmt.Sprintf("r%05d", i), Paths: []string{fmt.Sprintf("/p%d", i)}, Service: "s"})
	}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		cfg.Routes[i%len(cfg.Routes)].StripPrefix = !cfg.Routes[i%len(cfg.Routes)].StripPrefix
		if _, err := c.Import(ctx, cfg, false, nil, Actor{Principal: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}
