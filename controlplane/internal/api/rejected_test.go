package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/controlplane/internal/nodes"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
)

// TestDataplaneReportsRejectedObjects: what a data plane says it could not
// apply, on its poll, is what GET /v1/dataplanes shows for that node; the
// next poll without a report clears it; a malformed report is a 400.
func TestDataplaneReportsRejectedObjects(t *testing.T) {
	s := newTestServer(t, false)
	ctx := context.Background()
	dp, err := client.New(s.URL, dpToken)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 1000)
	rejected := []config.Rejected{
		{Kind: config.KindIssuer, Name: "corp", Reason: "keys[0]: not a PEM public key, certificate or JWK"},
		{Kind: config.KindRoute, Name: "orders", Reason: long},
	}
	tests := []struct {
		name string
		sent []config.Rejected
		want []string // kind/name of each entry shown
	}{
		{"report", rejected, []string{"issuer/corp", "route/orders"}},
		{"cleared by a poll without one", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := dp.PollSnapshot(ctx, client.PollRequest{Wait: time.Millisecond, NodeID: "dp-1", Rejected: tt.sent}); err != nil {
				t.Fatal(err)
			}
			d, err := s.admin.Dataplanes(ctx)
			if err != nil || len(d.Nodes) != 1 {
				t.Fatalf("dataplanes = %+v, %v", d, err)
			}
			var got []string
			for _, r := range d.Nodes[0].Rejected {
				got = append(got, string(r.Kind)+"/"+r.Name)
				if len(r.Reason) > config.MaxRejectedReason+len("…") {
					t.Errorf("reason of %d bytes shown; want at most %d", len(r.Reason), config.MaxRejectedReason)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("node shows rejected %v, want %v", got, tt.want)
			}
			if len(tt.want) > 0 && d.Nodes[0].Rejected[0].Reason != rejected[0].Reason {
				t.Errorf("reason = %q", d.Nodes[0].Rejected[0].Reason)
			}
		})
	}
	if code, _, _ := s.call(t, "GET", "/v1/snapshot?after=0&wait=0s", dpToken, "", apiv1.HeaderNodeID, "n", apiv1.HeaderRejected, "%%%"); code != 400 {
		t.Errorf("malformed %s: %d, want 400", apiv1.HeaderRejected, code)
	}
}

// TestRejectedObjectsMetric: the control plane counts, per connected node,
// the objects it reported it could not apply.
func TestRejectedObjectsMetric(t *testing.T) {
	s := newTestServer(t, false)
	reg := nodes.NewRegistry(time.Minute, time.Hour)
	done := reg.PollStarted(nodes.Report{ID: "dp-1", Rejected: []config.Rejected{{Kind: config.KindIssuer, Name: "corp", Reason: "x"}}})
	defer done()
	defer reg.PollStarted(nodes.Report{ID: "dp-2"})()
	pr := prometheus.NewRegistry()
	pr.MustRegister(&lagCollector{cat: s.cat, nodes: reg})
	got := map[string]float64{}
	mfs, err := pr.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "portico_cp_dataplane_rejected_objects" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	if got["dp-1"] != 1 || got["dp-2"] != 0 || len(got) != 2 {
		t.Fatalf("portico_cp_dataplane_rejected_objects = %v, want dp-1 1 and dp-2 0", got)
	}
}
