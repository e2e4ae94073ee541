// Package consulreg registers Portico processes in Consul and finds them
// there, so that data planes can locate a control plane (and operators see
// every process) without a static address list.
//
// A registration lives in the local agent, which can forget it: an agent
// restarted without its data directory (dev mode, a lost disk) comes back
// empty, and nothing that registered once at start would ever appear again,
// so a load balancer that follows Consul would find no data plane for good.
// RegisterForLife therefore keeps the registration: it asks the agent for
// the service every KeepInterval and registers again as soon as the agent
// answers that it does not know it (logged once per loss and once per
// recovery). An agent that does not answer is not a loss: it may be
// restarting, and the registration is checked again when it is back.
package consulreg

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Defaults for a Registration's zero fields.
const (
	DefaultInterval                = 5 * time.Second
	DefaultDeregisterCriticalAfter = time.Minute
	// KeepInterval is how often RegisterForLife checks that the agent
	// still knows the registration: a lost one is back within about this.
	// A local agent answers such a check in well under a millisecond.
	KeepInterval = time.Second
)

// Registration describes one Portico process to Consul.
type Registration struct {
	Name     string // "portico-controlplane" or "portico-dataplane"
	ID       string // unique per process (e.g. name + "-" + node id)
	Address  string // advertised host or IP; see AdvertiseAddr
	Port     int
	CheckURL string // HTTP health endpoint Consul polls, e.g. http://host:8081/readyz
	Tags     []string
	Meta     map[string]string
	// Interval between health checks; 0 means DefaultInterval.
	Interval time.Duration
	// DeregisterCriticalAfter removes the registration once its check has
	// been failing this long, so that a crashed process, which never
	// deregisters, disappears by itself; 0 means DefaultDeregisterCriticalAfter.
	DeregisterCriticalAfter time.Duration
}

func (r *Registration) validate() error {
	var errs []error
	if r.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if r.ID == "" {
		errs = append(errs, errors.New("id is empty"))
	}
	if r.Address == "" {
		errs = append(errs, errors.New("address is empty"))
	}
	if r.Port < 1 || r.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d is out of range", r.Port))
	}
	// Without a check Consul would report the process passing forever,
	// crashed or not.
	if r.CheckURL == "" {
		errs = append(errs, errors.New("check URL is empty"))
	}
	if r.Interval < 0 || r.DeregisterCriticalAfter < 0 {
		errs = append(errs, errors.New("negative interval or deregister delay"))
	}
	return errors.Join(errs...)
}

// Register registers r with the local agent and returns a function that
// deregisters it, for a graceful shutdown; its context bounds that call.
// Registering an ID again replaces the earlier registration and its checks.
//
// The check starts critical, as Consul's HTTP checks do: the process gets
// traffic once its health endpoint has answered, not when it registers.
func Register(ctx context.Context, c *api.Client, r Registration) (deregister func(context.Context) error, err error) {
	return register(ctx, c, r, "")
}

// register is Register with the check's initial status ("" is critical).
func register(ctx context.Context, c *api.Client, r Registration, status string) (deregister func(context.Context) error, err error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("consul registration %q: %w", r.ID, err)
	}
	interval := cmp.Or(r.Interval, DefaultInterval)
	reap := cmp.Or(r.DeregisterCriticalAfter, DefaultDeregisterCriticalAfter)
	reg := &api.AgentServiceRegistration{
		ID:      r.ID,
		Name:    r.Name,
		Address: r.Address,
		Port:    r.Port,
		Tags:    slices.Clone(r.Tags),
		Meta:    r.Meta,
		Check: &api.AgentServiceCheck{
			CheckID:                        r.ID + ":http",
			Name:                           r.Name + " health",
			HTTP:                           r.CheckURL,
			Method:                         http.MethodGet,
			Interval:                       interval.String(),
			DeregisterCriticalServiceAfter: reap.String(),
			Status:                         status,
		},
	}
	// Replacing the checks makes registration idempotent: a process
	// restarted with the same ID must not keep a stale check of its
	// predecessor.
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := c.Agent().ServiceRegisterOpts(reg, opts); err != nil {
		return nil, fmt.Errorf("consul: register %s (%s at %s): %w",
			r.ID, r.Name, net.JoinHostPort(r.Address, strconv.Itoa(r.Port)), err)
	}
	return func(ctx context.Context) error { return deregisterID(ctx, c, r.ID) }, nil
}

