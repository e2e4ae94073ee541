// Package upstream is everything between a matched route and the bytes on an
// upstream connection: the live instance pool of a service (static targets
// or Consul discovery), load balancing, retries on another instance under a
// retry budget, passive outlier ejection, the circuit breaker and active
// health checks.
//
// Every way of calling a service goes through one call path, Call (see
// call.go): the reverse proxy and aggregation through Transport, which
// supplies the HTTP attempt, JSON→gRPC with an attempt of its own. So the
// service's retries, budget, breaker and outlier detection mean the same
// on every route.
//
// An Upstream is compiled from one service's configuration. When a new
// configuration revision leaves a service unchanged, the new table keeps the
// same Upstream, so breaker state, retry budget and ejections carry over;
// when it changes, the new Upstream still reuses the per-instance state
// (in-flight counts, ejections) of instances it keeps.
package upstream

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/portico-gw/portico/dataplane/internal/balancer"
	"github.com/portico-gw/portico/dataplane/internal/discovery"
	"github.com/portico-gw/portico/shared/config"
)

// Watcher is the part of the discovery watcher an Upstream needs.
type Watcher interface {
	Watch(src discovery.Source, onChange func([]discovery.Instance)) (cancel func())
}

// Deps are the long-lived things Upstreams share.
type Deps struct {
	// Watcher is nil when no Consul is configured; a Consul-backed service
	// then has no instances and answers 503.
	Watcher Watcher
	Log     *slog.Logger
	Metrics *Metrics
	// Prober sends active health checks; nil uses a default client.
	Prober Prober
	// Now is the clock (tests replace it).
	Now func() time.Time
	// ClientIP resolves the client address for consistent_hash on
	// client_ip (X-Forwarded-For from trusted proxies); nil: the TCP peer.
	ClientIP func(*http.Request) string
}

// Upstream is a compiled service with its live state.
type Upstream struct {
	Name           string
	Spec           config.Service // as compiled, metadata cleared
	ConnectTimeout time.Duration
	AttemptTimeout time.Duration

	policy  balancer.Policy
	retry   retryPolicy
	budget  *retryBudget
	outlier outlierPolicy
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
	// breakerDesc is the effective breaker policy, for Report.
	breakerDesc string
	deps        Deps
	metrics     serviceMetrics
	// tls is the client configuration toward https instances (ClientTLS),
	// tlsRT the transport that uses it (tlsconfig.go); nil without TLS.
	tls   *tls.Config
	tlsRT *tlsTransport

	view atomic.Pointer[view]
	// mu guards members and rebuilding the view (discovery callbacks and
	// health checks), never the request path.
	mu      sync.Mutex
	members map[string]*Member

	stop   context.CancelFunc
	done   chan struct{}
	cancel func() // discovery subscription
	// retired is closed when no table uses this Upstream any more.
	retired atomic.Bool
}

// Member is one instance with the per-instance state that survives set
// rebuilds.
type Member struct {
	EP       *balancer.Endpoint
	Scheme   string
	Host     string // host:port, as dialled
	BasePath string // target path prefix, no trailing slash

	consecutive atomic.Int32 // consecutive failures, for ejection
	ejections   atomic.Int32 // ejections since the last recovery
	// active health-check streaks
	okStreak, failStreak int
}

// view is what requests see: the balancer set and who its endpoints are.
type view struct {
	set     *balancer.Set
	members map[*balancer.Endpoint]*Member
	// known is false for a Consul service that has not been answered yet.
	known bool
}

