package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestRejectedObjectLoudly: a data plane whose configuration holds an object
// it cannot compile (here written to its state dir as another control-plane
// version could have sent it: an RS256 issuer whose key is not a key)
// serves everything else, answers 503 config-rejected on the route that
// needs the object, and says so: /metrics, /status and one ERROR log line.
// Default flags; the control plane is unreachable, so the state dir is all
// it has.
func TestRejectedObjectLoudly(t *testing.T) {
	up := startUpstream(t, "rej-svc")
	stateDir := filepath.Join(t.TempDir(), "dp")
	cfg := &config.Config{
		Services: []config.Service{svc(up)},
		Issuers:  []config.Issuer{{Name: "broken", Issuer: "https://broken.example", Algorithms: []string{"RS256"}, Keys: []string{"not a key"}}},
		Routes: []*config.Route{
			{Name: "open", Paths: []string{"/open"}, Service: "s"},
			{Name: "secure", Paths: []string{"/secure"}, Service: "s", Auth: &config.RouteAuth{JWT: true, Issuers: []string{"broken"}}},
		},
	}
	cfg.Services[0].Name = "s"
	cfg.Sort()
	_, raw, err := snapshot.Encode(5, cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "snapshot.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	dp := startDataPlane(t, "dp-rej", "http://"+testutil.RefusedAddr(t), stateDir)

	testutil.Eventually(t, 10*time.Second, func() bool { return serves(dp.url+"/open", "rej-svc") }, "the rest of the configuration serving")
	if code, body := get(dp.url + "/secure"); code != 503 || !strings.Contains(body, "config-rejected") || strings.Contains(body, "not a key") {
		t.Fatalf("/secure = %d %s; want 503 config-rejected without the reason", code, body)
	}
	if _, metrics := get(dp.ops + "/metrics"); !strings.Contains(metrics, "\nportico_config_objects_rejected 2\n") {
		t.Errorf("/metrics lacks portico_config_objects_rejected 2:\n%s", grepLines(metrics, "portico_config"))
	}
	st := dp.status(t)
	if objs, _ := st["rejected_objects"].([]any); len(objs) != 2 {
		t.Errorf("/status rejected_objects = %v, want the issuer and the route", st["rejected_objects"])
	}
	logs, _ := os.ReadFile(dp.proc.log)
	if n := strings.Count(string(logs), "configuration object rejected"); n != 2 {
		t.Errorf("%d log lines about rejected objects, want 2 (issuer, route):\n%s", n, logs)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
