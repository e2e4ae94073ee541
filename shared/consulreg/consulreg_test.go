package consulreg

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-gw/portico/shared/testutil"
)

var shared *testutil.Consul

func TestMain(m *testing.M) { testutil.MainWithConsul(m, &shared) }

// checkTimeout allows for Consul staggering the first run of a check over
// one interval (1s, the agent's minimum) plus the catalog update.
const checkTimeout = 10 * time.Second

func testClient(t *testing.T) *api.Client {
	t.Helper()
	c, err := Client(shared.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// healthServer serves /readyz with 200 while healthy is set, else 503.
func healthServer(t *testing.T) (*httptest.Server, *atomic.Bool) {
	t.Helper()
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !healthy.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv, &healthy
}

// registrationFor registers the process behind srv under name.
func registrationFor(t *testing.T, srv *httptest.Server, name, id string) Registration {
	t.Helper()
	host, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return Registration{
		Name: name, ID: id, Address: host, Port: p,
		CheckURL: srv.URL + "/readyz",
		Interval: time.Second,
		Tags:     []string{"v1"},
		Meta:     map[string]string{"version": "test"},
	}
}

func resolveEquals(ctx context.Context, c *api.Client, service string, want ...string) func() bool {
	return func() bool {
		got, err := Resolve(ctx, c, service)
		if len(want) == 0 {
			return errors.Is(err, ErrNoInstances)
		}
		slices.Sort(got)
		return err == nil && slices.Equal(got, want)
	}
}

func TestRegisterResolveDeregister(t *testing.T) {
	ctx := t.Context()
	c := testClient(t)
	srv, _ := healthServer(t)
	reg := registrationFor(t, srv, "portico-controlplane", "portico-controlplane-a")

	deregister, err := Register(ctx, c, reg)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, checkTimeout, resolveEquals(ctx, c, reg.Name, srv.URL), "Resolve returns the registered process")

	svc, _, err := c.Agent().Service(reg.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(svc.Tags, reg.Tags) || svc.Meta["version"] != "test" {
		t.Errorf("registered service = %+v", svc)
	}
	checks, err := c.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	if chk := checks[reg.ID+":http"]; chk == nil || chk.Status != api.HealthPassing || chk.ServiceID != reg.ID {
		t.Errorf("check = %+v", chk)
	}

	// Registering again (a restart with the same ID) keeps one instance.
	if _, err := Register(ctx, c, reg); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve(ctx, c, reg.Name); err != nil || len(got) != 1 {
		t.Errorf("after re-registering: Resolve = %v, %v", got, err)
	}

	if err := deregister(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Second, resolveEquals(ctx, c, reg.Name), "Resolve finds nothing after deregister")
	if err := deregister(ctx); err != nil {
		t.Errorf("second deregister: %v", err)
	}
}

func TestFailingCheckExcluded(t *testing.T) {
	ctx := t.Context()
	c := testClient(t)
	good, _ := healthServer(t)
	bad, badHealthy := healthServer(t)
	const name = "portico-dataplane"
	for _, r := range []Registration{
		registrationFor(t, good, name, name+"-good"),
		registrationFor(t, bad, name, name+"-bad"),
	} {
		deregister, err := Register(ctx, c, r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := deregister(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	want := []string{good.URL, bad.URL}
	slices.Sort(want)
	testutil.Eventually(t, checkTimeout, resolveEquals(ctx, c, name, want...), "both instances passing")

	badHealthy.Store(false) // readyz now answers 503
	testutil.Eventually(t, checkTimeout, resolveEquals(ctx, c, name, good.URL), "the failing instance excluded")
}

func TestRegisterRejectsIncomplete(t *testing.T) {
	// Validation happens before any request: this client points nowhere.
	c, err := Client("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	ok := Registration{Name: "n", ID: "i", Address: "10.0.0.1", Port: 80, CheckURL: "http://10.0.0.1/readyz"}
	for name, mutate := range map[string]func(*Registration){
		"no name":      func(r *Registration) { r.Name = "" },
		"no id":        func(r *Registration) { r.ID = "" },
		"no address":   func(r *Registration) { r.Address = "" },
		"port 0":       func(r *Registration) { r.Port = 0 },
		"port too big": func(r *Registration) { r.Port = 70000 },
		"no check":     func(r *Registration) { r.CheckURL = "" },
		"negative":     func(r *Registration) { r.Interval = -time.Second },
	} {
		r := ok
		mutate(&r)
		if _, err := Register(t.Context(), c, r); err == nil {
			t.Errorf("%s: Register succeeded", name)
		}
	}
}

func TestResolveUnreachable(t *testing.T) {
	c, err := Client("127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Resolve(t.Context(), c, "portico-controlplane")
	if err == nil || errors.Is(err, ErrNoInstances) {
		t.Fatalf("Resolve with Consul down: %v, want a connection error", err)
	}
	t.Log(err)

	// The context bounds the call.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Resolve(ctx, testClient(t), "portico-controlplane"); !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve with a cancelled context: %v", err)
	}
}

func TestClient(t *testing.T) {
	// A fake agent that records the token and answers an empty service list.
	tokens := make(chan string, 10)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokens <- r.Header.Get("X-Consul-Token")
		if r.URL.Path != "/v1/health/service/x" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Consul-Index", "1")
		_, _ = w.Write([]byte("[]"))
	}))
	defer fake.Close()
	hostPort := fake.Listener.Addr().String()

	t.Setenv("CONSUL_HTTP_TOKEN", "secret-token")
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1") // overridden unless addr is ""

	for _, addr := range []string{hostPort, "http://" + hostPort, "http://" + hostPort + "/"} {
		c, err := Client(addr)
		if err != nil {
			t.Fatalf("Client(%q): %v", addr, err)
		}
		if _, err := Resolve(t.Context(), c, "x"); !errors.Is(err, ErrNoInstances) {
			t.Fatalf("Client(%q): Resolve: %v", addr, err)
		}
		if tok := <-tokens; tok != "secret-token" {
			t.Errorf("Client(%q): token %q sent, want CONSUL_HTTP_TOKEN's", addr, tok)
		}
	}

	t.Setenv("CONSUL_HTTP_ADDR", hostPort)
	c, err := Client("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(t.Context(), c, "x"); !errors.Is(err, ErrNoInstances) {
		t.Fatalf(`Client(""): Resolve: %v (CONSUL_HTTP_ADDR not used?)`, err)
	}
	<-tokens

	for _, bad := range []string{"ftp://" + hostPort, "http://", "unix:///tmp/consul.sock"} {
		if _, err := Client(bad); err == nil {
			t.Errorf("Client(%q) succeeded", bad)
		}
	}
}

func TestAdvertiseAddr(t *testing.T) {
	// The expected address of this machine, found independently.
	machine := "127.0.0.1"
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
find:
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
				machine = ipn.IP.String()
				break find
			}
		}
	}
	t.Logf("machine address: %s", machine)

	for _, tc := range []struct {
		listen string
		host   string
		port   int
	}{
		{":9000", machine, 9000},
		{"0.0.0.0:9000", machine, 9000},
		{"[::]:9000", machine, 9000},
		{"127.0.0.1:9000", "127.0.0.1", 9000},
		{"10.1.2.3:80", "10.1.2.3", 80},
		{"[::1]:8081", "::1", 8081},
		{"gw.example.com:443", "gw.example.com", 443},
		{"localhost:65535", "localhost", 65535},
	} {
		host, port, err := AdvertiseAddr(tc.listen)
		if err != nil || host != tc.host || port != tc.port {
			t.Errorf("AdvertiseAddr(%q) = %q, %d, %v; want %q, %d", tc.listen, host, port, err, tc.host, tc.port)
		}
	}
	for _, bad := range []string{"9000", ":0", ":http", ":65536", "", "host:-1"} {
		if host, port, err := AdvertiseAddr(bad); err == nil {
			t.Errorf("AdvertiseAddr(%q) = %q, %d; want an error", bad, host, port)
		}
	}
}

