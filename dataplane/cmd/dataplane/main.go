// Command dataplane runs a Portico data plane: it serves client traffic
// according to the configuration it long-polls from the control plane, and
// keeps serving its last configuration when the control plane is away.
//
// Its life, in the order run takes it: read the flags; assemble the traffic
// handler (newDataplane: limiter, cache, access log, analytics) and the
// syncer that feeds it snapshots through proxy.Applier; boot from the
// snapshot saved in the state dir; serve until SIGTERM, then drain.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/quic-go/quic-go/http3"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/portico-gw/portico/dataplane/internal/acmechallenge"
	"github.com/portico-gw/portico/dataplane/internal/analytics"
	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/dataplane/internal/cache"
	"github.com/portico-gw/portico/dataplane/internal/clientip"
	"github.com/portico-gw/portico/dataplane/internal/discovery"
	"github.com/portico-gw/portico/dataplane/internal/extauthz"
	// Its init turns on WebSocket over HTTP/2 (RFC 8441) before net/http
	// reads GODEBUG; GODEBUG=http2xconnect=0 keeps it off.
	"github.com/portico-gw/portico/dataplane/internal/extconnect"
	"github.com/portico-gw/portico/dataplane/internal/grpcjson"
	"github.com/portico-gw/portico/dataplane/internal/ops"
	"github.com/portico-gw/portico/dataplane/internal/proxy"
	"github.com/portico-gw/portico/dataplane/internal/ratelimit"
	"github.com/portico-gw/portico/dataplane/internal/redisconn"
	"github.com/portico-gw/portico/dataplane/internal/syncer"
	"github.com/portico-gw/portico/dataplane/internal/tlsedge"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/cli"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/consulreg"
	"github.com/portico-gw/portico/shared/envflag"
	"github.com/portico-gw/portico/shared/secretfile"
	"github.com/portico-gw/portico/shared/snapshot"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { cli.Main("dataplane", run) }

func run(args []string) error {
	f, err := parseFlags(args)
	if err != nil {
		return err
	}
	if *f.showVersion {
		fmt.Println(version)
		return nil
	}
	log, err := cli.NewLogger(*f.logLevel)
	if err != nil {
		return err
	}
	debug.SetGCPercent(int(*f.gcPercent))
	setMemoryLimit(log, "/sys/fs/cgroup")
	if *f.nodeID == "" {
		*f.nodeID = defaultNodeID()
	}
	log = log.With("node_id", *f.nodeID)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	flushTraces, err := cli.Tracing(ctx, "portico-dataplane", version)
	if err != nil {
		return err
	}
	defer flushTraces()
	dp, err := newDataplane(f, log)
	if err != nil {
		return err
	}
	defer dp.close()
	dp.boot()
	return dp.serve(ctx)
}

// defaultGCPercent is --gc-percent's default. A data plane's live heap is
// small (the compiled table, some MB) and its garbage comes mostly from
// requests, so Go's default of 100 collects every second or so under
// moderate load, and a collection's stop-the-world phases, stretched by a
// busy CPU, are the worst latencies a request sees (make bench-scale,
// GODEBUG=gctrace=1). 400 collects a fifth as often for a heap a few
// times larger; a soft memory limit bounds it: GOMEMLIMIT, or 90% of the
// container's memory limit (memlimit.go).
const defaultGCPercent = 400

// flags are the command line; docs/FLAGS.md lists them.
type flags struct {
	cpURL, token, cpCA, listen, opsListen, stateDir, nodeID *string
	tokenFile                                               *string
	pollWait, drainDelay, shutdownTimeout                   *time.Duration
	consulAddr, advertise                                   *string
	redisURL                                                *string
	redisBudget                                             *time.Duration
	cacheSize                                               *int64
	cacheBudget                                             *time.Duration
	trusted, accessLog                                      *string
	accessSample                                            *float64
	reportEvery                                             *time.Duration
	logLevel                                                *string
	pprofOn                                                 *bool
	bodyTimeout                                             *time.Duration
	bodyMinRate                                             *int64
	bodyGrace, tunnelIdle, tunnelLife                       *time.Duration
	allowUnderscore, showVersion                            *bool
	gcPercent                                               *int64
	tlsListen, tlsDefault                                   *string
	h2c, http3                                              *bool
	http3Port                                               *int64
}