// Build compiles svc. prev, when not nil, is the Upstream the previous
// table had under the same name: its per-instance state is reused. Build
// starts no goroutine; Start does, once the table is in service.
func Build(svc *config.Service, prev *Upstream, deps Deps) (*Upstream, error) {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	spec := *svc
	spec.Meta = config.Meta{}
	u := &Upstream{
		Name:           svc.Name,
		Spec:           spec,
		ConnectTimeout: cmp.Or(svc.ConnectTimeout.Std(), config.DefaultConnectTimeout),
		AttemptTimeout: svc.Timeout.Std(),
		policy:         balancer.Policy{Kind: svc.LoadBalancer, HashOn: svc.HashOn, ClientIP: deps.ClientIP},
		retry:          newRetryPolicy(svc.Retries),
		outlier:        newOutlierPolicy(svc.OutlierDetection),
		deps:           deps,
		members:        map[string]*Member{},
	}
	tlsConf, err := ClientTLS(svc)
	if err != nil {
		return nil, err
	}
	if tlsConf != nil {
		u.tls, u.tlsRT = tlsConf, &tlsTransport{}
		// An unchanged tls block keeps the service's connections.
		if prev != nil && prev.tlsRT != nil && sameTLS(prev.Spec.TLS, svc.TLS) {
			u.tls, u.tlsRT = prev.tls, prev.tlsRT
			prev.tlsRT.adopted.Store(true)
		}
	}
	u.budget = newRetryBudget(u.retry, deps.Now)
	u.metrics = deps.Metrics.forService(svc.Name)
	u.breaker, u.breakerDesc = newBreaker(svc.Name, svc.CircuitBreaker, deps.Metrics)
	if prev != nil {
		prev.mu.Lock()
		for k, m := range prev.members {
			u.members[k] = m
		}
		prev.mu.Unlock()
	}
	if svc.Consul != nil {
		u.view.Store(&view{set: balancer.NewSet(nil, u.policy)})
		return u, nil
	}
	ms := make([]*Member, 0, len(svc.Targets))
	for i, t := range svc.Targets {
		m, err := u.staticMember(t)
		if err != nil {
			return nil, fmt.Errorf("service %q targets[%d]: %w", svc.Name, i, err)
		}
		ms = append(ms, m)
	}
	u.setMembers(ms, true)
	return u, nil
}

// Reusable reports whether prev can serve svc unchanged.
func Reusable(prev *Upstream, svc *config.Service) bool {
	if prev == nil || prev.retired.Load() {
		return false
	}
	spec := *svc
	spec.Meta = config.Meta{}
	return config.SameSpec(&prev.Spec, &spec)
}

func (u *Upstream) staticMember(t config.Target) (*Member, error) {
	parsed, err := url.Parse(t.URL)
	if err != nil {
		return nil, err
	}
	host := parsed.Host
	if parsed.Port() == "" {
		port := "80"
		if parsed.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(parsed.Hostname(), port)
	}
	base := strings.TrimRight(parsed.Path, "/")
	key := parsed.Scheme + "://" + host + base
	weight := max(t.Weight, 1)
	return u.member(key, parsed.Scheme, host, base, weight), nil
}

// member returns the member for key, reusing live state when the instance
// was already known; a changed weight makes a new endpoint (weights are part
// of the balancer's precomputed data).
func (u *Upstream) member(key, scheme, host, base string, weight int) *Member {
	u.mu.Lock()
	defer u.mu.Unlock()
	if m, ok := u.members[key]; ok && m.EP.Weight == weight {
		return m
	}
	m := &Member{EP: balancer.NewEndpoint(host, weight), Scheme: scheme, Host: host, BasePath: base}
	u.members[key] = m
	return m
}

func (u *Upstream) setMembers(ms []*Member, known bool) {
	eps := make([]*balancer.Endpoint, len(ms))
	byEP := make(map[*balancer.Endpoint]*Member, len(ms))
	keep := make(map[string]bool, len(ms))
	for i, m := range ms {
		eps[i] = m.EP
		byEP[m.EP] = m
		keep[m.Scheme+"://"+m.Host+m.BasePath] = true
	}
	u.mu.Lock()
	for k := range u.members {
		if !keep[k] {
			delete(u.members, k)
		}
	}
	u.mu.Unlock()
	u.view.Store(&view{set: balancer.NewSet(eps, u.policy), members: byEP, known: known})
	if u.deps.Metrics != nil {
		u.deps.Metrics.endpoints.WithLabelValues(u.Name).Set(float64(len(eps)))
	}
}

// onInstances is the discovery callback: rebuild the pool from Consul's
// passing instances.
func (u *Upstream) onInstances(insts []discovery.Instance) {
	if u.retired.Load() {
		return
	}
	scheme := u.Spec.Consul.Scheme
	if scheme == "" {
		scheme = "http"
	}
	ms := make([]*Member, 0, len(insts))
	seen := make(map[string]bool, len(insts))
	for _, in := range insts {
		// Two registrations of one host:port are one instance, not double
		// weight.
		if seen[in.Addr] {
			continue
		}
		seen[in.Addr] = true
		w := 1
		if u.policy.Kind == config.LBWeighted || u.policy.Kind == config.LBLeastRequest {
			w = max(in.Weight, 1)
		}
		ms = append(ms, u.member(scheme+"://"+in.Addr, scheme, in.Addr, "", w))
	}
	slices.SortFunc(ms, func(a, b *Member) int { return strings.Compare(a.Host, b.Host) })
	u.setMembers(ms, true)
}

