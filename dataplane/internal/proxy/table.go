package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/dataplane/internal/cache"
	"github.com/portico-gw/portico/dataplane/internal/extauthz"
	"github.com/portico-gw/portico/dataplane/internal/grpcjson"
	"github.com/portico-gw/portico/dataplane/internal/grpcpass"
	"github.com/portico-gw/portico/dataplane/internal/ipfilter"
	"github.com/portico-gw/portico/dataplane/internal/ratelimit"
	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/throttle"
	"github.com/portico-gw/portico/dataplane/internal/transform"
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
	// consumers name the consumers verifier was built from (beside the
	// issuers), nil when one has no metadata.
	consumers []stamp
	// limiter and cache are what the table's stages decide and store in
	// (Deps), so that the next table can carry them over.
	limiter ratelimit.Limiter
	cache   *cache.Cache
	// stripped are the client headers removed from every request: every
	// route's forwarded-claim headers and more (headers.go), counted in
	// headers.
	stripped *headerSet
	headers  *headerCounts
	// sorted: routes are in strictly increasing name order (as the control
	// plane sends them), so routes are found by binary search and a Change
	// can be compiled on its own (delta.go).
	sorted bool
	// fromChange: compiled from a snapshot.Change (compileChange), not
	// from the whole snapshot.
	fromChange bool
	// global is the configuration's global section, so that the next
	// compile knows whether routes inheriting its rate limit changed
	// (incremental.go); reused and reusedRouter say what this table took
	// over from the previous one unchanged.
	global config.Global
	// globalIP is global.IP compiled once for every route's ipfilter
	// stage; carried to the next table while global.IP is unchanged.
	globalIP     *ipfilter.Rules
	reused       int
	reusedRouter bool
	// rejected lists the objects of the snapshot that could not be applied
	// (see Compile); everything else serves. rejectedRoutes are the
	// (whole) names of the routes among them.
	rejected       []config.Rejected
	rejectedRoutes []string
}

// issuer is a running JWT issuer (its JWKS refresh) and the spec it was
// built from, so an unchanged one carries over to the next table.
type issuer struct {
	spec config.Issuer
	iss  *auth.Issuer
}

// Route is a compiled route: what the handler needs before the route's
// stages, and the stages.
type Route struct {
	Name         string
	Upstream     *upstream.Upstream
	Timeout      time.Duration
	MaxBodyBytes int64
	// chain is the route's stages in the declared order (stages.go).
	chain *stage.Chain
	// preflight: the route answers CORS preflights, so a preflight matches
	// it by the method it announces.
	preflight bool
	spec      config.Route
	// version and revision are the route object's config.Meta: with its
	// dependencies they decide whether the next compile reuses this Route
	// as it is (incremental.go).
	version, revision int64
	// rejected: the route, or an object it depends on, could not be
	// applied. It keeps its place in the router and answers 503, so that
	// its requests neither reach a stale version nor fall through to a
	// broader route.
	rejected string
}

// Stages returns the route's compiled stages, in order.
func (r *Route) Stages() []stage.Stage { return r.chain.Stages() }

// Deps are the long-lived things a compiled table uses.
type Deps struct {
	Upstream upstream.Deps
	Issuer   auth.IssuerOptions
	// GRPC holds the connections of gRPC routes; needed when a route
	// names a gRPC method.
	GRPC *grpcjson.Pool
	// GRPCPass holds the HTTP/2 transports of gRPC pass-through routes;
	// nil: the process's (grpcpass.Shared).
	GRPCPass *grpcpass.Transports
	// Limiter decides rate limits; nil: the previous table's, or a new
	// in-process limiter for the first.
	Limiter ratelimit.Limiter
	// Cache holds cached responses; nil: the previous table's, or a new
	// in-memory cache of the default size (without metrics) for the
	// first.
	Cache *cache.Cache
	// ExtAuthz holds the connections to decision services and their
	// metrics; nil: extauthz.Default().
	ExtAuthz *extauthz.Client
}