func parseFlags(args []string) (*flags, error) {
	fs := envflag.New("dataplane")
	f := &flags{
		cpURL:           fs.String("controlplane", "PORTICO_CONTROLPLANE", "http://127.0.0.1:9000", "control plane URL, or consul://<service> to find it through Consul"),
		token:           fs.String("token", "PORTICO_DATAPLANE_TOKEN", "", "bearer token for the control plane's sync API"),
		tokenFile:       fs.String("token-file", "PORTICO_DATAPLANE_TOKEN_FILE", "", "file holding --token (a mounted secret), instead of the flag"),
		cpCA:            fs.String("controlplane-ca", "PORTICO_CONTROLPLANE_CA", "", "PEM CA bundle to verify an https control plane (default: the system roots)"),
		listen:          fs.String("listen", "PORTICO_LISTEN", ":8080", "traffic listener"),
		opsListen:       fs.String("ops-listen", "PORTICO_OPS_LISTEN", ":8081", "operations listener (/healthz, /readyz, /metrics, /status)"),
		stateDir:        fs.String("state-dir", "PORTICO_STATE_DIR", "portico-data/dataplane", "directory for the last applied snapshot (boot source when the control plane is down)"),
		nodeID:          fs.String("node-id", "PORTICO_NODE_ID", "", "node id reported to the control plane (default: hostname plus a random suffix)"),
		pollWait:        fs.Duration("poll-wait", "PORTICO_POLL_WAIT", 30*time.Second, "long-poll wait asked of the control plane"),
		drainDelay:      fs.Duration("drain-delay", "PORTICO_DRAIN_DELAY", 0, "on SIGTERM, report not-ready this long before closing listeners (lets load balancers notice)"),
		shutdownTimeout: fs.Duration("shutdown-timeout", "PORTICO_SHUTDOWN_TIMEOUT", 30*time.Second, "how long in-flight requests may take to finish on SIGTERM"),
		consulAddr:      fs.String("consul", "CONSUL_HTTP_ADDR", "", "Consul agent address for discovery and self-registration (default 127.0.0.1:8500 for discovery; registration only when set)"),
		advertise:       fs.String("advertise", "PORTICO_ADVERTISE", "", "address registered in Consul (default: derived from --listen)"),
		redisURL:        fs.String("redis", "PORTICO_REDIS_URL", "", "Redis for cluster-wide rate limits (and shared caching, OIDC session refreshes): redis://host:6379/0, rediss://..., redis://h1:6379?addr=h2:6379 (cluster), or redis://...?master_name=mymaster (Sentinel); empty: an in-process limiter"),
		redisBudget:     fs.Duration("redis-budget", "PORTICO_REDIS_BUDGET", 5*time.Millisecond, "time budget of one rate-limit exchange with Redis while the data plane is idle; a busy data plane adds twice its measured reaction lag (at most 500ms) before it blames Redis and falls back locally"),
		cacheSize:       fs.Int64("cache-size", "PORTICO_CACHE_SIZE", cache.DefaultMemoryBytes, "bytes of responses the in-memory cache of this data plane may hold (LRU)"),
		cacheBudget:     fs.Duration("cache-redis-budget", "PORTICO_CACHE_REDIS_BUDGET", 50*time.Millisecond, "time budget of one call to the shared Redis cache; past it the request goes on as a miss"),
		trusted:         fs.String("trusted-proxies", "PORTICO_TRUSTED_PROXIES", "", "comma-separated CIDRs of proxies whose X-Forwarded-For is believed (e.g. the front load balancer)"),
		accessLog:       fs.String("access-log", "PORTICO_ACCESS_LOG", "stdout", "access log: stdout, stderr or off (one JSON line per request)"),
		accessSample:    fs.Float64("access-log-sample", "PORTICO_ACCESS_LOG_SAMPLE", 1, "share of 1xx-3xx requests logged (0..1); 4xx and 5xx are always logged"),
		reportEvery:     fs.Duration("report-interval", "PORTICO_REPORT_INTERVAL", 10*time.Second, "how often traffic counters go to the control plane (cluster analytics)"),
		logLevel:        fs.String("log-level", "PORTICO_LOG_LEVEL", "info", "debug, info, warn or error"),
		pprofOn:         fs.Bool("ops-pprof", "PORTICO_OPS_PPROF", false, "serve the Go profiler under /debug/pprof/ on the ops listener"),
		bodyTimeout:     fs.Duration("body-read-timeout", "PORTICO_BODY_READ_TIMEOUT", proxy.DefaultBodyReadTimeout, "longest wait for the next bytes of a request body; past it the client gets 408 and its connection is closed"),
		bodyMinRate:     fs.Int64("body-min-rate", "PORTICO_BODY_MIN_RATE", proxy.DefaultBodyMinRate, "bytes per second a client must keep up while the gateway waits for its request body, after --body-min-rate-grace; -1 turns it off"),
		bodyGrace:       fs.Duration("body-min-rate-grace", "PORTICO_BODY_MIN_RATE_GRACE", proxy.DefaultBodyMinRateGrace, "waiting for a request body this long is free before --body-min-rate applies"),
		tunnelIdle:      fs.Duration("tunnel-idle-timeout", "PORTICO_TUNNEL_IDLE_TIMEOUT", proxy.DefaultTunnelIdleTimeout, "close an upgraded connection (WebSocket) with no traffic either way for this long"),
		tunnelLife:      fs.Duration("tunnel-max-lifetime", "PORTICO_TUNNEL_MAX_LIFETIME", proxy.DefaultTunnelMaxLifetime, "close an upgraded connection (WebSocket) after this long, busy or not"),
		allowUnderscore: fs.Bool("allow-underscore-headers", "PORTICO_ALLOW_UNDERSCORE_HEADERS", false, "pass client headers whose names contain '_' (dropped by default; those that read as a gateway header are dropped regardless)"),
		gcPercent:       fs.Int64("gc-percent", "PORTICO_GC_PERCENT", defaultGCPercent, "garbage collector target: heap growth in percent of the live heap before a collection (Go's GOGC; -1 turns the collector off, for use with GOMEMLIMIT)"),
		tlsListen:       fs.String("tls-listen", "PORTICO_TLS_LISTEN", "", "TLS traffic listener (HTTP/1.1 and HTTP/2) with the certificates of the configuration, chosen by SNI; empty: off"),
		tlsDefault:      fs.String("tls-default-cert", "PORTICO_TLS_DEFAULT_CERT", "", "name of the certificate object served to TLS clients that send no SNI (an IP address in the URL); empty: such handshakes fail"),
		h2c:             fs.Bool("h2c", "PORTICO_H2C", false, "also accept HTTP/2 without TLS (prior knowledge) on --listen, with the TLS listener's HTTP/2 limits"),
		http3:           fs.Bool("http3", "PORTICO_HTTP3", false, "also serve HTTP/3 (QUIC, UDP) on --tls-listen's port, with the same certificates and limits, advertised by Alt-Svc on TLS answers; needs --tls-listen"),
		http3Port:       fs.Int64("http3-advertise-port", "PORTICO_HTTP3_ADVERTISE_PORT", 0, "UDP port named in Alt-Svc (h3=\":PORT\"): the port clients reach HTTP/3 on, when a load balancer maps ports; 0: --tls-listen's port"),
		showVersion:     fs.FlagSet.Bool("version", false, "print the version and exit"),
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	switch {
	case *f.http3Port < 0 || *f.http3Port > 65535:
		return f, fmt.Errorf("--http3-advertise-port: %d is not a port (1-65535, or 0 for --tls-listen's)", *f.http3Port)
	case *f.http3Port != 0 && !*f.http3:
		return f, errors.New("--http3-advertise-port needs --http3")
	}
	return f, secretfile.Resolve(f.token, *f.tokenFile, "token", "token-file")
}

// dataplane is what run assembles: the traffic handler and the syncer that
// feeds it snapshots, with what they share.
type dataplane struct {
	f        *flags
	log      *slog.Logger
	reg      *prometheus.Registry
	handler  *proxy.Handler
	sync     *syncer.Syncer
	consul   *api.Client
	watcher  *discovery.Watcher
	grpc     *grpcjson.Pool
	recorder *analytics.Recorder
	// report sends the traffic counters to the control plane.
	report        func(context.Context, apiv1.Report) error
	limiterStatus func() any
	// limiter and cache are what compiled routes decide rate limits with
	// and cache responses in (proxy.Deps).
	limiter ratelimit.Limiter
	cache   *cache.Cache
	// redis is --redis's client (nil without); OIDC sessions share their
	// refreshes through it too.
	redis redis.UniversalClient
	// certs are the TLS listener's certificates (nil without --tls-listen).
	certs *tlsedge.Certificates
	// answers are the ACME challenges every data plane answers.
	answers *acmechallenge.Answers
}

// newDataplane checks the flags and assembles the data plane; nothing serves
// or polls yet.
func newDataplane(f *flags, log *slog.Logger) (_ *dataplane, err error) {
	dp := &dataplane{f: f, log: log, reg: prometheus.NewRegistry()}
	dp.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ips, err := clientip.Parse(*f.trusted)
	if err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	if err := dp.newHandler(ips); err != nil {
		return nil, err
	}
	if dp.consul, err = consulreg.Client(*f.consulAddr); err != nil {
		return nil, err
	}
	dp.watcher = discovery.NewWatcher(dp.consul, log, dp.reg)
	dp.grpc = grpcjson.NewPool(grpcjson.PoolOptions{})
	dp.answers = acmechallenge.New(log)
	if *f.tlsListen != "" {
		dp.certs = tlsedge.New(*f.tlsDefault, log)
		dp.certs.AnswerALPN(dp.answers)
	}
	defer func() {
		if err != nil {
			dp.close()
		}
	}()
	applier := proxy.NewApplier(dp.handler, proxy.Deps{
		Upstream: upstream.Deps{Watcher: dp.watcher, Log: log, Metrics: upstream.NewMetrics(dp.reg), ClientIP: ips.ClientIP},
		Issuer:   auth.IssuerOptions{Log: log, Redis: dp.redis, SessionMetrics: auth.NewSessionMetrics(dp.reg)},
		GRPC:     dp.grpc,
		Limiter:  dp.limiter,
		Cache:    dp.cache,
		ExtAuthz: extauthz.NewClient(extauthz.Options{Registerer: dp.reg, Log: log}),
	})
	if err := dp.newSyncer(applier); err != nil {
		return nil, err
	}
	return dp, nil
}

// newHandler builds the traffic handler (access log, analytics, the
// client-facing limits) and what its routes' stages use: the rate limiter
// and the response cache.
func (dp *dataplane) newHandler(ips *clientip.Resolver) error {
	f, log := dp.f, dp.log
	// The syncer learns the cluster size; the limiter needs it first.
	peers := func() int {
		if dp.sync == nil {
			return 1
		}
		return dp.sync.Peers()
	}
	if *f.cacheSize <= 0 {
		return fmt.Errorf("--cache-size %d: want a positive number of bytes", *f.cacheSize)
	}
	var rc redis.UniversalClient
	if *f.redisURL != "" {
		var err error
		if rc, err = redisconn.ParseURL(*f.redisURL); err != nil {
			return fmt.Errorf("--redis: %w", err)
		}
		// go-redis logs every failed dial to stderr during an outage; the
		// limiter and the cache already report outages once, so its lines
		// go to debug.
		redis.SetLogger(redisLog{log})
		dp.redis = rc
	}
	dp.limiter, dp.limiterStatus = newLimiter(rc, *f.redisBudget, peers, log, dp.reg)
	copts := cache.Options{Memory: cache.NewMemory(*f.cacheSize), Log: log, Registerer: dp.reg}
	if rc != nil {
		copts.Redis = cache.NewRedis(rc, *f.cacheBudget)
	}
	dp.cache = cache.New(copts)
	access, err := accessLogger(*f.accessLog)
	if err != nil {
		return err
	}
	if *f.accessSample < 0 || *f.accessSample > 1 {
		return fmt.Errorf("--access-log-sample %v: want a share between 0 and 1", *f.accessSample)
	}
	dp.recorder = analytics.NewRecorder(*f.nodeID, time.Now)
	dp.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "portico_analytics_dropped_requests_total",
		Help: "Requests whose analytics counters were dropped because the control plane was unreachable for too long.",
	}, func() float64 { return float64(dp.recorder.Dropped()) }))
	if *f.bodyTimeout <= 0 || *f.bodyGrace <= 0 || *f.tunnelIdle <= 0 || *f.tunnelLife <= 0 || *f.bodyMinRate == 0 {
		return errors.New("--body-read-timeout, --body-min-rate-grace, --tunnel-idle-timeout and --tunnel-max-lifetime must be positive, --body-min-rate positive or -1 (off)")
	}
	limits := proxy.Limits{
		BodyReadTimeout: *f.bodyTimeout, BodyMinRate: *f.bodyMinRate, BodyMinRateGrace: *f.bodyGrace,
		TunnelIdleTimeout: *f.tunnelIdle, TunnelMaxLifetime: *f.tunnelLife, AllowUnderscoreHeaders: *f.allowUnderscore,
	}
	dp.handler = proxy.NewHandler(proxy.Options{Log: log, Metrics: proxy.NewMetrics(dp.reg), ClientIP: ips,
		Observe: proxy.ObserveOptions{AccessLog: access, AccessLogSample: *f.accessSample, Analytics: dp.recorder}, Limits: limits})
	return nil
}

