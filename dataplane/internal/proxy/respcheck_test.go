package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestResponseValidationReportsOnly: answers are checked against the
// operation's response schemas (report_responses) or a route's own
// (validate.response) after they were sent: every answer reaches the
// client exactly as the service sent it, and each check is counted in
// portico_response_validation_total (ok, invalid, not_json, too_large),
// an invalid answer logged with its pointers.
func TestResponseValidationReportsOnly(t *testing.T) {
	doc, err := os.ReadFile("../../../shared/config/testdata/openapi/petstore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]struct{ ct, body string }{
		"1":   {"application/json", `{"name":"rex"}`},
		"2":   {"application/json", `{"name":"","colour":"red"}`},
		"3":   {"application/json; charset=utf-8", `{"name":`},
		"4":   {"text/plain", `not checked`},
		"5":   {"application/json", `{"name":"` + strings.Repeat("x", 1<<20) + `"}`},
		"own": {"application/json", `{"ok":"yes"}`},
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answers[r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]]
		w.Header().Set("Content-Type", a.ct)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Services: []config.Service{{Name: "pets", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{
			{Name: "show", Paths: []string{"/v1/pets/{id}"}, Methods: []string{"GET"}, Service: "pets",
				Schemas: &config.RouteValidate{OpenAPI: string(doc), Operation: "showPetById", ReportResponses: true}},
			{Name: "own", Paths: []string{"/own/{x}"}, Service: "pets",
				Schemas: &config.RouteValidate{Response: []byte(`{"type":"object","properties":{"ok":{"type":"boolean"}}}`)}},
		},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logs := &lockedBuffer{}
	h := NewHandler(Options{Log: slog.New(slog.NewTextHandler(logs, nil)), Metrics: NewMetrics(reg)})
	applyCfg(t, h, 1, cfg)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	for _, id := range []string{"1", "2", "3", "4", "5"} {
		code, hdr, body := do(t, "GET", srv.URL+"/v1/pets/"+id, nil)
		if code != 200 || body != answers[id].body || hdr.Get("Content-Type") != answers[id].ct {
			t.Fatalf("pet %s: %d %q, want the service's answer unchanged", id, code, body[:min(len(body), 80)])
		}
	}
	if code, _, body := do(t, "GET", srv.URL+"/own/own", nil); code != 200 || body != answers["own"].body {
		t.Fatalf("own: %d %s", code, body)
	}
	// A request the route refuses itself is not a service answer: not checked.
	if code, _, _ := do(t, "GET", srv.URL+"/v1/pets/0", nil); code != 400 {
		t.Fatalf("petId 0: %d", code)
	}
	count := func(route, outcome string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var n float64
		for _, mf := range mfs {
			if mf.GetName() != "portico_response_validation_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				got := map[string]string{}
				for _, l := range m.GetLabel() {
					got[l.GetName()] = l.GetValue()
				}
				if got["route"] == route && got["outcome"] == outcome {
					n += m.GetCounter().GetValue()
				}
			}
		}
		return n
	}
	want := map[[2]string]float64{{"show", "ok"}: 1, {"show", "invalid"}: 1, {"show", "not_json"}: 1, {"show", "too_large"}: 1, {"own", "invalid"}: 1}
	testutil.Eventually(t, 5*time.Second, func() bool {
		for k, n := range want {
			if count(k[0], k[1]) != n {
				return false
			}
		}
		return true
	}, "response checks counted")
	if n := count("show", "dropped"); n != 0 {
		t.Fatalf("dropped %v", n)
	}
	log := logs.String()
	for _, s := range []string{`route=show`, `/name`, `colour`, `outcome=not_json`, `route=own`, `/ok`} {
		if !strings.Contains(log, s) {
			t.Fatalf("log lacks %s:\n%s", s, log)
		}
	}
}
