// Command demo-upstream is a tiny microservice for trying Portico and for
// end-to-end tests: it answers every request with JSON describing what it
// received (its own name, the method, path, query and forwarding headers).
package main

import (
	"cmp"
	"context"
	"encoding/json"
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

	"github.com/portico-gw/portico/shared/cli"
	"github.com/portico-gw/portico/shared/consulreg"
	"github.com/portico-gw/portico/shared/envflag"
)

func main() { cli.Main("demo-upstream", run) }

func run(args []string) error {
	fs := envflag.New("demo-upstream")
	listen := fs.String("listen", "DEMO_LISTEN", "127.0.0.1:9001", "address to listen on")
	name := fs.String("name", "DEMO_NAME", "demo", "name reported in responses")
	consulAddr := fs.String("consul", "CONSUL_HTTP_ADDR", "", "register in Consul under --service with an HTTP check (off when empty)")
	service := fs.String("service", "DEMO_SERVICE", "", "Consul service name (default: --name)")
	tags := fs.String("tags", "DEMO_TAGS", "", "comma-separated Consul tags")
	advertise := fs.String("advertise", "DEMO_ADVERTISE", "", "address registered in Consul (default: derived from --listen)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil && d > 0 {
			select {
			case <-time.After(min(d, time.Minute)):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Served-By", *name)
		out := map[string]any{
			"service":           *name,
			"method":            r.Method,
			"path":              r.URL.Path,
			"query":             r.URL.RawQuery,
			"host":              r.Host,
			"x_forwarded_for":   r.Header.Get("X-Forwarded-For"),
			"x_forwarded_host":  r.Header.Get("X-Forwarded-Host"),
			"x_forwarded_proto": r.Header.Get("X-Forwarded-Proto"),
		}
		// Who the gateway says is calling (auth stage headers, forwarded
		// claims such as an OIDC login's X-User-*), when it says so.
		identity := map[string]string{}
		for k, v := range r.Header {
			if strings.HasPrefix(k, "X-Consumer-") || strings.HasPrefix(k, "X-Auth-") || strings.HasPrefix(k, "X-User-") {
				identity[k] = v[0]
			}
		}
		if len(identity) > 0 {
			out["identity"] = identity
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.Default()
	if *consulAddr != "" {
		c, err := consulreg.Client(*consulAddr)
		if err != nil {
			return err
		}
		host, port, err := consulreg.AdvertiseAddr(cmp.Or(*advertise, *listen))
		if err != nil {
			return err
		}
		svc := cmp.Or(*service, *name)
		var tagList []string
		if *tags != "" {
			tagList = strings.Split(*tags, ",")
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		defer consulreg.RegisterForLife(ctx, c, consulreg.Registration{
			Name: svc, ID: svc + "-" + addr, Address: host, Port: port, Tags: tagList,
			CheckURL: "http://" + addr + "/healthz", Interval: 2 * time.Second,
		}, log)()
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("demo upstream listening", "addr", *listen, "name", *name)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