// newSyncer builds the control-plane client (a fixed URL, or a service
// resolved in Consul) and the syncer that hands every snapshot to applier.
func (dp *dataplane) newSyncer(applier *proxy.Applier) error {
	f := dp.f
	pollHTTP := &http.Client{Timeout: *f.pollWait + 15*time.Second}
	if *f.cpCA != "" {
		pem, err := os.ReadFile(*f.cpCA)
		if err != nil {
			return fmt.Errorf("--controlplane-ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--controlplane-ca %s: no PEM certificate in it", *f.cpCA)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
		pollHTTP.Transport = tr
	}
	var poller syncer.Poller
	if svcName, ok := strings.CutPrefix(*f.cpURL, "consul://"); ok {
		rp := &syncer.ResolvingPoller{
			Resolve: func(ctx context.Context) ([]string, error) { return consulreg.Resolve(ctx, dp.consul, svcName) },
			Token:   *f.token, HTTP: pollHTTP, Log: dp.log,
		}
		poller, dp.report = rp, rp.Report
	} else {
		cp, err := client.New(*f.cpURL, *f.token, client.WithHTTPClient(pollHTTP))
		if err != nil {
			return err
		}
		poller, dp.report = cp, cp.Report
	}
	dp.sync = syncer.New(syncer.Options{
		Poller:   poller,
		StateDir: *f.stateDir,
		NodeID:   *f.nodeID,
		Version:  version,
		Wait:     *f.pollWait,
		Log:      dp.log,
		Apply:    dp.apply(applier),
		// The cluster's TLS session-ticket keys (nil-safe without a TLS
		// listener).
		OnTicketKeys: dp.certs.SetTicketKeys,
		TLS:          dp.tlsReport,
	})
	registerSyncMetrics(dp.reg, dp.sync)
	return nil
}

// tlsReport is what the TLS listener serves, reported on every poll; nil
// without one.
func (dp *dataplane) tlsReport() *apiv1.DataplaneTLS {
	if dp.certs == nil {
		return nil
	}
	return &apiv1.DataplaneTLS{HTTP3: *dp.f.http3, TicketKey: dp.certs.TicketKeyID()}
}

// apply puts a snapshot into service: the routes' table, then the TLS
// listener's certificates; the objects either left out are reported.
func (dp *dataplane) apply(applier *proxy.Applier) syncer.Applier {
	return func(s *snapshot.Snapshot, ch *snapshot.Change) ([]config.Rejected, error) {
		rejected, err := applier.ApplyChange(s, ch)
		if err != nil {
			return nil, err
		}
		// ACME challenges first: the control plane waits for this
		// revision to ask for validation.
		dp.answers.Apply(&s.Config)
		if dp.certs == nil {
			return rejected, nil
		}
		return append(rejected, dp.certs.Apply(&s.Config)...), nil
	}
}

// close stops what newDataplane started.
func (dp *dataplane) close() {
	dp.grpc.Close()
	dp.watcher.Close()
}

// boot applies the snapshot saved in the state dir, so that the data plane
// serves before (and without) the control plane.
func (dp *dataplane) boot() {
	booted, err := dp.sync.Boot()
	if err != nil {
		dp.log.Error("ignoring the saved snapshot", "err", err)
	}
	if booted {
		dp.log.Info("serving the snapshot saved in the state dir until the control plane answers",
			"revision", dp.sync.Applied(), "state_dir", *dp.f.stateDir)
	}
}

// serve opens the traffic and ops listeners, registers in Consul when asked
// to, runs the syncer and the analytics reports, and on ctx's end drains:
// not ready, deregistered, --drain-delay, then in-flight requests finish
// within --shutdown-timeout.
func (dp *dataplane) serve(ctx context.Context) error {
	f, log := dp.f, dp.log
	var draining atomic.Bool
	opsHandler := ops.Handler(ops.Options{
		Gatherer: dp.reg,
		Pprof:    *f.pprofOn,
		Ready: func() (bool, string) {
			switch {
			case draining.Load():
				return false, "draining"
			case dp.handler.Table() == nil:
				return false, "no configuration loaded yet"
			}
			return true, ""
		},
		Status: func() any {
			routes := 0
			var ups []upstream.Status
			var compiled *proxy.CompileStats
			if t := dp.handler.Table(); t != nil {
				routes, ups = t.Routes(), t.Upstreams()
				c := t.CompileStats()
				compiled = &c
			}
			return struct {
				NodeID  string `json:"node_id"`
				Version string `json:"version"`
				syncer.Status
				Routes int `json:"routes"`
				// Compiled: how the table in service was compiled (a
				// delta's change or the whole snapshot).
				Compiled  *proxy.CompileStats      `json:"compiled,omitempty"`
				Draining  bool                     `json:"draining"`
				Upstreams []upstream.Status        `json:"upstreams"`
				Discovery []discovery.SourceStatus `json:"discovery"`
				RateLimit any                      `json:"rate_limit"`
				// TLSCertificates: the certificates in service on --tls-listen.
				TLSCertificates []string `json:"tls_certificates,omitempty"`
				// TLSTicketKey: the ID of the session-ticket key that
				// encrypts (apiv1.TicketKeyID); absent while the process
				// uses its own keys.
				TLSTicketKey string `json:"tls_ticket_key,omitempty"`
			}{*f.nodeID, version, dp.sync.Status(), routes, compiled, draining.Load(), ups, dp.watcher.Status(), dp.limiterStatus(), dp.certs.Names(), dp.certs.TicketKeyID()}
		},
	})

	trafficLn, err := net.Listen("tcp", *f.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *f.listen, err)
	}
	opsLn, err := net.Listen("tcp", *f.opsListen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *f.opsListen, err)
	}
	// Header, body, idle and tunnel limits are always on (proxy.Limits);
	// bodies are bounded per route and may stream, so there is no
	// whole-request read or write timeout.
	traffic := dp.handler.Server(log)
	// ACME HTTP-01 challenges are answered before routing (and before
	// https_redirect) on the plain listener only.
	traffic.Handler = dp.answers.Wrap(traffic.Handler)
	if *f.h2c {
		tlsedge.ConfigureH2C(traffic)
	}
	// The TLS listener serves the same handler with the same limits.
	var tlsLn net.Listener
	var tlsSrv *http.Server
	if dp.certs != nil {
		if tlsLn, err = net.Listen("tcp", *f.tlsListen); err != nil {
			return fmt.Errorf("listen %s: %w", *f.tlsListen, err)
		}
		tlsSrv = dp.handler.Server(log)
		tlsedge.Configure(tlsSrv, dp.certs)
		log.Info("TLS listener", "tls_listen", tlsLn.Addr().String(), "tls_default_cert", *f.tlsDefault)
	}
	// HTTP/3 answers on the TLS listener's port number over UDP, with the
	// same handler and certificates; TLS answers advertise it (Alt-Svc).
	var h3 *http3.Server
	var h3Conn net.PacketConn
	if *f.http3 {
		if tlsSrv == nil {
			return errors.New("--http3 needs --tls-listen")
		}
		if h3Conn, err = tlsedge.ListenHTTP3(tlsLn.Addr()); err != nil {
			return err
		}
		h3 = tlsedge.HTTP3(tlsSrv, dp.certs, log)
		// Alt-Svc names the port clients reach: the listener's, unless a
		// load balancer in front maps another one to it.
		advertised := tlsLn.Addr().(*net.TCPAddr).Port
		if *f.http3Port != 0 {
			advertised = int(*f.http3Port)
		}
		tlsedge.AdvertiseHTTP3(tlsSrv, advertised)
		log.Info("HTTP/3 listener", "udp", h3Conn.LocalAddr().String(), "alt_svc_port", advertised)
	}
	opsSrv := &http.Server{Handler: opsHandler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	log.Info("data plane started", "listen", trafficLn.Addr().String(), "ops_listen", opsLn.Addr().String(),
		"controlplane", *f.cpURL, "version", version, "websocket_over_http2", extconnect.Enabled())

	// deregister leaves Consul when draining starts, so that load balancers
	// that follow Consul stop sending before the listeners close.
	var deregister = func() {}
	if *f.consulAddr != "" {
		reg, err := registration(*f.nodeID, *f.advertise, trafficLn.Addr().String(), opsLn.Addr().String())
		if err != nil {
			return err
		}
		deregister = consulreg.RegisterForLife(ctx, dp.consul, reg, log)
	}
	g, gctx := errgroup.WithContext(ctx)
	syncCtx, stopSync := context.WithCancel(context.Background())
	defer stopSync()
	g.Go(func() error { return dp.sync.Run(syncCtx) })
	g.Go(func() error {
		dp.recorder.Run(syncCtx, *f.reportEvery, dp.report)
		return nil
	})
	g.Go(func() error { return serve(traffic, trafficLn) })
	g.Go(func() error { return serve(opsSrv, opsLn) })
	if tlsSrv != nil {
		g.Go(func() error {
			if err := tlsSrv.ServeTLS(tlsLn, "", ""); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if h3 != nil {
		g.Go(func() error { return tlsedge.ServeHTTP3(h3, h3Conn) })
	}
	g.Go(func() error {
		<-gctx.Done()
		draining.Store(true)
		deregister()
		log.Info("draining", "delay", *f.drainDelay)
		time.Sleep(*f.drainDelay)
		sctx, cancel := context.WithTimeout(context.Background(), *f.shutdownTimeout)
		defer cancel()
		err := traffic.Shutdown(sctx)
		if tlsSrv != nil {
			err = errors.Join(err, tlsSrv.Shutdown(sctx))
		}
		if h3 != nil {
			err = errors.Join(err, tlsedge.ShutdownHTTP3(sctx, h3))
		}
		stopSync()
		_ = opsSrv.Shutdown(sctx)
		log.Info("stopped", "err", err)
		return err
	})
	return g.Wait()
}

// registration describes this data plane as portico-dataplane, checked on
// its /readyz so that a draining or unconfigured node leaves the pool.
func registration(nodeID, advertise, listen, opsListen string) (consulreg.Registration, error) {
	if advertise == "" {
		advertise = listen
	}
	host, port, err := consulreg.AdvertiseAddr(advertise)
	if err != nil {
		return consulreg.Registration{}, err
	}
	_, opsPort, err := consulreg.AdvertiseAddr(opsListen)
	if err != nil {
		return consulreg.Registration{}, err
	}
	return consulreg.Registration{
		Name:     "portico-dataplane",
		ID:       "portico-dataplane-" + nodeID,
		Address:  host,
		Port:     port,
		CheckURL: fmt.Sprintf("http://%s/readyz", net.JoinHostPort(host, strconv.Itoa(opsPort))),
		Meta:     map[string]string{"version": version, "node_id": nodeID},
	}, nil
}

// newLimiter returns the rate limiter: Redis-backed when a URL is given,
// else in-process (and /status says so: limits then hold per data plane,
// not for the cluster).
func newLimiter(rc redis.UniversalClient, budget time.Duration, peers func() int, log *slog.Logger, reg prometheus.Registerer) (ratelimit.Limiter, func() any) {
	if rc == nil {
		log.Warn("no --redis: rate limits are counted per data plane, not for the whole cluster")
		return ratelimit.NewLocal(time.Now), func() any {
			return map[string]any{"backend": "memory", "note": "no Redis configured: limits hold per data plane"}
		}
	}
	rl := ratelimit.NewRedis(ratelimit.Options{Client: rc, Budget: budget, Peers: peers, Log: log, Metrics: reg})
	// A connection and the scripts ready before the first request; bounded
	// by the breaker's cool-down, errors are for the first decisions to see.
	go func() { _ = rl.WarmUp() }()
	return rl, func() any { return rl.Status() }
}

// accessLogger returns the access log's destination, or nil for "off".
func accessLogger(dest string) (*slog.Logger, error) {
	switch dest {
	case "stdout":
		return slog.New(slog.NewJSONHandler(os.Stdout, nil)), nil
	case "stderr":
		return slog.New(slog.NewJSONHandler(os.Stderr, nil)), nil
	case "off", "":
		return nil, nil
	}
	return nil, fmt.Errorf("--access-log %q: want stdout, stderr or off", dest)
}

type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug("redis client", "msg", fmt.Sprintf(format, v...))
}

func serve(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}
	return nil
}

func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "dataplane"
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

func registerSyncMetrics(reg prometheus.Registerer, sy *syncer.Syncer) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "portico_config_revision",
			Help: "Configuration revision being served.",
		}, func() float64 { return float64(sy.Applied()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "portico_config_objects_rejected",
			Help: "Objects of the applied revision this data plane could not apply (left out; their routes answer 503). Alert on > 0.",
		}, func() float64 { return float64(len(sy.RejectedObjects())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "portico_controlplane_connected",
			Help: "1 while the last poll of the control plane succeeded.",
		}, func() float64 {
			if sy.Status().Connected {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "portico_config_last_sync_age_seconds",
			Help: "Seconds since the control plane last answered a poll (-1: never).",
		}, func() float64 {
			t := sy.Status().LastContact
			if t.IsZero() {
				return -1
			}
			return time.Since(t).Seconds()
		}),
	)
}
