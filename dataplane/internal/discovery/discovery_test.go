package discovery

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portico-gw/portico/shared/testutil"
)

// shared is one agent for the tests that do not stop it; each test uses its
// own service names, so they do not see each other's instances.
var shared *testutil.Consul

func TestMain(m *testing.M) { testutil.MainWithConsul(m, &shared) }

// deliveryTimeout is how long a change in Consul may take to reach a
// subscriber; blocking queries should make it a few milliseconds.
const deliveryTimeout = 2 * time.Second

func newClient(t *testing.T, c *testutil.Consul) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), substr)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newWatcher returns a Watcher whose log goes to the test output (and to the
// returned buffer) and that is closed when the test ends.
func newWatcher(t *testing.T, c *testutil.Consul, reg prometheus.Registerer, opts ...Option) (*Watcher, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := NewWatcher(newClient(t, c), log, reg, opts...)
	t.Cleanup(w.Close)
	return w, logs
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type instanceSpec struct {
	id, name, address string
	port              int
	tags              []string
	weight            int
}

func checkID(serviceID string) string { return serviceID + ":ttl" }

// register adds an instance to the agent with a passing TTL check, so that
// the test decides when it turns critical.
func register(t *testing.T, client *api.Client, s instanceSpec) {
	t.Helper()
	reg := &api.AgentServiceRegistration{
		ID: s.id, Name: s.name, Address: s.address, Port: s.port, Tags: s.tags,
		Check: &api.AgentServiceCheck{CheckID: checkID(s.id), TTL: "10m", Status: api.HealthPassing},
	}
	if s.weight > 0 {
		reg.Weights = &api.AgentWeights{Passing: s.weight, Warning: 1}
	}
	if err := client.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("register %s: %v", s.id, err)
	}
	// The shared agent outlives the test (and -count=N repeats it).
	t.Cleanup(func() {
		err := client.Agent().ServiceDeregister(s.id)
		var se api.StatusError
		if err != nil && !(errors.As(err, &se) && se.Code == http.StatusNotFound) {
			t.Errorf("cleanup: deregister %s: %v", s.id, err)
		}
	})
}

func deregister(t *testing.T, client *api.Client, id string) {
	t.Helper()
	if err := client.Agent().ServiceDeregister(id); err != nil {
		t.Fatalf("deregister %s: %v", id, err)
	}
}

type delivery struct {
	insts []Instance
	at    time.Time
}

// recorder collects onChange calls. It fails the test on a delivery equal to
// the previous one: subscribers must hear only about changes.
type recorder struct {
	t  *testing.T
	ch chan delivery

	mu    sync.Mutex
	last  []Instance
	n     int
	dup   bool
	empty bool // an empty list was delivered
}

func newRecorder(t *testing.T) *recorder {
	return &recorder{t: t, ch: make(chan delivery, 100)}
}

func (r *recorder) onChange(insts []Instance) {
	r.mu.Lock()
	if r.n > 0 && slices.Equal(insts, r.last) {
		r.dup = true
	}
	r.last, r.n = insts, r.n+1
	r.empty = r.empty || len(insts) == 0
	r.mu.Unlock()
	select {
	case r.ch <- delivery{insts: insts, at: time.Now()}:
	default:
		// Never block the watch goroutine; a lost delivery shows as a
		// timeout in the test.
	}
}

func (r *recorder) checkNoDuplicates() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dup {
		r.t.Error("onChange was called with an unchanged instance list")
	}
}

// next returns the next delivery, failing the test after timeout.
func (r *recorder) next(timeout time.Duration) delivery {
	r.t.Helper()
	select {
	case d := <-r.ch:
		return d
	case <-time.After(timeout):
		r.t.Fatalf("no onChange call within %v", timeout)
		return delivery{}
	}
}

