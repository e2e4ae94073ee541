// Command controlplane runs Portico's control plane: the admin REST API, the
// configuration store and the sync API that data planes long-poll.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portico-gw/portico/controlplane/internal/acme"
	"github.com/portico-gw/portico/controlplane/internal/analytics"
	"github.com/portico-gw/portico/controlplane/internal/api"
	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/nodes"
	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/controlplane/internal/tickets"
	"github.com/portico-gw/portico/shared/cli"
	"github.com/portico-gw/portico/shared/consulreg"
	"github.com/portico-gw/portico/shared/envflag"
	"github.com/portico-gw/portico/shared/secretfile"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { cli.Main("controlplane", run) }

func run(args []string) error {
	if len(args) > 0 && args[0] == "init-secrets" {
		return initSecrets(args[1:])
	}
	fs := envflag.New("controlplane")
	listen := fs.String("listen", "PORTICO_CP_LISTEN", ":9000", "address of the admin and sync API")
	storeSpec := fs.String("store", "PORTICO_STORE", "bolt:portico-data/controlplane.db", "configuration store: bolt:<file> or consul://<host:port>/<kv-prefix>")
	adminToken := fs.String("admin-token", "PORTICO_ADMIN_TOKEN", "", "bearer token of the admin API")
	dpToken := fs.String("dataplane-token", "PORTICO_DATAPLANE_TOKEN", "", "bearer token data planes use on the sync API")
	adminTokenFile := fs.String("admin-token-file", "PORTICO_ADMIN_TOKEN_FILE", "", "file holding --admin-token (a mounted secret), instead of the flag")
	dpTokenFile := fs.String("dataplane-token-file", "PORTICO_DATAPLANE_TOKEN_FILE", "", "file holding --dataplane-token, instead of the flag")
	dev := fs.Bool("dev", "PORTICO_DEV", false, "development mode: no tokens required (never in production)")
	maxWait := fs.Duration("max-wait", "PORTICO_MAX_WAIT", 60*time.Second, "longest long-poll wait a data plane may ask for")
	tlsCert := fs.String("tls-cert", "PORTICO_TLS_CERT", "", "PEM certificate (chain) to serve the admin and sync APIs over HTTPS")
	tlsKey := fs.String("tls-key", "PORTICO_TLS_KEY", "", "PEM private key of --tls-cert")
	consulAddr := fs.String("consul", "CONSUL_HTTP_ADDR", "", "Consul agent to register in as portico-controlplane (off when empty)")
	advertise := fs.String("advertise", "PORTICO_ADVERTISE", "", "address registered in Consul (default: derived from --listen)")
	logLevel := fs.String("log-level", "PORTICO_LOG_LEVEL", "info", "debug, info, warn or error")
	acmeBackoff := fs.Duration("acme-backoff", "PORTICO_ACME_BACKOFF", acme.DefaultBackoff, "wait before ordering an ACME certificate again after a failure; doubles per failure in a row, at most 6h")
	ticketRotation := fs.Duration("tls-ticket-rotation", "PORTICO_TLS_TICKET_ROTATION", tickets.DefaultRotation, "how long one TLS session-ticket key of the cluster encrypts new tickets before the next takes over")
	ticketKeep := fs.Duration("tls-ticket-keep", "PORTICO_TLS_TICKET_KEEP", tickets.DefaultKeep, "how long a session-ticket key still decrypts (tickets resume) after it stopped encrypting; at most 168h")
	showVersion := fs.FlagSet.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(version)
		return nil
	}
	log, err := cli.NewLogger(*logLevel)
	if err != nil {
		return err
	}
	if err := secretfile.Resolve(adminToken, *adminTokenFile, "admin-token", "admin-token-file"); err != nil {
		return err
	}
	if err := secretfile.Resolve(dpToken, *dpTokenFile, "dataplane-token", "dataplane-token-file"); err != nil {
		return err
	}
	if !*dev && (*adminToken == "" || *dpToken == "") {
		return errors.New("--admin-token and --dataplane-token are required (or PORTICO_ADMIN_TOKEN and PORTICO_DATAPLANE_TOKEN); use --dev only on a development machine")
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if *dev {
		log.Warn("DEV MODE: the admin and sync APIs accept requests WITHOUT A TOKEN; never expose this control plane")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	flushTraces, err := cli.Tracing(ctx, "portico-controlplane", version)
	if err != nil {
		return err
	}
	defer flushTraces()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	raw, err := store.Open(ctx, *storeSpec)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer raw.Close()
	st := store.Instrument(raw, reg)
	cat, err := catalog.New(ctx, st, log)
	if err != nil {
		return err
	}
	// The cluster's TLS session-ticket keys, shipped to data planes on
	// every sync answer.
	ticketKeys, err := tickets.New(tickets.Options{Store: st, Log: log,
		Policy: tickets.Policy{Rotation: *ticketRotation, Keep: *ticketKeep}})
	if err != nil {
		return err
	}
	stopping := make(chan struct{})
	registry := nodes.NewRegistry(*maxWait+15*time.Second, time.Hour)
	handler := api.New(api.Options{
		Catalog:        cat,
		Nodes:          registry,
		Metrics:        api.NewMetrics(reg, cat, registry),
		Gatherer:       reg,
		Analytics:      analytics.NewAggregator(time.Hour, 10*time.Second, time.Now),
		AdminToken:     *adminToken,
		DataplaneToken: *dpToken,
		Dev:            *dev,
		Log:            log,
		Version:        version,
		MaxWait:        *maxWait,
		Stopping:       stopping,
		TicketKeys:     ticketKeys.Header,
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		// Long polls hold responses up to max-wait.
		WriteTimeout:   *maxWait + 30*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("control plane started", "listen", ln.Addr().String(), "store", redactStore(*storeSpec),
		"revision", cat.Current().State.Revision, "version", version)
	if *consulAddr != "" {
		reg, err := registration(*advertise, ln.Addr().String())
		if err != nil {
			return err
		}
		c, err := consulreg.Client(*consulAddr)
		if err != nil {
			return err
		}
		defer consulreg.RegisterForLife(ctx, c, reg, log)()
	}

	// The cluster's ACME client: orders and renews the certificates that
	// ask for it while this process holds the store's lease.
	acmeClient, err := acme.New(acme.Options{Catalog: cat, Store: st, Nodes: registry, Log: log,
		Backoff: *acmeBackoff, UserAgent: "portico-controlplane/" + version})
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cat.Run(gctx) })
	g.Go(func() error { return acmeClient.Run(gctx) })
	g.Go(func() error { return ticketKeys.Run(gctx) })
	if *tlsCert != "" {
		// Loaded once at start: a bad pair fails here, not at the first
		// handshake.
		pair, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
		ln = tls.NewListener(ln, srv.TLSConfig)
		log.Info("serving the admin and sync APIs over TLS")
	}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down")
		close(stopping)
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

// registration describes this control plane as portico-controlplane,
// checked on /healthz, so data planes can find it through Consul.
func registration(advertise, listen string) (consulreg.Registration, error) {
	if advertise == "" {
		advertise = listen
	}
	host, port, err := consulreg.AdvertiseAddr(advertise)
	if err != nil {
		return consulreg.Registration{}, err
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	return consulreg.Registration{
		Name:     "portico-controlplane",
		ID:       "portico-controlplane-" + addr,
		Address:  host,
		Port:     port,
		CheckURL: "http://" + addr + "/healthz",
		Meta:     map[string]string{"version": version},
	}, nil
}

// redactStore keeps credentials that might sit in a store URL out of logs.
func redactStore(spec string) string {
	if at := strings.IndexByte(spec, '@'); at >= 0 {
		if scheme := strings.IndexByte(spec, ':'); scheme >= 0 && scheme < at {
			return spec[:scheme+1] + "//***" + spec[at:]
		}
	}
	return spec
}