// Compile turns a snapshot into a Table. It re-validates the configuration:
// a data plane never trusts that what it received is sound. An object that
// fails validation or compilation is left out and listed in Rejected, with
// every route that depends on it answering 503 (type config-rejected): one
// bad object must not keep every later change (an API-key revocation) from
// applying. Only a problem that belongs to no one object fails the whole
// snapshot. prev is the
// table in service (or nil): services whose configuration did not change
// keep their Upstream, with its breaker, budget and instance state; changed
// ones inherit the instance state.
//
// Compile is incremental (incremental.go): a route whose object version and
// dependencies did not change keeps its compiled *Route, only new and
// changed routes are validated again, and the router is kept while no
// route moved. The table equals one compiled from scratch.
func Compile(s *snapshot.Snapshot, prev *Table, deps Deps) (_ *Table, err error) {
	cfg := &s.Config
	invalid, reusable, err := validateObjects(cfg, prev)
	if err != nil {
		return nil, fmt.Errorf("compile snapshot %d: %w", s.Revision, err)
	}
	t := &Table{
		Revision:  s.Revision,
		Checksum:  s.Checksum,
		routes:    make([]*Route, len(cfg.Routes)),
		upstreams: make(map[string]*upstream.Upstream, len(cfg.Services)),
		issuers:   make(map[string]*issuer, len(cfg.Issuers)),
		sorted:    namesSorted(cfg.Routes),
	}
	defer func() {
		if err != nil {
			t.Retire(prev)
		}
	}()
	t.limiter, t.cache = deps.Limiter, deps.Cache
	if prev != nil {
		t.limiter, t.cache = cmp.Or(t.limiter, prev.limiter), cmp.Or(t.cache, prev.cache)
	}
	if t.limiter == nil {
		t.limiter = ratelimit.NewLocal(time.Now)
	}
	if t.cache == nil {
		t.cache = cache.New(cache.Options{Memory: cache.NewMemory(cache.DefaultMemoryBytes)})
	}
	deps.Limiter, deps.Cache = t.limiter, t.cache
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		if reason, bad := invalid.Services[i]; bad {
			t.reject(config.KindService, svc.Name, reason)
			continue
		}
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
			t.reject(config.KindService, svc.Name, err.Error())
			continue
		}
		t.upstreams[svc.Name] = u
	}
	for i := range cfg.Issuers {
		spec := cfg.Issuers[i]
		spec.Meta = config.Meta{}
		if reason, bad := invalid.Issuers[i]; bad {
			t.reject(config.KindIssuer, spec.Name, reason)
			continue
		}
		if prev != nil {
			if old, ok := prev.issuers[spec.Name]; ok && config.SameSpec(&old.spec, &spec) {
				t.issuers[spec.Name] = old
				continue
			}
		}
		iss, err := auth.NewIssuer(context.Background(), &spec, deps.Issuer)
		if err != nil {
			t.reject(config.KindIssuer, spec.Name, err.Error())
			continue
		}
		t.issuers[spec.Name] = &issuer{spec: spec, iss: iss}
	}
	byName := make(map[string]*auth.Issuer, len(t.issuers))
	for name, is := range t.issuers {
		byName[name] = is.iss
	}
	consumers := cfg.Consumers
	if len(invalid.Consumers) > 0 {
		// A rejected consumer's API keys authenticate no one (fail closed).
		consumers = make([]config.Consumer, 0, len(cfg.Consumers))
		for i := range cfg.Consumers {
			if reason, bad := invalid.Consumers[i]; bad {
				t.reject(config.KindConsumer, cfg.Consumers[i].Name, reason)
				continue
			}
			consumers = append(consumers, cfg.Consumers[i])
		}
	}
	t.consumers = stampsOf(consumers)
	if prev != nil && prev.verifier != nil && t.consumers != nil && slices.Equal(prev.consumers, t.consumers) && maps.Equal(prev.issuers, t.issuers) {
		// Nothing the verifier is built from changed: the table keeps it
		// (with the tokens it verified), and so may the auth stages of the
		// routes it carries over, which hold it.
		t.verifier = prev.verifier
	} else {
		t.verifier = auth.NewVerifier(byName, consumers)
	}

	prevRoutes := prev.routeLookup()
	reuse := t.reuser(prev, reusable, cfg)
	for i := range cfg.Routes {
		r := cfg.Routes[i]
		if old := reuse.route(i, r, invalid.Routes[i]); old != nil {
			t.routes[i] = old
			continue
		}
		if reason := t.routeRejection(r, invalid.Routes[i]); reason != "" {
			t.reject(config.KindRoute, r.Name, reason)
			rt := &Route{Name: r.Name, spec: *r, rejected: reason, MaxBodyBytes: config.DefaultMaxBodyBytes}
			rt.spec.Meta = config.Meta{}
			t.routes[i] = rt
			continue
		}
		t.routes[i] = t.compileRoute(cfg, r, prevRoutes(r.Name), &deps)
	}
	if t.router, err = t.matcher(prev); err != nil {
		return nil, fmt.Errorf("compile snapshot %d routes: %w", s.Revision, err)
	}
	// Counted after the router, which may leave a route out.
	t.headers = countHeaders(t.routes)
	t.stripped = t.headers.stripped()
	return t, nil
}

// stamp identifies one version of a configuration object: the control
// plane moves an object's version and revision on every change.
type stamp struct {
	name              string
	version, revision int64
}

// stampsOf returns the stamps of cs, or nil when one has no metadata
// (hand-written snapshots): such objects cannot be told unchanged.
func stampsOf(cs []config.Consumer) []stamp {
	out := make([]stamp, len(cs))
	for i := range cs {
		c := &cs[i]
		if c.Meta.Revision == 0 {
			return nil
		}
		out[i] = stamp{c.Name, c.Meta.Version, c.Meta.Revision}
	}
	return out
}

// routeCompiler is what compiling one route's stages needs (stages.go).
type routeCompiler struct {
	t    *Table
	cfg  *config.Config
	deps *Deps
	rt   *Route
	prev *Route // the route of that name in the previous table, or nil
	grpc stage.Stage
}