// await reads deliveries until one has exactly the instance IDs want.
func (r *recorder) await(timeout time.Duration, want ...string) delivery {
	r.t.Helper()
	deadline := time.After(timeout)
	var got [][]string
	for {
		select {
		case d := <-r.ch:
			ids := ids(d.insts)
			if slices.Equal(ids, want) {
				return d
			}
			got = append(got, ids)
		case <-deadline:
			r.t.Fatalf("no delivery of %v within %v; got %v", want, timeout, got)
			return delivery{}
		}
	}
}

// quiet fails the test if anything was delivered and not read yet.
func (r *recorder) quiet() {
	r.t.Helper()
	select {
	case d := <-r.ch:
		r.t.Fatalf("unexpected delivery %v", d.insts)
	default:
	}
}

func ids(insts []Instance) []string {
	out := make([]string, len(insts))
	for i, in := range insts {
		out[i] = in.ID
	}
	return out
}

func TestDeliversRegisterDeregisterAndCritical(t *testing.T) {
	client := newClient(t, shared)
	w, _ := newWatcher(t, shared, nil, WithWaitTime(2*time.Second))
	rec := newRecorder(t)
	cancel := w.Watch(Source{Service: "web"}, rec.onChange)
	defer cancel()

	// An unknown service is a known, empty list.
	if d := rec.next(deliveryTimeout); len(d.insts) != 0 {
		t.Fatalf("first delivery = %v, want empty", d.insts)
	}

	start := time.Now()
	register(t, client, instanceSpec{id: "web-1", name: "web", address: "10.0.0.1", port: 8080, weight: 3})
	d := rec.await(deliveryTimeout, "web-1")
	t.Logf("register delivered after %v", d.at.Sub(start))
	if want := (Instance{ID: "web-1", Addr: "10.0.0.1:8080", Weight: 3}); d.insts[0] != want {
		t.Errorf("instance = %+v, want %+v", d.insts[0], want)
	}

	// No service address: the node's (the agent advertises 127.0.0.1);
	// IPv6 addresses are bracketed; the weight defaults to 1.
	register(t, client, instanceSpec{id: "web-2", name: "web", port: 8081})
	register(t, client, instanceSpec{id: "web-3", name: "web", address: "::1", port: 8082})
	d = rec.await(deliveryTimeout, "web-1", "web-2", "web-3")
	want := []Instance{
		{ID: "web-1", Addr: "10.0.0.1:8080", Weight: 3},
		{ID: "web-2", Addr: "127.0.0.1:8081", Weight: 1},
		{ID: "web-3", Addr: "[::1]:8082", Weight: 1},
	}
	if !slices.Equal(d.insts, want) {
		t.Errorf("instances = %+v, want %+v", d.insts, want)
	}

	start = time.Now()
	if err := client.Agent().UpdateTTL(checkID("web-2"), "failing on purpose", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	d = rec.await(deliveryTimeout, "web-1", "web-3")
	t.Logf("critical check delivered after %v", d.at.Sub(start))

	start = time.Now()
	deregister(t, client, "web-1")
	d = rec.await(deliveryTimeout, "web-3")
	t.Logf("deregister delivered after %v", d.at.Sub(start))

	// A passing check brings the instance back.
	if err := client.Agent().UpdateTTL(checkID("web-2"), "", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	rec.await(deliveryTimeout, "web-2", "web-3")

	st := w.Status()
	if len(st) != 1 || st[0].Source != "web" || !st[0].Known || !st[0].Healthy || st[0].Instances != 2 ||
		st[0].LastError != "" || st[0].LastChange.IsZero() || st[0].LastSuccess.IsZero() {
		t.Errorf("status = %+v", st)
	}
	rec.checkNoDuplicates()
}

func TestNoDeliveryWithoutChange(t *testing.T) {
	client := newClient(t, shared)
	// A short wait, so that blocking queries time out (unchanged) several
	// times during the test.
	w, _ := newWatcher(t, shared, nil, WithWaitTime(100*time.Millisecond))
	register(t, client, instanceSpec{id: "calm-1", name: "calm", port: 1})
	rec := newRecorder(t)
	defer w.Watch(Source{Service: "calm"}, rec.onChange)()
	rec.await(deliveryTimeout, "calm-1")

	// Unrelated writes wake the blocking query too (a changed index, not a
	// changed list).
	register(t, client, instanceSpec{id: "noise-1", name: "noise", port: 1})
	deregister(t, client, "noise-1")
	after := time.Now().Add(500 * time.Millisecond)
	testutil.Eventually(t, 5*time.Second, func() bool {
		st := w.Status()
		return len(st) == 1 && st[0].LastSuccess.After(after)
	}, "queries answered for 500ms")
	rec.quiet()
	rec.checkNoDuplicates()
	if st := w.Status(); st[0].Instances != 1 || !st[0].Healthy {
		t.Errorf("status = %+v", st[0])
	}
}

func TestTagsFilter(t *testing.T) {
	client := newClient(t, shared)
	w, _ := newWatcher(t, shared, nil)
	register(t, client, instanceSpec{id: "api-a", name: "api", port: 1, tags: []string{"primary", "v2"}})
	register(t, client, instanceSpec{id: "api-b", name: "api", port: 2, tags: []string{"primary"}})
	register(t, client, instanceSpec{id: "api-c", name: "api", port: 3, tags: []string{"v2", "canary"}})

	for _, tc := range []struct {
		tags []string
		want []string
	}{
		{nil, []string{"api-a", "api-b", "api-c"}},
		{[]string{"primary"}, []string{"api-a", "api-b"}},
		{[]string{"v2", "primary"}, []string{"api-a"}},
		{[]string{"v2", "canary", "v2"}, []string{"api-c"}},
		{[]string{"primary", "canary"}, []string{}},
	} {
		rec := newRecorder(t)
		cancel := w.Watch(Source{Service: "api", Tags: tc.tags}, rec.onChange)
		if got := ids(rec.next(deliveryTimeout).insts); !slices.Equal(got, tc.want) {
			t.Errorf("tags %v: instances %v, want %v", tc.tags, got, tc.want)
		}
		cancel()
	}

	// A tag added to an instance brings it into the filtered set.
	rec := newRecorder(t)
	defer w.Watch(Source{Service: "api", Tags: []string{"canary"}}, rec.onChange)()
	rec.await(deliveryTimeout, "api-c")
	register(t, client, instanceSpec{id: "api-b", name: "api", port: 2, tags: []string{"primary", "canary"}})
	rec.await(deliveryTimeout, "api-b", "api-c")
}

func TestSubscribersShareOneWatch(t *testing.T) {
	client := newClient(t, shared)
	w, _ := newWatcher(t, shared, nil)
	register(t, client, instanceSpec{id: "shop-1", name: "shop", port: 1, tags: []string{"a", "b"}})

	r1, r2 := newRecorder(t), newRecorder(t)
	cancel1 := w.Watch(Source{Service: "shop", Tags: []string{"a", "b"}}, r1.onChange)
	defer cancel1()
	r1.await(deliveryTimeout, "shop-1")
	// Same source, tags in another order: the same watch, and the list is
	// already known, so it arrives without a query.
	cancel2 := w.Watch(Source{Service: "shop", Tags: []string{"b", "a"}}, r2.onChange)
	defer cancel2()
	r2.await(deliveryTimeout, "shop-1")

	w.mu.Lock()
	n := len(w.watches)
	w.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d watches for one source, want 1", n)
	}

	register(t, client, instanceSpec{id: "shop-2", name: "shop", port: 2, tags: []string{"a", "b"}})
	r1.await(deliveryTimeout, "shop-1", "shop-2")
	r2.await(deliveryTimeout, "shop-1", "shop-2")

	// One subscriber leaving does not stop the watch for the other.
	cancel1()
	deregister(t, client, "shop-1")
	r2.await(deliveryTimeout, "shop-2")
	r1.quiet()
	r1.checkNoDuplicates()
	r2.checkNoDuplicates()
}

func TestCancelFromOnChange(t *testing.T) {
	w, _ := newWatcher(t, shared, nil)
	called := make(chan struct{}, 10)
	var cancel func()
	ready := make(chan struct{})
	cancel = w.Watch(Source{Service: "self-cancel"}, func([]Instance) {
		<-ready
		cancel()
		called <- struct{}{}
	})
	close(ready)
	select {
	case <-called:
	case <-time.After(deliveryTimeout):
		t.Fatal("no onChange call")
	}
	w.mu.Lock()
	n := len(w.watches)
	w.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d watches after the only subscriber cancelled itself", n)
	}
}

