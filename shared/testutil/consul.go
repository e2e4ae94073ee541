package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DefaultConsulVersion is the agent version scripts/ensure-consul.sh builds.
const DefaultConsulVersion = "v1.14.0"

// consulReadyTimeout bounds the wait for a leader and a working KV store.
const consulReadyTimeout = 30 * time.Second

// ConsulBinary returns the path of the Consul agent used by tests: $CONSUL_BIN
// if set, else the binary scripts/ensure-consul.sh caches in
// ${PORTICO_CACHE:-$HOME/.cache/portico}/consul-${CONSUL_VERSION:-v1.14.0}.
// The lookup mirrors the script so that both always agree.
func ConsulBinary() (string, error) {
	return cachedBinary("consul agent", "CONSUL_BIN", "CONSUL_VERSION", "consul", DefaultConsulVersion,
		"run scripts/ensure-consul.sh (or make test) to build it, or point CONSUL_BIN at a consul binary")
}

// cachedBinary finds a server binary the way the ensure-*.sh scripts cache
// it: $<binEnv> if set, else ${PORTICO_CACHE:-$HOME/.cache/portico}/
// <name>-${<versionEnv>:-def}. Mirroring the scripts keeps both in step.
func cachedBinary(what, binEnv, versionEnv, name, def, hint string) (string, error) {
	if p := os.Getenv(binEnv); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("%s: %s=%s is not an executable file; %s", what, binEnv, p, hint)
		}
		return p, nil
	}
	cache := os.Getenv("PORTICO_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%s: no %s and no home directory (%v); %s", what, binEnv, err, hint)
		}
		cache = filepath.Join(home, ".cache", "portico")
	}
	version := os.Getenv(versionEnv)
	if version == "" {
		version = def
	}
	p := filepath.Join(cache, name+"-"+version)
	if !isExecutable(p) {
		return "", fmt.Errorf("%s: %s not found and %s not set; %s", what, p, binEnv, hint)
	}
	return p, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Consul is a single-node Consul server on loopback ports, for tests.
//
// Unlike `consul agent -dev`, whose Raft store lives in memory, it keeps its
// data in a directory, so Restart brings back the same KV contents the way a
// real cluster does after an outage. ACLs are off.
type Consul struct {
	// Addr is the HTTP API address, "127.0.0.1:PORT"; Restart keeps it.
	Addr string
	// LogPath is the agent's output, appended to across restarts.
	LogPath string

	tb      testing.TB // nil when started by LaunchConsul
	bin     string
	dir     string
	ownDir  bool // dir is removed by Close
	dataDir string
	ports   consulPorts
	proc    process
	resets  int // RestartEmpty calls, naming fresh data directories
}

type consulPorts struct {
	http, server, serfLAN, serfWAN int
	dns                            int // 0: no DNS interface (see StartConsulWithDNS)
}

// StartConsul starts a fresh agent, waits until it has a leader and accepts
// KV writes, and stops it when the test ends. A missing binary fails the test:
// tests that need Consul must not pass silently without it.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	bin, err := ConsulBinary()
	if err != nil {
		t.Fatal(err)
	}
	c := &Consul{tb: t, bin: bin, dir: t.TempDir()}
	if err := c.startFresh(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.kill(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("tail of consul agent log %s:\n%s", c.LogPath, tail(c.LogPath, 40))
		}
	})
	return c
}