// lockedBuffer collects log output written from the keeper's goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) count(msg string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), "msg=\""+msg+"\"")
}

// TestRegisterForLifeReasserts: a registration made once at start used to be
// gone for good when the agent forgot it (restarted empty, or deregistered
// behind the process's back), and a process started before its agent was
// never registered at all. RegisterForLife must notice and register again
// within seconds, logging once per loss and once per recovery.
func TestRegisterForLifeReasserts(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before runs before RegisterForLife, lose after it is registered.
		before, lose func(t *testing.T, agent *testutil.Consul, c *api.Client, id string)
		wantLost     int
	}{
		{name: "agent restarted empty", wantLost: 1,
			lose: func(t *testing.T, agent *testutil.Consul, _ *api.Client, _ string) { agent.RestartEmpty() }},
		{name: "deregistered behind its back", wantLost: 1,
			lose: func(t *testing.T, _ *testutil.Consul, c *api.Client, id string) {
				if err := c.Agent().ServiceDeregister(id); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "agent down at start",
			before: func(t *testing.T, agent *testutil.Consul, _ *api.Client, _ string) { agent.Stop() },
			lose:   func(t *testing.T, agent *testutil.Consul, _ *api.Client, _ string) { agent.Restart() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := testutil.StartConsul(t)
			c, err := Client(agent.Addr)
			if err != nil {
				t.Fatal(err)
			}
			srv, _ := healthServer(t)
			reg := registrationFor(t, srv, "portico-dataplane", "portico-dataplane-keep")
			var logs lockedBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			if tc.before != nil {
				tc.before(t, agent, c, reg.ID)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			deregister := RegisterForLife(ctx, c, reg, log)
			registered := func() bool {
				_, _, err := c.Agent().Service(reg.ID, nil)
				return err == nil
			}
			if tc.before == nil && !registered() {
				t.Fatal("not registered when RegisterForLife returned")
			}
			tc.lose(t, agent, c, reg.ID)
			testutil.Eventually(t, 4*KeepInterval, registered, "registered again after the agent lost it")
			testutil.Eventually(t, checkTimeout, resolveEquals(ctx, c, reg.Name, srv.URL), "passing and resolvable again")
			registeredLogs := func() int { return logs.count("registered in Consul again") + logs.count("registered in Consul") }
			// The log line follows the agent's answer by a moment.
			testutil.Eventually(t, 2*time.Second, func() bool { return registeredLogs() >= 1+tc.wantLost }, "registration logged")
			if n := logs.count("the Consul agent no longer knows this registration (restarted without its data?); registering again"); n != tc.wantLost {
				t.Errorf("loss logged %d times, want %d:\n%s", n, tc.wantLost, logs.buf.String())
			}
			if n := registeredLogs(); n != 1+tc.wantLost {
				t.Errorf("registration logged %d times, want %d:\n%s", n, 1+tc.wantLost, logs.buf.String())
			}
			deregister()
			if registered() {
				t.Error("still registered after deregister")
			}
		})
	}
}