func TestCancelOfLastSubscriberStopsWatch(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	// The default 30s wait: stopping must abort the blocking query in
	// flight, not wait for it to time out.
	w, _ := newWatcher(t, shared, reg)
	src := Source{Service: "gone", Tags: []string{"x"}}
	r1, r2 := newRecorder(t), newRecorder(t)
	cancel1 := w.Watch(src, r1.onChange)
	cancel2 := w.Watch(src, r2.onChange)
	r1.next(deliveryTimeout)
	r2.next(deliveryTimeout)
	if n := promtest.CollectAndCount(reg); n != 3 {
		t.Errorf("%d series while watching, want 3", n)
	}

	w.mu.Lock()
	ws := w.watches[src.Key()]
	w.mu.Unlock()

	cancel1()
	cancel1() // idempotent
	select {
	case <-ws.done:
		t.Fatal("watch stopped while it still had a subscriber")
	default:
	}
	cancel2()
	select {
	case <-ws.done:
	case <-time.After(time.Second):
		t.Fatal("watch goroutines still running 1s after the last cancel")
	}
	if st := w.Status(); len(st) != 0 {
		t.Errorf("status after cancel = %+v, want none", st)
	}
	if n := promtest.CollectAndCount(reg); n != 0 {
		t.Errorf("%d series left after the watch stopped, want 0", n)
	}

	// Watching again starts a new watch.
	r3 := newRecorder(t)
	w.Watch(src, r3.onChange)
	r3.next(deliveryTimeout)

	closed := make(chan struct{})
	go func() { w.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(time.Second):
		t.Fatal("Close did not return within 1s")
	}
	// After Close, Watch is inert.
	w.Watch(src, r3.onChange)()
	if st := w.Status(); len(st) != 0 {
		t.Errorf("status after Close = %+v, want none", st)
	}
}

