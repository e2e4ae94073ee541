package proxy

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/dataplane/internal/cache"
	"github.com/portico-gw/portico/dataplane/internal/grpcjson"
	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// Table is a snapshot compiled for serving: the route matcher, and per route
// everything a request needs, resolved in advance. It is never modified after
// Compile returns; a new revision builds a new Table and swaps it in whole.
type Table struct {
	Revision  int64
	Checksum  string
	router    *router.Table
	routes    []*Route
	upstreams map[string]*upstream.Upstream
	issuers   map[string]*issuer
	verifier  *auth.Verifier
}

// issuer is a running JWT issuer (its JWKS refresh) and the spec it was
// built from, so an unchanged one carries over to the next table.
type issuer struct {
	spec config.Issuer
	iss  *auth.Issuer
}

// Route is a compiled route.
type Route struct {
	Name         string
	Upstream     *upstream.Upstream
	StripPrefix  bool
	Timeout      time.Duration
	MaxBodyBytes int64
	auth         *routeAuth
	limit        *rateLimit
	throttle     *throttle
	spec         config.Route
	// Transformations (transform.go) and the other ways of answering
	// (aggregate.go); nil when the route does not use them.
	rewrite   *tmpl
	query     *edits
	reqEdits  *edits
	respEdits *edits
	cors      *cors
	aggregate *aggregate
	cache     *cache.Policy
	grpc      *grpcjson.Method
	// params: some template of the route uses its {param}s, so requests
	// resolve them (once) after the match.
	params bool
}

// hasResponseHook says whether responses on the route are edited.
func (r *Route) hasResponseHook() bool { return r.respEdits != nil || r.cors != nil }

// Deps are the long-lived things a compiled table uses.
type Deps struct {
	Upstream upstream.Deps
	Issuer   auth.IssuerOptions
	// GRPC holds the connections of gRPC routes; needed when a route
	// names a gRPC method.
	GRPC *grpcjson.Pool
}

// Compile turns a snapshot into a Table. It re-validates the configuration:
// a data plane never trusts that what it received is sound. prev is the
// table in service (or nil): services whose configuration did not change
// keep their Upstream, with its breaker, budget and instance state; changed
// ones inherit the instance state.
func Compile(s *snapshot.Snapshot, prev *Table, deps Deps) (_ *Table, err error) {
	cfg := &s.Config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("compile snapshot %d: %w", s.Revision, err)
	}
	t := &Table{
		Revision:  s.Revision,
		Checksum:  s.Checksum,
		routes:    make([]*Route, len(cfg.Routes)),
		upstreams: make(map[string]*upstream.Upstream, len(cfg.Services)),
		issuers:   make(map[string]*issuer, len(cfg.Issuers)),
	}
	defer func() {
		if err != nil {
			t.Retire(prev)
		}
	}()
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		var old *upstream.Upstream
		if prev != nil {
			old = prev.upstreams[svc.Name]
		}
		if upstream.Reusable(old, svc) {
			t.upstreams[svc.Name] = old
			continue
		}
		u, err := upstream.Build(svc, old, deps.Upstream)
		if err != nil {
			return nil, fmt.Errorf("compile snapshot %d: %w", s.Revision, err)
		}
		t.upstreams[svc.Name] = u
	}
	for i := range cfg.Issuers {
		spec := cfg.Issuers[i]
		spec.Meta = config.Meta{}
		if prev != nil {
			if old, ok := prev.issuers[spec.Name]; ok && config.SameSpec(&old.spec, &spec) {
				t.issuers[spec.Name] = old
				continue
			}
		}
		iss, err := auth.NewIssuer(context.Background(), &spec, deps.Issuer)
		if err != nil {
			return nil, fmt.Errorf("compile snapshot %d issuers[%d]: %w", s.Revision, i, err)
		}
		t.issuers[spec.Name] = &issuer{spec: spec, iss: iss}
	}
	byName := make(map[string]*auth.Issuer, len(t.issuers))
	for name, is := range t.issuers {
		byName[name] = is.iss
	}
	t.verifier = auth.NewVerifier(byName, cfg.Consumers)

	prevRoutes := prev.routesByName()
	rules := make([]router.Rule, len(cfg.Routes))
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		rl := r.RateLimit
		if rl == nil {
			rl = cfg.Global.RateLimit
		}
		timeout := cmp.Or(r.Timeout.Std(), config.DefaultRouteTimeout)
		rt := &Route{
			Name:         r.Name,
			Upstream:     t.upstreams[r.Service],
			StripPrefix:  r.StripPrefix,
			Timeout:      timeout,
			MaxBodyBytes: cmp.Or(r.MaxBodyBytes, config.DefaultMaxBodyBytes),
			auth:         compileAuth(r.Auth),
			limit:        compileRateLimit(r.Name, rl),
			spec:         *r,
			query:        compileEdits(r.Query, func(s string) string { return s }),
			reqEdits:     compileEdits(r.RequestHeaders, http.CanonicalHeaderKey),
			respEdits:    compileEdits(r.ResponseHeaders, http.CanonicalHeaderKey),
			cors:         compileCORS(r.CORS, r.Methods),
			aggregate:    compileAggregate(r, t.upstreams, timeout),
			// The route's revision moves on every change and on a purge,
			// so it keys away every entry cached before.
			cache: cache.Compile(r.Name, r.Revision, r.Cache),
		}
		if r.Rewrite != "" {
			tp := compileTmpl(r.Rewrite)
			rt.rewrite = &tp
		}
		rt.params = rt.aggregate != nil || rt.rewrite != nil && !rt.rewrite.isStatic() ||
			rt.query.usesParams() || rt.reqEdits.usesParams() || rt.respEdits.usesParams()
		if r.GRPC != nil {
			if rt.grpc, err = compileGRPC(cfg, r, rt.Upstream, prevRoutes[r.Name], deps.GRPC); err != nil {
				return nil, fmt.Errorf("compile snapshot %d routes[%d]: %w", s.Revision, i, err)
			}
		}
		rt.spec.Meta = config.Meta{}
		// The in-flight cap counts requests across revisions: a new table
		// must not open a fresh set of slots while old requests still hold
		// theirs.
		if old := prevRoutes[r.Name]; old != nil && old.throttle != nil &&
			old.spec.MaxInFlight == r.MaxInFlight && old.spec.QueueTimeout == r.QueueTimeout {
			rt.throttle = old.throttle
		} else {
			rt.throttle = newThrottle(r.MaxInFlight, r.QueueTimeout.Std())
		}
		t.routes[i] = rt
		rules[i] = router.Rule{Paths: r.Paths, Methods: r.Methods, Hosts: r.Hosts}
	}
	rt, err := router.Compile(rules)
	if err != nil {
		return nil, fmt.Errorf("compile snapshot %d routes: %w", s.Revision, err)
	}
	t.router = rt
	return t, nil
}