// ErrNoInstances is returned, wrapped, by Resolve when no instance of the
// service passes its checks.
var ErrNoInstances = errors.New("no passing instances")

// Resolve returns the base URLs ("http://addr:port") of the passing
// instances of service, in random order so that callers trying them in
// turn spread their load. None passing is an error wrapping ErrNoInstances.
func Resolve(ctx context.Context, c *api.Client, service string) ([]string, error) {
	// Stale reads let any server answer: finding a control plane should
	// not depend on Consul having a leader at that moment.
	q := (&api.QueryOptions{AllowStale: true}).WithContext(ctx)
	entries, _, err := c.Health().Service(service, "", true, q)
	if err != nil {
		return nil, fmt.Errorf("consul: resolve %s: %w", service, err)
	}
	urls := make([]string, 0, len(entries))
	for _, e := range entries {
		if addr, ok := EntryAddr(e); ok {
			urls = append(urls, "http://"+addr)
		}
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("consul: resolve %s: %w", service, ErrNoInstances)
	}
	rand.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
	return urls, nil
}

// EntryAddr returns the "host:port" an instance is reached at: the service
// address, or the node's when the service registered none. IPv6 hosts come
// back bracketed once, whether or not Consul stored them with brackets.
func EntryAddr(e *api.ServiceEntry) (string, bool) {
	if e == nil || e.Service == nil {
		return "", false
	}
	host := e.Service.Address
	if host == "" && e.Node != nil {
		host = e.Node.Address
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return net.JoinHostPort(host, strconv.Itoa(e.Service.Port)), true
}

// AdvertiseAddr turns a listen address into one that other machines can
// reach. A wildcard host (":9000", "0.0.0.0:9000", "[::]:9000") becomes the
// first non-loopback IPv4 address of this machine, or 127.0.0.1 if it has
// none; any other host is kept as given.
func AdvertiseAddr(listen string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("advertise address for %q: %w", listen, err)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		// Port 0 is refused too: the kernel's choice is unknown here.
		return "", 0, fmt.Errorf("advertise address for %q: port %q is not a number from 1 to 65535", listen, p)
	}
	if ip := net.ParseIP(h); h != "" && (ip == nil || !ip.IsUnspecified()) {
		return h, port, nil
	}
	ip, err := firstIPv4()
	if err != nil {
		return "", 0, fmt.Errorf("advertise address for %q: %w", listen, err)
	}
	return ip, port, nil
}

// firstIPv4 returns the first non-loopback IPv4 address of an interface
// that is up, in interface order, or 127.0.0.1 if there is none.
func firstIPv4() (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list network interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue // one unreadable interface should not hide the others
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			// Link-local addresses (169.254/16) are not routable beyond
			// the local segment, so peers could not use them.
			if ip4 := ipn.IP.To4(); ip4 != nil && !ip4.IsLoopback() && !ip4.IsLinkLocalUnicast() {
				return ip4.String(), nil
			}
		}
	}
	return "127.0.0.1", nil
}

// Client returns a Consul API client. addr "" takes the address, token and
// TLS settings from the standard environment (CONSUL_HTTP_ADDR,
// CONSUL_HTTP_TOKEN, CONSUL_HTTP_SSL, ...); "host:port", "http://host:port"
// or "https://host:port" overrides only the address and scheme.
func Client(addr string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if addr != "" {
		if scheme, rest, ok := strings.Cut(addr, "://"); ok {
			if scheme != "http" && scheme != "https" {
				return nil, fmt.Errorf("consul address %q: scheme must be http or https", addr)
			}
			if host, _, _ := strings.Cut(rest, "/"); host == "" {
				return nil, fmt.Errorf("consul address %q: no host", addr)
			}
			// An explicit scheme wins over CONSUL_HTTP_SSL: api.NewClient
			// would let the variable turn http:// into https.
			cfg.Scheme = scheme
		}
		// api.NewClient would take a trailing slash for a path prefix and
		// request "//v1/...".
		cfg.Address = strings.TrimSuffix(addr, "/")
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %q: %w", cfg.Address, err)
	}
	return c, nil
}