func TestConsulOutage(t *testing.T) {
	c := testutil.StartConsul(t) // its own agent: this test stops it
	client := newClient(t, c)
	reg := prometheus.NewPedanticRegistry()
	w, logs := newWatcher(t, c, reg)
	register(t, client, instanceSpec{id: "pay-1", name: "pay", port: 1})
	// The agent persists a TTL check's status only once it has been
	// updated; without this, the restarted agent reports pay-1 critical
	// (correctly: nobody has vouched for it since) and the test would see
	// it go.
	if err := client.Agent().UpdateTTL(checkID("pay-1"), "", api.HealthPassing); err != nil {
		t.Fatal(err)
	}

	src := Source{Service: "pay"}
	rec := newRecorder(t)
	defer w.Watch(src, rec.onChange)()
	rec.await(deliveryTimeout, "pay-1")

	c.Stop()
	failures := func() float64 {
		return promtest.ToFloat64(w.metrics.errors.WithLabelValues(src.Key()))
	}
	// Several retries, so that a delivery or a log line per retry would show.
	testutil.Eventually(t, 10*time.Second, func() bool { return failures() >= 4 }, "at least 4 failed queries")
	st := w.Status()
	if len(st) != 1 || st[0].Healthy || st[0].LastError == "" || !st[0].Known || st[0].Instances != 1 {
		t.Fatalf("status during outage = %+v", st)
	}
	t.Logf("status during outage: %+v", st[0])
	if up := promtest.ToFloat64(w.metrics.up.WithLabelValues(src.Key())); up != 0 {
		t.Errorf("consul_up = %v during outage", up)
	}
	if got := promtest.ToFloat64(w.metrics.instances.WithLabelValues(src.Key())); got != 1 {
		t.Errorf("instances gauge = %v during outage, want the last known 1", got)
	}
	rec.quiet() // in particular, no empty list
	if n := logs.count("consul discovery query failed; keeping"); n != 1 {
		t.Errorf("%d outage warnings after %v failures, want 1", n, failures())
	}

	c.Restart()
	testutil.Eventually(t, 15*time.Second, func() bool {
		st := w.Status()
		return len(st) == 1 && st[0].Healthy
	}, "status healthy again after restart")
	if st := w.Status(); st[0].LastError != "" {
		t.Errorf("last_error = %q after recovery", st[0].LastError)
	}
	if n := logs.count("consul discovery query succeeded again"); n != 1 {
		t.Errorf("%d recovery lines, want 1", n)
	}
	rec.quiet()

	start := time.Now()
	register(t, client, instanceSpec{id: "pay-2", name: "pay", port: 2})
	d := rec.await(deliveryTimeout, "pay-1", "pay-2")
	t.Logf("register after restart delivered after %v", d.at.Sub(start))
	if up := promtest.ToFloat64(w.metrics.up.WithLabelValues(src.Key())); up != 1 {
		t.Errorf("consul_up = %v after recovery", up)
	}
	rec.checkNoDuplicates()
}