// Start brings the table's new Upstreams into service (discovery
// subscriptions, health checks). Call it before swapping the table in.
func (t *Table) Start() {
	for _, u := range t.upstreams {
		u.Start()
	}
}

// Retire stops the Upstreams and issuers of t that next does not use.
// Requests still running on t finish on the endpoint sets they hold.
func (t *Table) Retire(next *Table) {
	for name, u := range t.upstreams {
		if next != nil && next.upstreams[name] == u {
			continue
		}
		u.Retire()
	}
	for name, is := range t.issuers {
		if next != nil && next.issuers[name] == is {
			continue
		}
		is.iss.Close()
	}
}

// compileGRPC builds a route's gRPC method, or keeps the previous table's
// when neither the route's method nor its service changed, so that the
// descriptors it learned through reflection carry over.
func compileGRPC(cfg *config.Config, r *config.Route, up *upstream.Upstream, prev *Route, pool *grpcjson.Pool) (*grpcjson.Method, error) {
	if pool == nil {
		return nil, fmt.Errorf("route %q names a gRPC method but the data plane has no gRPC pool", r.Name)
	}
	if prev != nil && prev.grpc != nil && prev.Upstream == up && prev.spec.GRPC != nil && prev.spec.GRPC.Method == r.GRPC.Method {
		return prev.grpc, nil
	}
	svc, _ := cfg.Service(r.Service)
	var set []byte
	if svc.GRPC != nil {
		set = svc.GRPC.DescriptorSet
	}
	return grpcjson.NewMethod(svc.Name, r.GRPC.Method, set, up, pool)
}

// routesByName indexes the routes of t (nil for a nil table).
func (t *Table) routesByName() map[string]*Route {
	if t == nil {
		return nil
	}
	m := make(map[string]*Route, len(t.routes))
	for _, r := range t.routes {
		m[r.Name] = r
	}
	return m
}

// Upstreams reports the state of every service's pool, for /status.
func (t *Table) Upstreams() []upstream.Status {
	out := make([]upstream.Status, 0, len(t.upstreams))
	for _, u := range t.upstreams {
		out = append(out, u.Status())
	}
	return out
}

// Routes returns the number of routes.
func (t *Table) Routes() int { return len(t.routes) }