// Start brings the Upstream into service: the discovery subscription and
// active health checks. It is called once the table holding it is live.
//
// Start it before the table goes live: a Consul source already known to the
// watcher then fills the pool at once, so the swap never serves an empty one.
func (u *Upstream) Start() {
	u.mu.Lock()
	if u.stop != nil || u.retired.Load() {
		u.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.stop, u.done = cancel, make(chan struct{})
	u.mu.Unlock()
	if u.Spec.HealthCheck != nil {
		go u.healthLoop(ctx)
	} else {
		close(u.done)
	}
	// Watch may call back synchronously, and the callback takes u.mu.
	if c := u.Spec.Consul; c != nil && u.deps.Watcher != nil {
		unsub := u.deps.Watcher.Watch(discovery.Source{Service: c.Service, Tags: c.Tags, Datacenter: c.Datacenter}, u.onInstances)
		u.mu.Lock()
		u.cancel = unsub
		u.mu.Unlock()
		if u.retired.Load() {
			unsub()
		}
	}
}

// Retire stops the Upstream's background work; requests still holding it
// finish on its last endpoint set.
func (u *Upstream) Retire() {
	if u.retired.Swap(true) {
		return
	}
	u.mu.Lock()
	stop, done, cancel := u.stop, u.done, u.cancel
	u.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if stop != nil {
		stop()
		<-done
	}
	if u.tlsRT != nil {
		u.tlsRT.close()
	}
}

// sameTLS compares two tls blocks.
func sameTLS(a, b *config.ServiceTLS) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Status describes the pool for /status.
type Status struct {
	Service   string `json:"service"`
	Source    string `json:"source"` // "static" or "consul:<service>"
	Endpoints int    `json:"endpoints"`
	Available int    `json:"available"`
	Breaker   string `json:"circuit_breaker"`
}

// Status reports the pool's current state.
func (u *Upstream) Status() Status {
	v := u.view.Load()
	now := u.deps.Now().UnixNano()
	st := Status{Service: u.Name, Source: "static", Endpoints: v.set.Len(), Breaker: "disabled"}
	if u.Spec.Consul != nil {
		st.Source = "consul:" + u.Spec.Consul.Service
	}
	for _, ep := range v.set.Endpoints() {
		if ep.Available(now) {
			st.Available++
		}
	}
	if u.breaker != nil {
		st.Breaker = u.breaker.State().String()
	}
	return st
}

func itoa(n int) string { return strconv.Itoa(n) }

// Report is the compiled policy of an Upstream as data, for golden files and
// debugging: what the configuration resolved to, defaults included.
type Report struct {
	LoadBalancer   string   `json:"load_balancer"`
	HashOn         string   `json:"hash_on,omitempty"`
	Source         string   `json:"source"`
	Endpoints      []string `json:"endpoints"`
	ConnectTimeout string   `json:"connect_timeout"`
	AttemptTimeout string   `json:"attempt_timeout"`
	Retries        string   `json:"retries"`
	Outlier        string   `json:"outlier_detection"`
	Breaker        string   `json:"circuit_breaker"`
	HealthCheck    string   `json:"health_check,omitempty"`
}

// Report describes the Upstream.
func (u *Upstream) Report() Report {
	r := Report{
		LoadBalancer:   cmp.Or(u.policy.Kind, config.LBRoundRobin),
		HashOn:         u.policy.HashOn,
		Source:         u.Status().Source,
		ConnectTimeout: u.ConnectTimeout.String(),
		AttemptTimeout: u.AttemptTimeout.String(),
		Retries: fmt.Sprintf("attempts=%d budget=%d%% min=%d/s", u.retry.attempts,
			u.retry.budgetPercent, u.retry.minPerSecond),
		Outlier: "disabled",
		Breaker: u.breakerDesc,
	}
	for s := 500; s < 600; s++ {
		if u.retry.onStatus[s] {
			r.Retries += " on=" + itoa(s)
		}
	}
	v := u.view.Load()
	for _, ep := range v.set.Endpoints() {
		m := v.members[ep]
		r.Endpoints = append(r.Endpoints, fmt.Sprintf("%s://%s%s weight=%d", m.Scheme, m.Host, m.BasePath, ep.Weight))
	}
	if o := u.outlier; o.enabled {
		r.Outlier = fmt.Sprintf("after=%d base=%s max=%s max_ejected=%d%%", o.consecutive, o.base, o.max, o.maxPercent)
	}
	if hc := u.Spec.HealthCheck; hc != nil {
		r.HealthCheck = fmt.Sprintf("GET %s every %s", hc.Path, cmp.Or(hc.Interval.Std(), config.DefaultHealthInterval))
	}
	return r
}
