package testutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// consulDNSReadyTimeout bounds the wait for the DNS interface after the
// HTTP API is ready; the agent opens both during the same start-up.
const consulDNSReadyTimeout = 15 * time.Second

// StartConsulWithDNS is StartConsul with Consul's DNS interface on a free
// loopback port (UDP and TCP), for tests whose clients find services the
// way most load balancers do: SRV records of <service>.service.consul,
// which list passing instances only. DNSAddr returns the address; Restart
// keeps it.
func StartConsulWithDNS(t testing.TB) *Consul {
	t.Helper()
	bin, err := ConsulBinary()
	if err != nil {
		t.Fatal(err)
	}
	c := &Consul{tb: t, bin: bin, dir: t.TempDir()}
	// Registered before starting, unlike in StartConsul, so that an agent
	// left running by a failed DNS wait below is killed too.
	t.Cleanup(func() {
		if err := c.kill(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("tail of consul agent log %s:\n%s", c.LogPath, tail(c.LogPath, 40))
		}
	})
	if err := c.startFreshDNS(); err != nil {
		t.Fatal(err)
	}
	var last error
	if !poll(consulDNSReadyTimeout, func() bool { last = c.dnsReady(); return last == nil }) {
		t.Fatalf("consul agent on %s: DNS interface %s not answering after %v: %v", c.Addr, c.DNSAddr(), consulDNSReadyTimeout, last)
	}
	return c
}

// DNSAddr returns the DNS interface's address, "127.0.0.1:PORT", or "" for
// an agent started without one.
func (c *Consul) DNSAddr() string {
	if c.ports.dns == 0 {
		return ""
	}
	return "127.0.0.1:" + strconv.Itoa(c.ports.dns)
}

// dnsArgs switches the DNS interface off unless a port was picked for it.
// only_passing leaves instances whose checks warn out of DNS answers too
// (by default only critical ones are left out), so that DNS and the health
// API's passing filter agree.
func (c *Consul) dnsArgs() []string {
	if c.ports.dns == 0 {
		return []string{"-dns-port", "-1"}
	}
	return []string{"-dns-port", strconv.Itoa(c.ports.dns), "-hcl", "dns_config { only_passing = true }"}
}

// startFreshDNS is startFresh with a DNS port picked as well: a start that
// dies early (a port taken in between) is retried on all new ports.
func (c *Consul) startFreshDNS() error {
	c.LogPath = filepath.Join(c.dir, "consul.log")
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if c.ports, err = pickConsulPorts(); err != nil {
			return err
		}
		if c.ports.dns, err = freeTCPUDPPort(); err != nil {
			return fmt.Errorf("consul agent: %w", err)
		}
		c.Addr = "127.0.0.1:" + strconv.Itoa(c.ports.http)
		c.dataDir = filepath.Join(c.dir, "data-"+strconv.Itoa(attempt))
		if err = c.start(); err == nil || !errors.Is(err, errExited) {
			return err
		}
	}
	return err
}

// freeTCPUDPPort returns a loopback port free for both protocols a moment
// ago: DNS servers listen on both, and freePort checks TCP only.
func freeTCPUDPPort() (int, error) {
	var last error
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("listen on 127.0.0.1:0: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err == nil {
			pc.Close()
			return port, nil
		}
		last = err
	}
	return 0, fmt.Errorf("no loopback port free for both TCP and UDP: %w", last)
}

// dnsReady asks the DNS interface for the SRV records of the agent's own
// "consul" service, which a server registers as soon as it leads.
func (c *Consul) dnsReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, srvs, err := c.resolver().LookupSRV(ctx, "", "", "consul.service.consul")
	if err != nil {
		return err
	}
	if len(srvs) == 0 {
		return errors.New("no SRV record for consul.service.consul yet")
	}
	return nil
}

// resolver sends every query to the agent's DNS interface, whatever
// /etc/resolv.conf says.
func (c *Consul) resolver() *net.Resolver {
	addr := c.DNSAddr()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}
