package ctl

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portico-gw/portico/controlplane/internal/analytics"
	"github.com/portico-gw/portico/controlplane/internal/api"
	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/nodes"
	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/problem"
)

var update = flag.Bool("update", false, "rewrite golden files")

const adminToken = "ctl-admin-token"

// controlPlane is the control plane's real admin API (catalog, bbolt store,
// echo handlers) on a loopback listener.
type controlPlane struct {
	url   string
	admin *client.Client
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cat, err := catalog.New(context.Background(), st, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Options{Catalog: cat, Nodes: nodes.NewRegistry(time.Minute, time.Hour), Log: log,
		AdminToken: adminToken, DataplaneToken: "ctl-dp-token", MaxWait: time.Second,
		Analytics: analytics.NewAggregator(time.Hour, 10*time.Second, time.Now)}))
	t.Cleanup(srv.Close)
	admin, err := client.New(srv.URL, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	return &controlPlane{url: srv.URL, admin: admin}
}

// result is one porticoctl run.
type result struct {
	code        int
	out, errOut string
}

// run runs porticoctl with env (KEY=VALUE) as its whole environment.
func run(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, IO{In: strings.NewReader(stdin), Out: &out, Err: &errOut,
		Getenv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }})
	return result{code, out.String(), errOut.String()}
}

func (cp *controlPlane) env(extra ...string) []string {
	return append([]string{"PORTICO_URL=" + cp.url, "PORTICO_TOKEN=" + adminToken, "PORTICO_ACTOR=tester"}, extra...)
}

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, d)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func problemFields(err error) []config.FieldError {
	var p *problem.Problem
	if errors.As(err, &p) {
		return p.Errors
	}
	return config.FieldErrors(err)
}
