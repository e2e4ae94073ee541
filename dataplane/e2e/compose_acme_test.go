package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestComposeACME checks that the compose stack's ACME pieces fit together
// (docker-compose.yml as compose-go loads it with .env.example, the files
// it mounts): Pebble resolves names through pebble-dns, which answers the
// front load balancer's address; Pebble validates on the ports HAProxy
// binds for the gateway (so validation reaches whichever data plane HAProxy
// picks); its HTTPS certificate is one tls-init makes, from the CA the
// seeded certificate names in acme.ca; and the seeded directory is
// Pebble's listen address under its service name.
func TestComposeACME(t *testing.T) {
	root := deployRepoRoot(t)
	p := loadCompose(t, root)
	svc := func(name string) (s struct {
		cmd  []string
		ip   string
		bind func(string) (string, bool)
	}) {
		c, ok := p.Services[name]
		if !ok {
			t.Fatalf("no service %s", name)
		}
		s.cmd = c.Command
		for _, n := range c.Networks {
			if n != nil && n.Ipv4Address != "" {
				s.ip = n.Ipv4Address
			}
		}
		s.bind = func(target string) (string, bool) { return composeBindSource(c, target) }
		return s
	}
	flag := func(cmd []string, name string) string {
		for i := 0; i+1 < len(cmd); i++ {
			if cmd[i] == name {
				return cmd[i+1]
			}
		}
		t.Fatalf("%v: no %s", cmd, name)
		return ""
	}
	pebble, dns, lb := svc("pebble"), svc("pebble-dns"), svc("lb")

	// Names resolve to the load balancer.
	if lb.ip == "" || net.ParseIP(lb.ip) == nil {
		t.Fatalf("lb has no fixed address (%q): pebble-dns cannot answer it", lb.ip)
	}
	if got := flag(dns.cmd, "-defaultIPv4"); got != lb.ip {
		t.Errorf("pebble-dns answers %s, the load balancer is at %s", got, lb.ip)
	}
	_, subnet, err := net.ParseCIDR(p.Networks["default"].Ipam.Config[0].Subnet)
	if err != nil {
		t.Fatal(err)
	}
	for name, ip := range map[string]string{"lb": lb.ip, "pebble-dns": dns.ip} {
		if !subnet.Contains(net.ParseIP(ip)) {
			t.Errorf("%s's address %s is outside the compose subnet %s", name, ip, subnet)
		}
	}
	// Pebble asks pebble-dns.
	_, dnsPort, _ := net.SplitHostPort(flag(dns.cmd, "-dnsserver"))
	if got, want := flag(pebble.cmd, "-dnsserver"), net.JoinHostPort(dns.ip, dnsPort); got != want {
		t.Errorf("pebble resolves through %s, pebble-dns serves DNS at %s", got, want)
	}

	// Pebble's configuration: validation ports = the gateway's HAProxy
	// binds, certificate files = what tls-init makes.
	cfgPath, ok := pebble.bind(flag(pebble.cmd, "-config"))
	if !ok {
		t.Fatalf("pebble's -config %s is not a mounted file", flag(pebble.cmd, "-config"))
	}
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Pebble struct {
			ListenAddress           string
			HTTPPort, TLSPort       int
			Certificate, PrivateKey string
		}
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", cfgPath, err)
	}
	hap := haproxyConfig(t, filepath.Join(root, "deployments", "compose", "haproxy.cfg"))
	for section, port := range map[string]int{"frontend gateway": cfg.Pebble.HTTPPort, "frontend gateway_tls": cfg.Pebble.TLSPort} {
		if l, ok := haproxyLine(hap[section], "bind "); !ok || l != fmt.Sprintf("bind :%d", port) {
			t.Errorf("pebble validates on port %d, HAProxy's %s has %q", port, section, l)
		}
	}
	tlsInit, err := os.ReadFile(filepath.Join(root, "deployments", "compose", "tls-init.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{cfg.Pebble.Certificate, cfg.Pebble.PrivateKey} {
		if !strings.HasPrefix(f, "/tls/") || !strings.Contains(string(tlsInit), filepath.Base(f)) {
			t.Errorf("pebble's %s is not a file tls-init makes in the tls volume", f)
		}
	}
	if !strings.Contains(string(tlsInit), "subjectAltName=DNS:pebble") {
		t.Error("tls-init's certificate for Pebble does not name the service pebble")
	}

	// The seeded certificate: Pebble's directory under its service name,
	// the tls-init CA as acme.ca.
	seed, err := os.ReadFile(filepath.Join(root, "deployments", "compose", "seed.sh"))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(cfg.Pebble.ListenAddress)
	want := fmt.Sprintf(`"directory":"https://pebble:%s/dir"`, port)
	if !strings.Contains(string(seed), want) {
		t.Errorf("seed.sh does not order from %s", want)
	}
	if !regexp.MustCompile(`"ca":"%s"}}' "\$\(pem_json /tls/ca.pem\)"`).Match(seed) {
		t.Error("seed.sh's ACME certificate does not trust the tls-init CA (acme.ca)")
	}
}