// TestConsulRestartedEmpty: an agent restarted without its data answers
// an empty list until the instances register again (within seconds, as
// consulreg does). That answer used to be delivered, and every route to the
// service answered 503 meanwhile; the last known instances must stay until
// the instances are back.
func TestConsulRestartedEmpty(t *testing.T) {
	c := testutil.StartConsul(t) // its own agent: this test empties it
	client := newClient(t, c)
	w, _ := newWatcher(t, c, prometheus.NewPedanticRegistry())
	register(t, client, instanceSpec{id: "pay-1", name: "pay", port: 1})
	register(t, client, instanceSpec{id: "pay-2", name: "pay", port: 2})
	rec := newRecorder(t)
	defer w.Watch(Source{Service: "pay"}, rec.onChange)()
	rec.await(deliveryTimeout, "pay-1", "pay-2")

	c.RestartEmpty()
	// The agent is up and empty; pay-1's process registers again, pay-2's
	// never does.
	testutil.Eventually(t, 10*time.Second, func() bool {
		st := w.Status()
		return len(st) == 1 && st[0].Healthy
	}, "watching the restarted agent")
	register(t, client, instanceSpec{id: "pay-1", name: "pay", port: 1})
	rec.await(deliveryTimeout, "pay-1")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.empty {
		t.Error("an empty instance list was delivered while the instances registered again")
	}
}

// fakeConsul answers health queries from a script, to exercise index
// handling that a real agent does not produce on demand.
type fakeConsul struct {
	mu      sync.Mutex
	queries []string // the index parameter of each query
	answers []fakeAnswer
}

type fakeAnswer struct {
	index  uint64
	ids    []string
	status int // non-zero: fail with it
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.queries = append(f.queries, cmp.Or(q.Get("index"), "0")) // the client omits index=0
	n := len(f.queries)
	f.mu.Unlock()
	if q.Get("passing") != "1" || !q.Has("stale") || r.URL.Path != "/v1/health/service/svc" ||
		!slices.Equal(q["tag"], []string{"a", "b"}) || q.Get("dc") != "dc2" {
		http.Error(w, "unexpected query "+r.URL.String(), http.StatusBadRequest)
		return
	}
	if n > len(f.answers) {
		<-r.Context().Done() // a blocking query with nothing new
		return
	}
	a := f.answers[n-1]
	if a.status != 0 {
		http.Error(w, "scripted failure", a.status)
		return
	}
	var entries []*api.ServiceEntry
	for i, id := range a.ids {
		entries = append(entries, &api.ServiceEntry{
			Node:    &api.Node{Address: "192.0.2.1"},
			Service: &api.AgentService{ID: id, Port: 1000 + i},
		})
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(a.index, 10))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(entries)
}

