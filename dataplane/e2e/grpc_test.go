package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestGRPCTranslation: HTTP/JSON through a data plane process to a real gRPC
// server process (demo-grpc, reflection on), and to one without reflection
// configured with its descriptor set; gRPC statuses come back as HTTP
// statuses with problem details.
func TestGRPCTranslation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	start(t, "demo-grpc", "demo-grpc", "--listen", grpcAddr)
	plainAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	start(t, "demo-grpc-noreflect", "demo-grpc", "--listen", plainAddr, "--reflection=false")
	setFile := filepath.Join(dir, "shop.pb")
	writer := start(t, "descriptor-writer", "demo-grpc", "--write-descriptor-set", setFile)
	select {
	case <-writer.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("demo-grpc --write-descriptor-set did not finish")
	}
	for _, addr := range []string{grpcAddr, plainAddr} {
		testutil.Eventually(t, 10*time.Second, func() bool {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
			}
			return err == nil
		}, "demo-grpc on "+addr)
	}
	set, err := os.ReadFile(setFile)
	if err != nil {
		t.Fatal(err)
	}

	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlane(t, "dp", cp.url, filepath.Join(dir, "dp"))
	services := []config.Service{
		{Name: "shop", Protocol: config.ProtocolGRPC, Targets: []config.Target{{URL: "http://" + grpcAddr}}},
		{Name: "shop-static", Protocol: config.ProtocolGRPC, Targets: []config.Target{{URL: "http://" + plainAddr}},
			GRPC: &config.ServiceGRPC{DescriptorSet: set}},
		{Name: "shop-down", Protocol: config.ProtocolGRPC, Targets: []config.Target{{URL: "http://" + testutil.RefusedAddr(t)}}},
	}
	for _, s := range services {
		if _, _, err := cp.admin.Services().Put(ctx, s.Name, s); err != nil {
			t.Fatal(err)
		}
	}
	routes := []*config.Route{
		{Name: "get-order", Paths: []string{"/v1/orders/{id}"}, Methods: []string{"GET"}, Service: "shop",
			GRPC: &config.RouteGRPC{Method: "shop.v1.Orders/GetOrder"}},
		{Name: "create-order", Paths: []string{"/v1/orders"}, Methods: []string{"POST"}, Service: "shop",
			GRPC: &config.RouteGRPC{Method: "shop.v1.Orders/CreateOrder"}},
		{Name: "get-order-static", Paths: []string{"/static/orders/{id}"}, Service: "shop-static",
			GRPC: &config.RouteGRPC{Method: "shop.v1.Orders/GetOrder"}},
		{Name: "get-order-down", Paths: []string{"/down/orders/{id}"}, Service: "shop-down",
			GRPC: &config.RouteGRPC{Method: "shop.v1.Orders/GetOrder"}},
	}
	for _, r := range routes {
		if _, _, err := cp.admin.Routes().Put(ctx, r.Name, *r); err != nil {
			t.Fatal(err)
		}
	}
	// A route naming a method the descriptor set lacks is refused at write time.
	if _, _, err := cp.admin.Routes().Put(ctx, "bad", config.Route{Paths: []string{"/bad"}, Service: "shop-static",
		GRPC: &config.RouteGRPC{Method: "shop.v1.Orders/Refund"}}); err == nil || !strings.Contains(err.Error(), "grpc.method") {
		t.Errorf("a method missing from the descriptor set: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		d, err := cp.admin.Dataplanes(ctx)
		return err == nil && d.Converged && len(d.Nodes) == 1
	}, "the data plane at the latest revision")
	waitHTTP(t, dp.url+"/v1/orders/1", 200)

	tests := []struct {
		name, method, path, body string
		status                   int
		want                     []string
	}{
		{"success with path and query", "GET", "/v1/orders/42?version=3&fields=a&fields=b", "", 200,
			[]string{`"id":"42"`, `"status":"v3,a,b"`, `"totalCents":"1234"`}},
		{"body", "POST", "/v1/orders", `{"id":"9","items":[{"sku":"x","quantity":2}]}`, 200,
			[]string{`"id":"9"`, `"status":"created"`, `"sku":"x"`}},
		{"not found", "GET", "/v1/orders/missing", "", 404, []string{`"grpc_code":"NOT_FOUND"`, "order missing not found"}},
		{"invalid argument with details", "GET", "/v1/orders/bad", "", 400,
			[]string{`"grpc_code":"INVALID_ARGUMENT"`, `"field":"id"`, "must not be bad"}},
		{"bad query value: refused at the gateway", "GET", "/v1/orders/1?version=three", "", 400, []string{"version"}},
		{"unknown body field", "POST", "/v1/orders", `{"nope":1}`, 400, []string{"nope"}},
		{"descriptor set, no reflection", "GET", "/static/orders/7?version=2", "", 200, []string{`"id":"7"`, `"status":"v2"`}},
		{"unreachable backend", "GET", "/down/orders/1", "", 503, []string{"upstream-unavailable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, dp.url+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var raw json.RawMessage
			if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
				t.Fatalf("status %d, body not JSON: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, raw)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(raw), w) {
					t.Errorf("body %s lacks %s", raw, w)
				}
			}
			ct := resp.Header.Get("Content-Type")
			if (tt.status == 200) != (ct == "application/json") {
				t.Errorf("Content-Type %q for status %d", ct, tt.status)
			}
		})
	}
}