// compileRoute compiles route r, which depends on nothing rejected.
func (t *Table) compileRoute(cfg *config.Config, r *config.Route, prev *Route, deps *Deps) *Route {
	rt := &Route{
		Name:         r.Name,
		Upstream:     t.upstreams[r.Service],
		Timeout:      cmp.Or(r.Timeout.Std(), config.DefaultRouteTimeout),
		MaxBodyBytes: cmp.Or(r.MaxBodyBytes, config.DefaultMaxBodyBytes),
		spec:         *r,
		version:      r.Meta.Version,
		revision:     r.Meta.Revision,
	}
	rt.spec.Meta = config.Meta{}
	c := &routeCompiler{t: t, cfg: cfg, deps: deps, rt: rt, prev: prev}
	if r.GRPC != nil {
		m, err := compileGRPC(cfg, r, rt.Upstream, prev, deps.GRPC)
		if err != nil {
			rt.rejected = err.Error()
			t.reject(config.KindRoute, r.Name, rt.rejected)
		} else {
			c.grpc = grpcjson.NewRoute(m, rt.Timeout)
		}
	}
	rt.chain = c.stages(r)
	if resp, ok := stage.Find[*transform.Response](rt.chain); ok {
		rt.preflight = resp.AnswersPreflight()
	}
	return rt
}

// rateLimit is the route's rate limit: its own, or the global default.
func (c *routeCompiler) rateLimit(r *config.Route) *config.RateLimit {
	if r.RateLimit != nil {
		return r.RateLimit
	}
	return c.cfg.Global.RateLimit
}

// prevThrottle is the previous table's throttle of the route: the
// in-flight cap counts requests across revisions, so a new table must not
// open a fresh set of slots while old requests still hold theirs.
func (c *routeCompiler) prevThrottle() *throttle.Route {
	if c.prev == nil {
		return nil
	}
	th, _ := stage.Find[*throttle.Route](c.prev.chain)
	return th
}

// reject records an object that could not be applied.
func (t *Table) reject(kind config.Kind, name, reason string) {
	t.rejected = append(t.rejected, config.NewRejected(kind, name, reason))
	if kind == config.KindRoute {
		t.rejectedRoutes = append(t.rejectedRoutes, name)
	}
}

// Rejected lists the objects of the snapshot that could not be applied, in
// the order of the configuration (services, issuers, consumers, routes).
func (t *Table) Rejected() []config.Rejected { return t.rejected }

// routeRejection says why route r cannot serve: its own validation failure
// (invalid), or a service or issuer it depends on that was rejected.
func (t *Table) routeRejection(r *config.Route, invalid string) string {
	switch {
	case invalid != "":
		return invalid
	case r.Service != "" && t.upstreams[r.Service] == nil:
		return fmt.Sprintf("service %q was rejected", r.Service)
	}
	for _, b := range r.Aggregate {
		if t.upstreams[b.Service] == nil {
			return fmt.Sprintf("service %q was rejected", b.Service)
		}
	}
	for _, b := range r.Split {
		if t.upstreams[b.Service] == nil {
			return fmt.Sprintf("service %q was rejected", b.Service)
		}
	}
	if r.Auth != nil {
		for _, name := range r.Auth.Issuers {
			if t.issuers[name] == nil {
				return fmt.Sprintf("issuer %q was rejected", name)
			}
		}
	}
	return ""
}

// compileRouter builds the matcher. A route whose own match rule cannot be
// compiled (only a rejected one can get this far with a bad rule) is left
// out of the router: its requests get the 404 of no route, which is the
// most that can be said about requests no rule describes.
func (t *Table) compileRouter(rules []router.Rule) (*router.Table, error) {
	for range len(rules) + 1 {
		rt, err := router.Compile(rules)
		var ce *router.CompileError
		if err == nil || !errors.As(err, &ce) || ce.Rule < 0 || ce.Rule >= len(rules) {
			return rt, err
		}
		// The route leaves this table; it may still serve in the previous
		// one (an incremental compile reuses Routes), so it is not marked.
		if r := t.routes[ce.Rule]; r.rejected == "" {
			t.reject(config.KindRoute, r.Name, err.Error())
		}
		rules = slices.Delete(rules, ce.Rule, ce.Rule+1)
		t.routes = slices.Delete(t.routes, ce.Rule, ce.Rule+1)
	}
	return nil, errors.New("router: no progress")
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
	if prev != nil && prev.Upstream == up && prev.spec.GRPC != nil && prev.spec.GRPC.Method == r.GRPC.Method {
		if g, ok := stage.Find[*grpcjson.Route](prev.chain); ok {
			return g.Method(), nil
		}
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

// service names the route's service for metrics and logs; an aggregating
// route has several.
func (r *Route) service() string {
	if r.Upstream != nil {
		return r.Upstream.Name
	}
	if len(r.spec.Split) > 0 {
		return "split" // the forward stage names the one chosen
	}
	return "aggregate"
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
