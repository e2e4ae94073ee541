package proxy

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

var update = flag.Bool("update", false, "rewrite golden files")

// describe renders a compiled table as data, so golden files show exactly
// what a configuration compiles to (defaults applied, pools resolved, every
// route's stages in order with what each compiled to).
func describe(t *Table) any {
	type route struct {
		Name         string      `json:"name"`
		Service      string      `json:"service"`
		Timeout      string      `json:"timeout"`
		MaxBodyBytes int64       `json:"max_body_bytes"`
		Stages       []stageDesc `json:"stages,omitempty"`
		Rejected     string      `json:"rejected,omitempty"`
		// Precedence, for routes with conditions or a priority.
		Precedence *config.Precedence `json:"precedence,omitempty"`
	}
	out := struct {
		Revision int64                      `json:"revision"`
		Rules    int                        `json:"rules"`
		Routes   []route                    `json:"routes"`
		Services map[string]upstream.Report `json:"services"`
		Rejected []config.Rejected          `json:"rejected,omitempty"`
	}{Revision: t.Revision, Rules: t.router.Len(), Services: map[string]upstream.Report{}, Rejected: t.Rejected()}
	for _, r := range t.routes {
		rt := route{Name: r.Name, Service: r.service(), Timeout: r.Timeout.String(),
			MaxBodyBytes: r.MaxBodyBytes, Stages: describeStages(r.Stages()), Rejected: r.rejected}
		if r.spec.Match != nil || r.spec.Priority != 0 {
			rt.Precedence = r.spec.ComputePrecedence()
		}
		out.Routes = append(out.Routes, rt)
	}
	for name, u := range t.upstreams {
		out.Services[name] = u.Report()
	}
	return out
}

// stageDesc is one compiled stage as data: its package-qualified type and
// what it describes itself as.
type stageDesc struct {
	Stage    string `json:"stage"`
	Compiled any    `json:"compiled"`
}

func describeStages(stages []stage.Stage) []stageDesc {
	var out []stageDesc
	for _, s := range stages {
		out = append(out, stageDesc{strings.TrimPrefix(fmt.Sprintf("%T", s), "*"), s.Describe()})
	}
	return out
}

// TestCompileGolden: testdata/compile/<case>.in.json (a configuration) →
// <case>.out.json (the compiled table, or the error). Run with -update to
// regenerate after an intended change.
func TestCompileGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/compile/*.in.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var cfg config.Config
			if err := config.Decode(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			s, _, err := snapshot.Encode(1, &cfg, time.Unix(0, 0))
			if err != nil {
				t.Fatal(err)
			}
			var got any
			if tab, err := Compile(s, nil, testDeps()); err != nil {
				got = map[string]any{"error": err.Error(), "fields": config.FieldErrors(err)}
			} else {
				got = describe(tab)
			}
			gotJSON, _ := json.MarshalIndent(got, "", "  ")
			gotJSON = append(gotJSON, '\n')
			outPath := strings.TrimSuffix(in, ".in.json") + ".out.json"
			if *update {
				if err := os.WriteFile(outPath, gotJSON, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), string(gotJSON)); diff != "" {
				t.Fatalf("%s (-want +got):\n%s", outPath, diff)
			}
		})
	}
}

// bigConfig builds n routes over 10 services: a mix of exact, param and
// prefix paths, some host-bound, some method-bound.
func bigConfig(n int) *config.Config {
	cfg := &config.Config{}
	for i := range 10 {
		cfg.Services = append(cfg.Services, config.Service{Name: fmt.Sprintf("svc%d", i),
			Targets: []config.Target{{URL: fmt.Sprintf("http://10.0.%d.1:8080", i)}, {URL: fmt.Sprintf("http://10.0.%d.2:8080", i), Weight: 3}}})
	}
	for i := range n {
		r := config.Route{Name: fmt.Sprintf("route-%05d", i), Service: fmt.Sprintf("svc%d", i%10)}
		switch i % 4 {
		case 0:
			r.Paths = []string{fmt.Sprintf("/api/v1/resource%d/{id}", i)}
			r.Methods = []string{"GET", "PUT"}
		case 1:
			r.Paths = []string{fmt.Sprintf("/api/v2/team%d/*", i)}
			r.StripPrefix = true
		case 2:
			r.Paths = []string{fmt.Sprintf("/static/%d/index.html", i)}
		case 3:
			r.Paths = []string{fmt.Sprintf("/t/{tenant}/items%d/{item}", i)}
			r.Hosts = []string{fmt.Sprintf("tenant%d.example.com", i%100)}
		}
		cfg.Routes = append(cfg.Routes, &r)
	}
	cfg.Sort()
	return cfg
}

func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			s, _, err := snapshot.Encode(1, bigConfig(n), time.Now())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Compile(s, nil, Deps{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeAndCompile is what a data plane pays per new revision:
// verify and decode the snapshot bytes, then compile.
func BenchmarkDecodeAndCompile(b *testing.B) {
	_, raw, err := snapshot.Encode(1, bigConfig(10000), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(raw))/(1<<20), "snapshot-MiB")
	b.ReportAllocs()
	for b.Loop() {
		s, err := snapshot.Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Compile(s, nil, Deps{}); err != nil {
			b.Fatal(err)
		}
	}
}
