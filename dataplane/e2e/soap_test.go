package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/soap/soaptest"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestSOAPTranslation: HTTP/JSON through the real binaries to a real SOAP
// service (spyne): the control plane process fetches the WSDL from the
// service when the service is written and refuses an unknown operation;
// the data plane process, which never fetches, translates from what the
// snapshot carries, and keeps doing so when it boots from its state dir
// with the control plane gone.
func TestSOAPTranslation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	base := soaptest.StartSpyne(t)
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlane(t, "dp", cp.url, filepath.Join(dir, "dp"))
	svc := config.Service{Name: "quotes", Protocol: config.ProtocolSOAP, Targets: []config.Target{{URL: base}},
		SOAP: &config.ServiceSOAP{WSDL: base + "/soap11?wsdl"}}
	if _, _, err := cp.admin.Services().Put(ctx, svc.Name, svc); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*config.Route{
		{Name: "quote", Paths: []string{"/quotes/{symbol}"}, Methods: []string{"GET"}, Service: "quotes", SOAP: &config.RouteSOAP{Operation: "GetQuote"}},
		{Name: "quotes", Paths: []string{"/quotes"}, Methods: []string{"POST"}, Service: "quotes", SOAP: &config.RouteSOAP{Operation: "GetQuotes"}},
	} {
		if _, _, err := cp.admin.Routes().Put(ctx, r.Name, *r); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "bad", config.Route{Paths: []string{"/bad"}, Service: "quotes",
		SOAP: &config.RouteSOAP{Operation: "GetQuot"}}); err == nil || !strings.Contains(err.Error(), "soap.operation") {
		t.Errorf("an unknown operation: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		d, err := cp.admin.Dataplanes(ctx)
		return err == nil && d.Converged && len(d.Nodes) == 1
	}, "the data plane at the latest revision")

	check := func(t *testing.T, url string) {
		t.Helper()
		for _, c := range []struct {
			method, path, body string
			status             int
			want               string
		}{
			{"GET", "/quotes/ACME?side=sell&day=2026-03-04", "", 200, `{"GetQuoteResult":{"symbol":"ACME","price":12.5,"volume":1000,"side":"sell","day":"2026-03-04"`},
			{"POST", "/quotes", `{"symbols":["A"]}`, 200, `{"GetQuotesResult":{"Quote":[{"symbol":"A","price":1.5,"volume":0`},
			{"GET", "/quotes/ACME?side=hold", "", 400, `"parameter":"query parameter \"side\""`},
			{"GET", "/quotes/NOPE", "", 422, `"faultcode":"Client.UnknownSymbol"`},
		} {
			req, _ := http.NewRequest(c.method, url+c.path, strings.NewReader(c.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var raw json.RawMessage
			err = json.NewDecoder(resp.Body).Decode(&raw)
			resp.Body.Close()
			if err != nil || resp.StatusCode != c.status || !strings.Contains(string(raw), c.want) {
				t.Errorf("%s %s: %d %s (%v), want %d and %s", c.method, c.path, resp.StatusCode, raw, err, c.status, c.want)
			}
		}
	}
	waitHTTP(t, dp.url+"/quotes/ACME", 200)
	check(t, dp.url)

	// The WSDL travels in the snapshot: with the control plane gone, a data
	// plane booting from its state dir serves the operations.
	cp.kill()
	dp.term(t)
	dp2 := startDataPlane(t, "dp2", cp.url, dp.stateDir)
	waitHTTP(t, dp2.url+"/quotes/ACME", 200)
	check(t, dp2.url)
}
