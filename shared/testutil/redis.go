package testutil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// redisReadyTimeout bounds the wait for a started server to answer PING.
const redisReadyTimeout = 10 * time.Second

// Redis is a throwaway redis-server on a loopback port, for tests. It keeps
// nothing on disk (no RDB snapshots, no AOF), so a server brought back by
// Start after Stop is empty, like a cache node that crashed.
type Redis struct {
	// Addr is "127.0.0.1:PORT"; Start after Stop keeps it.
	Addr string
	// LogPath is the server's output, appended to across restarts.
	LogPath string

	tb   testing.TB
	bin  string
	dir  string
	port int
	proc process
}

// StartRedis starts a fresh redis-server, waits until it answers PING, and
// kills it when the test ends. A missing binary fails the test: tests that
// need Redis must not pass silently without it.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found on PATH (%v): run `make test`, which installs it", err)
	}
	r := &Redis{tb: t, bin: bin, dir: t.TempDir()}
	r.LogPath = filepath.Join(r.dir, "redis.log")
	if err := r.startFresh(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.kill(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("tail of redis-server log %s:\n%s", r.LogPath, tail(r.LogPath, 40))
		}
	})
	return r
}

// URL returns the server's address as a Redis URL for database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Stop kills the server with SIGKILL and waits for it to exit, simulating a
// crash: clients see their connections reset and new ones refused.
func (r *Redis) Stop() {
	r.tb.Helper()
	if err := r.kill(); err != nil {
		r.tb.Fatal(err)
	}
}

// Start brings the server back on the same port after Stop, empty, and
// returns once it answers PING. A running server is restarted.
func (r *Redis) Start() {
	r.tb.Helper()
	if err := r.kill(); err != nil {
		r.tb.Fatal(err)
	}
	if err := r.start(); err != nil {
		r.tb.Fatal(err)
	}
}

// Freeze stops the server with SIGSTOP until Thaw: a process that hangs
// (stalled on I/O, descheduled) with its connections open, where nothing
// answers and nothing is refused. Unlike Pause, the server cannot even
// accept or reply. It returns at once.
func (r *Redis) Freeze() {
	r.tb.Helper()
	if err := r.proc.signal(syscall.SIGSTOP); err != nil {
		r.tb.Fatal(err)
	}
}

// Thaw resumes a server stopped by Freeze with SIGCONT.
func (r *Redis) Thaw() {
	r.tb.Helper()
	if err := r.proc.signal(syscall.SIGCONT); err != nil {
		r.tb.Fatal(err)
	}
}

// Prefer raises the server's scheduling priority above the test's, as if
// Redis had a machine of its own: a test about this process being busy must
// not also starve Redis of CPU (on a 2-core machine running other test
// packages beside it, a starved redis-server is a slow Redis, which is a
// different test). Without the privilege to raise it, the test goes on and
// says so.
func (r *Redis) Prefer() {
	r.tb.Helper()
	if err := r.proc.renice(-10); err != nil {
		r.tb.Logf("redis-server keeps normal priority: %v", err)
	}
}

// Pause makes the server hold every client's commands for d while staying
// up and accepting connections (CLIENT PAUSE ... ALL): a slow Redis rather
// than a dead one, for latency-fault tests. It returns at once.
func (r *Redis) Pause(d time.Duration) {
	r.tb.Helper()
	ms := max(d.Milliseconds(), 1)
	reply, err := redisCommand(r.Addr, 2*time.Second, "CLIENT", "PAUSE", strconv.FormatInt(ms, 10), "ALL")
	if err != nil {
		r.tb.Fatalf("redis-server %s: CLIENT PAUSE: %v", r.Addr, err)
	}
	if reply != "+OK" {
		r.tb.Fatalf("redis-server %s: CLIENT PAUSE answered %q", r.Addr, reply)
	}
}

// startFresh picks a port and starts the first time. A port found free can
// be taken before the server binds it, so a server that dies at once is
// tried again on another port.
func (r *Redis) startFresh() error {
	var err error
	for range 3 {
		if r.port, err = freePort(); err != nil {
			return fmt.Errorf("redis-server: %w", err)
		}
		r.Addr = "127.0.0.1:" + strconv.Itoa(r.port)
		if err = r.start(); err == nil || !errors.Is(err, errExited) {
			return err
		}
	}
	return err
}

func (r *Redis) start() error {
	r.proc.name, r.proc.bin, r.proc.logPath = "redis-server on "+r.Addr, r.bin, r.LogPath
	return r.proc.start(r.args(), r.ready, redisReadyTimeout)
}

func (r *Redis) kill() error { return r.proc.kill() }

// ready is PONG to a PING; a server still loading its dataset answers
// -LOADING and is not ready yet.
func (r *Redis) ready(context.Context) error {
	reply, err := redisCommand(r.Addr, time.Second, "PING")
	if err == nil && reply != "+PONG" {
		err = fmt.Errorf("PING answered %q", reply)
	}
	return err
}

func (r *Redis) args() []string {
	return []string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", r.dir,
		"--daemonize", "no",
		"--logfile", "", // stdout, which goes to LogPath
	}
}

// redisCommand sends one command over a fresh connection in RESP and returns
// the first line of the reply without its CRLF ("+PONG", "-ERR ...", ":1").
// Speaking RESP directly keeps this package free of a Redis client.
func redisCommand(addr string, timeout time.Duration, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", fmt.Errorf("write %s: %w", args[0], err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read reply to %s: %w", args[0], err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