// LaunchConsul is StartConsul for code that has no testing.TB, such as a
// TestMain sharing one agent across a package: it returns errors instead of
// failing a test, and the caller must Close the agent.
func LaunchConsul() (*Consul, error) {
	bin, err := ConsulBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "portico-consul-")
	if err != nil {
		return nil, fmt.Errorf("consul agent: %w", err)
	}
	c := &Consul{bin: bin, dir: dir, ownDir: true}
	if err := c.startFresh(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// URL returns the base URL of the HTTP API, "http://127.0.0.1:PORT".
func (c *Consul) URL() string { return "http://" + c.Addr }

// Stop kills the agent, simulating an outage; Restart brings it back.
func (c *Consul) Stop() {
	if err := c.kill(); err != nil {
		c.fail(err)
	}
}

// Restart stops the agent if it runs and starts it again on the same ports
// and data, returning once it is ready.
func (c *Consul) Restart() {
	if err := c.kill(); err != nil {
		c.fail(err)
		return
	}
	if err := c.start(); err != nil {
		c.fail(err)
	}
}

// RestartEmpty stops the agent hard and starts it again on the same ports
// with a new, empty data directory: a dev-mode agent killed and started
// again, or a server that lost its disk. Everything registered with it and
// stored in its KV is gone, and it comes back with another node id.
func (c *Consul) RestartEmpty() {
	if err := c.kill(); err != nil {
		c.fail(err)
		return
	}
	c.resets++
	c.dataDir = filepath.Join(c.dir, "data-empty-"+strconv.Itoa(c.resets))
	if err := c.start(); err != nil {
		c.fail(err)
	}
}

// Close stops the agent and, for one started by LaunchConsul, removes its
// data and log.
func (c *Consul) Close() error {
	err := c.kill()
	if c.ownDir {
		err = errors.Join(err, os.RemoveAll(c.dir))
	}
	return err
}

func (c *Consul) fail(err error) {
	if c.tb == nil {
		// Only reachable through LaunchConsul's agent, whose users have no
		// test to fail; an outage helper that silently did nothing would be
		// worse than a crash.
		panic(err)
	}
	c.tb.Helper()
	c.tb.Fatal(err)
}

// startFresh picks ports and starts the first time. A port found free can be
// taken before the agent binds it, so a start that dies early is retried on
// new ports with a new data directory (Raft remembers its own address).
func (c *Consul) startFresh() error {
	c.LogPath = filepath.Join(c.dir, "consul.log")
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if c.ports, err = pickConsulPorts(); err != nil {
			return err
		}
		c.Addr = "127.0.0.1:" + strconv.Itoa(c.ports.http)
		c.dataDir = filepath.Join(c.dir, "data-"+strconv.Itoa(attempt))
		if err = c.start(); err == nil || !errors.Is(err, errExited) {
			return err // alive but not ready: new ports would not help
		}
	}
	return err
}

func (c *Consul) start() error {
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("consul agent: %w", err)
	}
	c.proc.name, c.proc.bin, c.proc.logPath = "consul agent on "+c.Addr, c.bin, c.LogPath
	client := &http.Client{Timeout: 2 * time.Second}
	// Ready means a leader and a KV write that goes through: a leader alone
	// does not mean the KV endpoint serves writes yet.
	return c.proc.start(c.args(), func(ctx context.Context) error { return c.probe(ctx, client) }, consulReadyTimeout)
}

// kill stops the agent hard: the point of Stop is an outage, and Raft's log
// is fsynced, so the data survives for Restart.
func (c *Consul) kill() error { return c.proc.kill() }

func pickConsulPorts() (consulPorts, error) {
	var ps [4]int
	for i := range ps {
		p, err := freePort()
		if err != nil {
			return consulPorts{}, fmt.Errorf("consul agent: %w", err)
		}
		ps[i] = p
	}
	return consulPorts{http: ps[0], server: ps[1], serfLAN: ps[2], serfWAN: ps[3]}, nil
}

func (c *Consul) args() []string {
	itoa := strconv.Itoa
	args := []string{
		"agent", "-server", "-bootstrap-expect", "1",
		"-node", "portico-test", "-data-dir", c.dataDir,
		"-bind", "127.0.0.1", "-advertise", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", itoa(c.ports.http),
		"-server-port", itoa(c.ports.server),
		"-serf-lan-port", itoa(c.ports.serfLAN),
		"-serf-wan-port", itoa(c.ports.serfWAN),
		"-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-log-level", "warn",
		// Dev-mode Raft timings: a single node elects itself in well under a
		// second instead of several.
		"-hcl", "performance { raft_multiplier = 1 }",
		"-hcl", "disable_update_check = true",
	}
	return append(args, c.dnsArgs()...)
}

func (c *Consul) probe(ctx context.Context, client *http.Client) error {
	leader, err := call(ctx, client, http.MethodGet, c.URL()+"/v1/status/leader", nil)
	if err != nil {
		return err
	}
	if strings.Trim(leader, "\" \n") == "" {
		return errors.New("no leader yet")
	}
	ok, err := call(ctx, client, http.MethodPut, c.URL()+"/v1/kv/portico-testutil/ready", []byte("1"))
	if err != nil {
		return err
	}
	if strings.TrimSpace(ok) != "true" {
		return fmt.Errorf("kv put returned %q", ok)
	}
	return nil
}

func call(ctx context.Context, client *http.Client, method, url string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// tail returns the last n lines of the file at path, for failure messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// MainWithConsul is a TestMain for packages whose tests share one agent: it
// launches the agent into *shared, runs the tests, stops the agent and
// exits. A missing binary fails the package, like StartConsul.
func MainWithConsul(m *testing.M, shared **Consul) {
	c, err := LaunchConsul()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*shared = c
	code := m.Run()
	if err := c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