// RegisterForLife registers r, keeps it registered (see the package doc)
// until ctx ends, and returns a function to defer: it stops keeping it and
// deregisters with a short deadline of its own (the caller's context is
// usually already cancelled by then). Registration failures are logged, not
// returned: serving does not depend on being registered, and a failed first
// attempt (no agent yet) is retried like a lost registration.
func RegisterForLife(ctx context.Context, c *api.Client, r Registration, log *slog.Logger) (deregister func()) {
	return keep(ctx, c, r, log, KeepInterval)
}

func keep(ctx context.Context, c *api.Client, r Registration, log *slog.Logger, every time.Duration) func() {
	if err := r.validate(); err != nil {
		log.Error("could not register in Consul", "service", r.Name, "err", fmt.Errorf("consul registration %q: %w", r.ID, err))
		return func() {}
	}
	k := &keeper{c: c, r: r, log: log.With("service", r.Name, "id", r.ID), every: every}
	kctx, stop := context.WithCancel(ctx)
	// The first attempt is made before returning, so that a process that
	// starts with its agent up is registered when it starts serving.
	k.register(kctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.run(kctx)
	}()
	return func() {
		stop()
		<-done
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := deregisterID(dctx, c, r.ID); err != nil {
			log.Warn("could not deregister from Consul", "service", r.Name, "err", err)
		}
	}
}

// keeper re-asserts one registration. Only its own goroutine touches it.
type keeper struct {
	c     *api.Client
	r     Registration
	log   *slog.Logger
	every time.Duration

	registered bool      // the agent is known to hold the registration
	lostAt     time.Time // when a loss was noticed; zero: never registered
	failures   int       // consecutive failed attempts, for backoff and logging
}

// register tries once and reports whether the agent holds the registration.
//
// A registration that was lost comes back passing if the process's own
// health endpoint answers 200 right now: the process served all along, and
// starting critical would keep it out of every load balancer for up to a
// check interval after the agent's restart. A first registration starts
// critical, as Register's do.
func (k *keeper) register(ctx context.Context) bool {
	actx, cancel := context.WithTimeout(ctx, k.every)
	defer cancel()
	status := ""
	if !k.lostAt.IsZero() && k.healthy(actx) {
		status = api.HealthPassing
	}
	if _, err := register(actx, k.c, k.r, status); err != nil {
		k.failures++
		if k.failures == 1 && ctx.Err() == nil {
			// Once per outage: the agent may be down for a long time.
			k.log.Warn("could not register in Consul; retrying", "err", err)
		}
		return false
	}
	switch {
	case k.lostAt.IsZero() && !k.registered:
		k.log.Info("registered in Consul")
	case !k.lostAt.IsZero():
		k.log.Info("registered in Consul again", "lost_for", time.Since(k.lostAt).Round(time.Millisecond).String())
	}
	k.registered, k.lostAt, k.failures = true, time.Time{}, 0
	return true
}

// healthy asks the process's own health endpoint, as Consul's check would.
func (k *keeper) healthy(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.r.CheckURL, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (k *keeper) run(ctx context.Context) {
	for {
		// Checks are spaced by every; failed attempts back off from a tenth
		// of it, so that a registration lost to a restarting agent returns
		// as soon as the agent answers.
		wait := k.every
		if !k.registered {
			wait = min(k.every, k.every/10<<min(k.failures, 4))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if !k.registered {
			k.register(ctx)
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, k.every)
		_, _, err := k.c.Agent().Service(k.r.ID, (&api.QueryOptions{}).WithContext(qctx))
		cancel()
		var se api.StatusError
		switch {
		case err == nil || ctx.Err() != nil:
		case errors.As(err, &se) && se.Code == http.StatusNotFound:
			k.log.Warn("the Consul agent no longer knows this registration (restarted without its data?); registering again")
			k.registered, k.lostAt = false, time.Now()
			k.register(ctx)
		default:
			// Unreachable or failing agent: nothing is known to be lost.
			k.log.Debug("could not check the Consul registration", "err", err)
		}
	}
}

func deregisterID(ctx context.Context, c *api.Client, id string) error {
	err := c.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx))
	// Already gone (reaped as critical, or deregistered twice): the goal is
	// reached.
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consul: deregister %s: %w", id, err)
	}
	return nil
}
