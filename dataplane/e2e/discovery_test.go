package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// instance is a demo-upstream process registered in Consul with a TTL
// check, so the test decides when it is healthy.
type instance struct {
	name, addr string
	proc       *proc
}

func startInstance(t *testing.T, name string) *instance {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	p := start(t, name, "demo-upstream", "--listen", addr, "--name", name)
	waitHTTP(t, "http://"+addr+"/", 200)
	return &instance{name: name, addr: addr, proc: p}
}

func register(t *testing.T, c *consulapi.Client, in *instance, tags ...string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(in.addr)
	p, _ := strconv.Atoi(port)
	err := c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{
		ID: in.name, Name: "users", Address: host, Port: p, Tags: tags,
		Check: &consulapi.AgentServiceCheck{CheckID: "check-" + in.name, TTL: "1h", Status: consulapi.HealthPassing},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// servedBy sends one request and returns which instance answered it.
func servedBy(url string) (string, int) {
	resp, err := httpc.Get(url)
	if err != nil {
		return "", 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("X-Served-By"), resp.StatusCode
}

// untilServed measures how long after now traffic reaches want.
func untilServed(t *testing.T, url, want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if by, _ := servedBy(url); by == want {
			return time.Since(start)
		}
	}
	t.Fatalf("%s received no traffic within %s", want, limit)
	return 0
}

// untilGone measures how long after now want stops receiving traffic:
// the time of its last hit, confirmed by 200 following requests without it.
func untilGone(t *testing.T, url, want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	last := time.Duration(0)
	clean := 0
	for clean < 200 {
		if time.Since(start) > limit {
			t.Fatalf("%s still received traffic %s later", want, limit)
		}
		if by, _ := servedBy(url); by == want {
			last, clean = time.Since(start), 0
		} else {
			clean++
		}
	}
	return last
}

// TestConsulDiscovery: data planes route to the passing instances of a
// Consul service and follow registrations, deregistrations and failing
// checks within a second; a killed instance costs no request; a Consul
// outage keeps the last known instances; the control plane and data plane
// register themselves and a data plane finds the control plane in Consul.
func TestConsulDiscovery(t *testing.T) {
	ctx := context.Background()
	consul := testutil.StartConsul(t)
	cc, err := consulapi.NewClient(&consulapi.Config{Address: consul.Addr})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	start(t, "cp", "controlplane", "--listen", cpAddr, "--store", "bolt:"+filepath.Join(dir, "cp.db"),
		"--admin-token", adminToken, "--dataplane-token", dpToken, "--consul", consul.Addr, "--log-level", "warn")
	waitHTTP(t, "http://"+cpAddr+"/readyz", 200)
	admin, err := client.New("http://"+cpAddr, adminToken)
	if err != nil {
		t.Fatal(err)
	}

	// This data plane finds the control plane through Consul.
	dpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	opsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	start(t, "dp", "dataplane", "--controlplane", "consul://portico-controlplane", "--consul", consul.Addr,
		"--token", dpToken, "--listen", dpAddr, "--ops-listen", opsAddr, "--state-dir", filepath.Join(dir, "dp"),
		"--node-id", "dp-consul", "--poll-wait", "10s", "--log-level", "warn")
	dpURL, opsURL := "http://"+dpAddr, "http://"+opsAddr
	waitHTTP(t, opsURL+"/healthz", 200)

	a, b, c := startInstance(t, "users-a"), startInstance(t, "users-b"), startInstance(t, "users-c")
	register(t, cc, a, "v1")
	register(t, cc, b, "v1")
	if _, _, err := admin.Services().Put(ctx, "users", config.Service{Consul: &config.ConsulSource{Service: "users", Tags: []string{"v1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.Routes().Put(ctx, "users", config.Route{Paths: []string{"/users/*"}, Service: "users"}); err != nil {
		t.Fatal(err)
	}
	url := dpURL + "/users/1"
	testutil.Eventually(t, 15*time.Second, func() bool { by, _ := servedBy(url); return by != "" }, "route served through Consul discovery")
	seen := map[string]int{}
	for range 100 {
		by, _ := servedBy(url)
		seen[by]++
	}
	if seen["users-a"] != 50 || seen["users-b"] != 50 {
		t.Fatalf("round robin over two instances: %v", seen)
	}

	// Registered → traffic within a second.
	register(t, cc, c, "v1")
	d := untilServed(t, url, "users-c", time.Second)
	t.Logf("registered instance received traffic after %s", d)

	// An instance without the tag is not used.
	untagged := startInstance(t, "users-untagged")
	register(t, cc, untagged)

	// Check critical → no traffic within a second.
	if err := cc.Agent().UpdateTTL("check-users-c", "failing", consulapi.HealthCritical); err != nil {
		t.Fatal(err)
	}
	d = untilGone(t, url, "users-c", time.Second)
	t.Logf("instance with a critical check stopped receiving traffic after %s", d)

	// Deregistered → no traffic within a second.
	if err := cc.Agent().ServiceDeregister("users-b"); err != nil {
		t.Fatal(err)
	}
	d = untilGone(t, url, "users-b", time.Second)
	t.Logf("deregistered instance stopped receiving traffic after %s", d)

	// Both Portico processes registered themselves, with passing checks.
	for _, name := range []string{"portico-controlplane", "portico-dataplane"} {
		testutil.Eventually(t, 15*time.Second, func() bool {
			entries, _, err := cc.Health().Service(name, "", true, nil)
			return err == nil && len(entries) == 1
		}, name+" registered and passing in Consul")
	}

	// A killed instance under steady load costs no client request.
	if err := cc.Agent().UpdateTTL("check-users-c", "ok", consulapi.HealthPassing); err != nil {
		t.Fatal(err)
	}
	untilServed(t, url, "users-c", 2*time.Second)
	stop, progress := testutil.Load(4, testutil.HTTPStatus(httpc, url, 200))
	testutil.Eventually(t, 5*time.Second, func() bool { return progress() > 200 }, "load flowing")
	c.proc.kill() // still registered and "passing" in Consul: the data plane must cope
	before := progress()
	testutil.Eventually(t, 10*time.Second, func() bool { return progress() > before+500 }, "load continuing")
	if res := stop(); res.Failed != 0 {
		t.Fatalf("%d of %d requests failed when an instance was killed; first: %v", res.Failed, res.Total, res.FirstError)
	}
	if err := cc.Agent().ServiceDeregister("users-c"); err != nil {
		t.Fatal(err)
	}

	// Consul goes away: the last known instances keep serving, and /status
	// says Consul is unreachable. First make sure the data plane has seen
	// the deregistration above, so "last known" means users-a alone.
	discoveryStatus := func() (reachable bool, instances int) {
		var st struct {
			Discovery []struct {
				Reachable bool `json:"consul_reachable"`
				Instances int  `json:"instances"`
			} `json:"discovery"`
		}
		_, body := get(opsURL + "/status")
		if json.Unmarshal([]byte(body), &st) != nil || len(st.Discovery) != 1 {
			return false, -1
		}
		return st.Discovery[0].Reachable, st.Discovery[0].Instances
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		ok, n := discoveryStatus()
		return ok && n == 1
	}, "the data plane seeing users-c deregistered")
	consul.Stop()
	for i := range 50 {
		if by, code := servedBy(url); code != 200 || by != "users-a" {
			t.Fatalf("request %d during the Consul outage: %d from %q", i, code, by)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		ok, n := discoveryStatus()
		return !ok && n == 1
	}, "/status shows Consul unreachable with the last known instance kept")

	// Consul returns: a new instance is picked up.
	consul.Restart()
	d2 := startInstance(t, "users-d")
	testutil.Eventually(t, 30*time.Second, func() bool {
		err := cc.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{
			ID: d2.name, Name: "users", Address: "127.0.0.1", Port: portOf(d2.addr), Tags: []string{"v1"},
			Check: &consulapi.AgentServiceCheck{CheckID: "check-" + d2.name, TTL: "1h", Status: consulapi.HealthPassing},
		})
		return err == nil
	}, "registering with Consul after its restart")
	untilServed(t, url, "users-d", 15*time.Second)
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
