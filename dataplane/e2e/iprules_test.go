package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/testutil"
)

// getFrom sends a GET as if from client, through this process as the
// proxy in front (X-Forwarded-For), and returns the status and the
// problem's type when there is one.
func getFrom(t *testing.T, url, client string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if client != "" {
		req.Header.Set("X-Forwarded-For", client)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct {
		Type string `json:"type"`
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		_ = json.NewDecoder(resp.Body).Decode(&p)
	}
	return resp.StatusCode, p.Type
}

// TestIPRules: route and global IP rules through the real binaries, on the
// client address as --trusted-proxies resolves it. A data plane behind a
// trusted proxy (here: loopback) checks the address the proxy names; one
// without --trusted-proxies ignores X-Forwarded-For and checks the peer.
// A bad entry is refused with its path and changes nothing.
func TestIPRules(t *testing.T) {
	up := startUpstream(t, "ip-svc")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	behind := startDataPlane(t, "dp-behind-lb", cp.url, filepath.Join(dir, "dp-1"), "--trusted-proxies", "127.0.0.1/32")
	direct := startDataPlane(t, "dp-direct", cp.url, filepath.Join(dir, "dp-2"))

	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v1/services/s", `{"targets":[{"url":"` + up + `"}]}`},
		{"PUT", "/v1/routes/office", `{"paths":["/office"],"service":"s","ip":{"allow":["10.0.0.0/8","2001:db8::/32"],"deny":["10.9.0.0/16"]}}`},
		{"PUT", "/v1/routes/open", `{"paths":["/open"],"service":"s"}`},
	} {
		if code, raw := adminCall(t, c.method, cp.url+c.path, c.body); code != 200 && code != 201 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, code, raw)
		}
	}
	waitHTTP(t, behind.url+"/open", 200)
	waitHTTP(t, direct.url+"/open", 200)

	const forbidden = "ip-forbidden"
	check := func(t *testing.T, dp *dataPlane, path, client string, want int) {
		t.Helper()
		code, typ := getFrom(t, dp.url+path, client)
		if code != want || (want == 403) != strings.HasSuffix(typ, forbidden) {
			t.Fatalf("%s %s from %q: %d %q, want %d", dp.id, path, client, code, typ, want)
		}
	}
	t.Run("route rules", func(t *testing.T) {
		check(t, behind, "/office", "10.1.2.3", 200)
		check(t, behind, "/office", "2001:db8::7", 200)
		check(t, behind, "/office", "10.9.1.1", 403)           // deny wins over allow
		check(t, behind, "/office", "192.0.2.1", 403)          // not in the allow list
		check(t, behind, "/office", "", 403)                   // the proxy itself (127.0.0.1)
		check(t, behind, "/open", "192.0.2.1", 200)            // no rules on this route
		check(t, direct, "/office", "10.1.2.3", 403)           // an untrusted peer cannot claim an address
		check(t, behind, "/office", "10.1.2.3, 10.9.1.1", 403) // the nearest hop the trusted proxy saw
	})

	t.Run("global rules first", func(t *testing.T) {
		if code, raw := adminCall(t, "PUT", cp.url+"/v1/global", `{"ip":{"deny":["10.1.0.0/16","192.0.2.0/24"]}}`); code != 200 {
			t.Fatalf("PUT /v1/global: %d %s", code, raw)
		}
		testutil.Eventually(t, 10*time.Second, func() bool {
			code, _ := getFrom(t, behind.url+"/open", "192.0.2.1")
			return code == 403
		}, "the global deny list on the data plane")
		check(t, behind, "/open", "198.51.100.1", 200)
		check(t, behind, "/office", "10.1.2.3", 403) // a route's allow cannot let in what the global rules refuse
		check(t, behind, "/office", "10.2.0.1", 200)
		check(t, direct, "/open", "192.0.2.1", 200) // X-Forwarded-For ignored: the peer is loopback
	})

	t.Run("bad entry refused, nothing applied", func(t *testing.T) {
		code, raw := adminCall(t, "PUT", cp.url+"/v1/routes/office", `{"paths":["/office"],"service":"s","ip":{"allow":["10.0.0.0/8","10.0.0.0/33"]}}`)
		if code != 422 || !strings.Contains(string(raw), "ip.allow[1]") {
			t.Fatalf("bad CIDR: %d %s", code, raw)
		}
		code, raw = adminCall(t, "PUT", cp.url+"/v1/global", `{"ip":{"deny":["not-an-address"]}}`)
		if code != 422 || !strings.Contains(string(raw), "global.ip.deny[0]") {
			t.Fatalf("bad global entry: %d %s", code, raw)
		}
		// The rules in force are the last accepted ones.
		check(t, behind, "/office", "10.2.0.1", 200)
		check(t, behind, "/open", "192.0.2.1", 403)
	})

	// Every refusal above counted once, under the rules that refused it
	// (the wait for the global list ended at its first 403).
	for _, c := range []struct {
		dp           *dataPlane
		route, scope string
		want         float64
	}{
		{behind, "office", "route", 4},
		{behind, "office", "global", 1},
		{behind, "open", "global", 2},
		{behind, "open", "route", 0},
		{direct, "office", "route", 1},
		{direct, "open", "global", 0},
	} {
		m, err := scrapeMetrics(c.dp.ops + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if got := metricSum(m["portico_ip_refusals_total"], map[string]string{"route": c.route, "scope": c.scope}); got != c.want {
			t.Errorf("%s: portico_ip_refusals_total{route=%q,scope=%q} = %v, want %v", c.dp.id, c.route, c.scope, got, c.want)
		}
	}
}
