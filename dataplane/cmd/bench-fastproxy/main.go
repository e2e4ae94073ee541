// Command bench-fastproxy is a measured decision aid for issue 20, goal 3
// (docs/PERFORMANCE.md, "Goal 3: a fast HTTP/1.1 path?"): the benchmark's
// plain route (GET /bench/* to one upstream over a keep-alive pool) served
// by valyala/fasthttp's server and HostClient instead of net/http, doing the
// per-request work a gateway cannot skip: the header-block limit, framing
// and header checks, hop-by-hop and client-header stripping, forwarded
// headers, one route match and Portico's per-request metrics. It is not
// Portico's listener and is only built by `make bench-load` (target
// fasthttp-proto). It is a module of its own so that the data plane's
// dependencies do not change for a prototype.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // --pprof: profiles of the prototype under load
	"net/url"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9103", "address to listen on")
	upstream := flag.String("upstream", "http://127.0.0.1:9101", "upstream URL (http://host:port)")
	engine := flag.String("engine", "fasthttp", "listener: fasthttp (the prototype's own request path) or nbio (nbio's event loop in front of bench-stdlibproxy's net/http handler)")
	pprof := flag.String("pprof", "", "address for net/http/pprof and /metrics (off when empty)")
	flag.Parse()
	u, err := url.Parse(*upstream)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		log.Fatalf("--upstream: want http://host:port, got %q", *upstream)
	}
	reg := prometheus.NewRegistry()
	// Go's own metrics (go_memstats_mallocs_total: allocations per
	// request in bench-load's PROFILE run), as the data plane registers.
	reg.MustRegister(collectors.NewGoCollector())
	if *pprof != "" {
		http.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		go func() { log.Print(http.ListenAndServe(*pprof, nil)) }()
	}
	if *engine == "nbio" {
		e := newNbioEngine(*listen, u)
		if err := e.Start(); err != nil {
			log.Fatal(err)
		}
		select {} // serves until killed, like the other bench targets
	}
	if *engine != "fasthttp" {
		log.Fatalf("--engine: want fasthttp or nbio, got %q", *engine)
	}
	p := newFastProxy(u.Host, reg)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(newServer(p.serve).Serve(ln))
}