func (f *fakeConsul) indexes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.queries)
}

func TestIndexHandling(t *testing.T) {
	f := &fakeConsul{answers: []fakeAnswer{
		{index: 100, ids: []string{"a"}},
		{index: 50, ids: []string{"a"}},      // backwards: reset, and no delivery, same list
		{index: 60, ids: []string{"a", "b"}}, // the answer to index 0
		{index: 0, ids: []string{"a", "b"}},  // backwards to 0
		{index: 0, ids: []string{"a"}},       // 0 again: the next query must still block
		{index: 7, ids: []string{"a"}},
		{status: http.StatusInternalServerError}, // the next query must not block
		{index: 8, ids: []string{"a"}},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := api.DefaultConfig()
	cfg.Address = srv.URL
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(client, slog.New(slog.NewTextHandler(tWriter{t}, nil)), nil, WithBackoff(time.Millisecond, 2*time.Millisecond))
	defer w.Close()
	rec := newRecorder(t)
	defer w.Watch(Source{Service: "svc", Tags: []string{"b", "a"}, Datacenter: "dc2"}, rec.onChange)()
	rec.await(deliveryTimeout, "a")
	rec.await(deliveryTimeout, "a", "b")
	rec.await(deliveryTimeout, "a")
	want := []string{"0", "100", "0", "60", "0", "1", "7", "0", "8"}
	testutil.Eventually(t, deliveryTimeout, func() bool { return len(f.indexes()) >= len(want) }, "all scripted queries")
	if got := f.indexes(); !slices.Equal(got, want) {
		t.Errorf("query indexes = %v, want %v", got, want)
	}
	rec.quiet()
	rec.checkNoDuplicates()
	if st := w.Status(); len(st) != 1 || !st[0].Healthy || st[0].Source != "svc[a,b]@dc2" {
		t.Errorf("status = %+v", st)
	}
}

func TestSourceKey(t *testing.T) {
	for _, tc := range []struct {
		src  Source
		want string
	}{
		{Source{Service: "web"}, "web"},
		{Source{Service: "web", Tags: []string{}}, "web"},
		{Source{Service: "web", Tags: []string{"v2", "a", "v2"}}, "web[a,v2]"},
		{Source{Service: "web", Datacenter: "eu-1"}, "web@eu-1"},
		{Source{Service: "web", Tags: []string{"x"}, Datacenter: "eu-1"}, "web[x]@eu-1"},
		// Separators inside names cannot make two sources collide.
		{Source{Service: "web", Tags: []string{"a,b"}}, "web[a%2Cb]"},
		{Source{Service: "web[a]"}, "web%5Ba%5D"},
	} {
		if got := tc.src.Key(); got != tc.want {
			t.Errorf("%+v.Key() = %q, want %q", tc.src, got, tc.want)
		}
	}
	tags := []string{"b", "a"}
	_ = Source{Service: "s", Tags: tags}.Key()
	if !slices.Equal(tags, []string{"b", "a"}) {
		t.Errorf("Key reordered the caller's tags: %v", tags)
	}
}

func TestNextIndex(t *testing.T) {
	for _, tc := range []struct{ prev, got, want uint64 }{
		{0, 0, 1}, // never block on 0
		{0, 5, 5},
		{5, 5, 5},
		{5, 9, 9},
		{9, 5, 0}, // backwards: start over
		{9, 0, 0},
	} {
		if got := nextIndex(tc.prev, tc.got); got != tc.want {
			t.Errorf("nextIndex(%d, %d) = %d, want %d", tc.prev, tc.got, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	w := NewWatcher(nil, nil, nil)
	for n, max := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 5: 3200 * time.Millisecond, 6: 5 * time.Second, 1000: 5 * time.Second} {
		for range 50 {
			if d := w.backoff(n); d < max/2 || d > max {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, max/2, max)
			}
		}
	}
}
