package cache

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/shared/config"
)

// StatusHeader tells the client how the cache answered: HIT, MISS or
// BYPASS.
const StatusHeader = "X-Cache-Status"

// Cross-node fill defaults.
const (
	// DefaultLockTTL bounds how long a node that died mid-fetch keeps the
	// others from fetching.
	DefaultLockTTL = 5 * time.Second
	// DefaultLockWait bounds how long a node polls for an entry another
	// node is fetching before it fetches itself.
	DefaultLockWait = time.Second
	// DefaultPollInterval is the step of that polling.
	DefaultPollInterval = 25 * time.Millisecond
)

// Options configure a Cache.
type Options struct {
	// Memory is the store of routes with Store "memory"; required.
	Memory Store
	// Redis is the store of routes with Store "redis"; nil when the data
	// plane has no Redis, and then those routes use Memory.
	Redis Store
	// Now is the clock deciding freshness and Age; nil means time.Now.
	Now func() time.Time
	// Log is nil for slog.Default().
	Log *slog.Logger
	// Registerer registers the metrics; nil records none.
	Registerer prometheus.Registerer
	// LockTTL, LockWait and PollInterval tune the cross-node fill lock
	// (used with a Store that is a Locker); zero means the defaults.
	LockTTL, LockWait, PollInterval time.Duration
}

// Cache answers requests from stored responses. It is safe for concurrent
// use; one Cache serves every route of a data plane, each with its Policy.
type Cache struct {
	memory, redis Store
	now           func() time.Time
	log           *slog.Logger
	metrics       *metrics
	lockTTL       time.Duration
	lockWait      time.Duration
	pollEvery     time.Duration
	noRedisOnce   sync.Once
	failing       map[string]*atomic.Bool // by store name: an outage is logged once

	mu      sync.Mutex
	flights map[string]*flight // by primary key

	// onLockBusy, when set by a test, runs when another node holds the
	// fill lock, before polling starts.
	onLockBusy func()
	// onFollow, when set by a test, runs when a request starts waiting for
	// another's fetch.
	onFollow func()
}

// flight is one upstream fetch that concurrent requests for the same key
// wait for. e and variant are set before done is closed.
type flight struct {
	done    chan struct{}
	once    sync.Once
	e       *entry // nil: the response was not storable
	variant string // the variant key e answers
}

// land sets the flight's result and releases its waiters, once.
func (f *flight) land(e *entry, variant string) {
	f.once.Do(func() {
		f.e, f.variant = e, variant
		close(f.done)
	})
}

// New returns a Cache over o's stores.
func New(o Options) *Cache {
	if o.Memory == nil {
		panic("cache: New without a memory store")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	c := &Cache{
		memory:    o.Memory,
		redis:     o.Redis,
		now:       o.Now,
		log:       o.Log,
		metrics:   newMetrics(o.Registerer, o.Memory),
		lockTTL:   orDefault(o.LockTTL, DefaultLockTTL),
		lockWait:  orDefault(o.LockWait, DefaultLockWait),
		pollEvery: orDefault(o.PollInterval, DefaultPollInterval),
		failing:   map[string]*atomic.Bool{config.CacheMemory: {}, config.CacheRedis: {}},
		flights:   map[string]*flight{},
	}
	return c
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// request is one request's view of the cache. It belongs to the request's
// goroutine.
type request struct {
	c         *Cache
	r         *http.Request
	p         *Policy
	st        Store
	storeName string
	primary   string
	cc        map[string]string // the request's Cache-Control
	// auth: the request carries credentials that the key does not
	// separate, so only responses that allow it may be stored or served
	// (RFC 9111 §3.5).
	auth bool
	// cookie: the request carries a Cookie the key does not separate
	// (Cookie is not a key header, and not every cookie is one of
	// KeyCookies). Cookies carry sessions and
	// preferences that an upstream may answer by, so only responses that
	// say Cache-Control: public are stored for, or served to, it.
	cookie bool
	// down: a store call of this request failed; the rest of it does
	// without the store, so that an outage costs one budget, not several.
	down bool
	// unstorable, when set, is called as soon as the response turns out
	// not to be storable, so that requests waiting for it go their own
	// way at once instead of behind a stream that may last for hours.
	unstorable func()
}

// Serve answers r from the cache, or through next and stores what next
// wrote when HTTP allows it. consumer is the authenticated consumer ("" when
// none). A nil p only calls next.
func (c *Cache) Serve(w http.ResponseWriter, r *http.Request, p *Policy, consumer string, next http.Handler) {
	if p == nil {
		next.ServeHTTP(w, r)
		return
	}
	cc := cacheControl(r.Header)
	_, noStore := cc["no-store"]
	// An upgrade (WebSocket) is a GET that hijacks the connection: nothing
	// to cache, and the recorder must not stand in the way.
	if (r.Method != http.MethodGet && r.Method != http.MethodHead) || noStore || r.Header.Get("Upgrade") != "" {
		w.Header().Set(StatusHeader, "BYPASS")
		c.metrics.lookup(p.route, "bypass")
		next.ServeHTTP(w, r)
		return
	}
	st, name := c.store(p)
	q := &request{
		c: c, r: r, p: p, st: st, storeName: name,
		primary: p.primaryKey(r, consumer),
		cc:      cc,
		// Any credentials count: a bearer token, and an API key in a
		// header of the route's choosing (the consumer says one verified).
		auth:   (r.Header.Get("Authorization") != "" || consumer != "") && (!p.keyConsumer || consumer == ""),
		cookie: len(r.Header["Cookie"]) > 0 && !p.keyCookie && !p.cookiesKeyed(r),
	}
	if !q.revalidate() {
		if e, _ := q.find(); e != nil {
			c.writeHit(w, r, p, e)
			return
		}
	}
	if r.Method == http.MethodHead {
		// A HEAD response has no body to store, and waiting on a GET
		// in flight is not worth the bookkeeping.
		c.passThrough(w, r, p, next)
		return
	}
	c.fill(w, q, next)
}

// store is the store p asks for, or Memory when it asks for Redis and there
// is none.
func (c *Cache) store(p *Policy) (Store, string) {
	if p.store == config.CacheRedis {
		if c.redis != nil {
			return c.redis, config.CacheRedis
		}
		c.noRedisOnce.Do(func() {
			c.log.Warn("response cache: routes ask for the redis store but the data plane has no Redis; they use the in-memory store", "route", p.route)
		})
	}
	return c.memory, config.CacheMemory
}

// revalidate: the client asks for a response from the upstream, not from
// the cache (no-cache, or max-age=0).
func (q *request) revalidate() bool {
	if _, ok := q.cc["no-cache"]; ok {
		return true
	}
	ma, ok := seconds(q.cc, "max-age")
	return ok && ma == 0
}

// usable says whether e may answer q.
func (q *request) usable(e *entry) bool {
	if q.auth && !e.shared || q.cookie && !e.public() {
		return false
	}
	if ma, ok := seconds(q.cc, "max-age"); ok && e.age(q.c.now()) > ma {
		return false
	}
	return true
}

func (q *request) get(key string) []byte {
	if q.down {
		return nil
	}
	b, err := q.st.Get(q.r.Context(), key)
	switch {
	case errors.Is(err, ErrMiss):
		q.c.storeOK(q.storeName)
		return nil
	case err != nil:
		q.fail(err)
		return nil
	}
	q.c.storeOK(q.storeName)
	return b
}

func (q *request) set(key string, val []byte, ttl time.Duration) {
	if q.down {
		return
	}
	// The response is complete: worth storing even if its client left.
	if err := q.st.Set(context.WithoutCancel(q.r.Context()), key, val, ttl); err != nil {
		q.fail(err)
	}
}

func (q *request) fail(err error) {
	q.down = true
	q.c.storeError(q.storeName, err)
}

// find looks q up: the entry under the primary key, or under the variant
// key its Vary record names. varyMiss reports a Vary record without q's
// variant. Only fresh entries usable for q are returned.
func (q *request) find() (e *entry, varyMiss bool) {
	e = q.decode(q.get(q.primary))
	if e != nil && e.kind == kindVary {
		e = q.decode(q.get(variantKey(q.primary, e.vary, q.r)))
		if e == nil || e.kind != kindResponse {
			return nil, true
		}
	}
	if e == nil || e.age(q.c.now()) >= e.lifetime || !q.usable(e) {
		return nil, false
	}
	return e, false
}

func (q *request) decode(b []byte) *entry {
	if b == nil {
		return nil
	}
	e, err := decodeEntry(b)
	if err != nil {
		q.c.log.Debug("response cache: unreadable entry, treated as a miss", "route", q.p.route, "store", q.storeName, "error", err)
		return nil
	}
	return e
}

// fill fetches q through next once per primary key at a time: the first
// request leads, the others wait for its result.
func (c *Cache) fill(w http.ResponseWriter, q *request, next http.Handler) {
	c.mu.Lock()
	if f, ok := c.flights[q.primary]; ok {
		c.mu.Unlock()
		if c.onFollow != nil {
			c.onFollow()
		}
		select {
		case <-f.done:
		case <-q.r.Context().Done():
			return // the client left; nobody to answer
		}
		switch {
		case f.e == nil:
			// Not storable for the leader, so most likely not for
			// this request either: no point queueing behind each other.
			c.passThrough(w, q.r, q.p, next)
		case q.usable(f.e) && variantKey(q.primary, f.e.vary, q.r) == f.variant:
			c.writeHit(w, q.r, q.p, f.e)
		default:
			// Another variant (or one this request may not use):
			// fetch and store this request's own.
			c.fetch(w, q, next)
		}
		return
	}
	f := &flight{done: make(chan struct{})}
	c.flights[q.primary] = f
	c.mu.Unlock()
	var e *entry
	var variant string
	// Deferred so that the waiters are released even when next panics
	// (http.ErrAbortHandler from a proxy whose upstream broke off).
	defer func() {
		c.mu.Lock()
		delete(c.flights, q.primary)
		c.mu.Unlock()
		f.land(e, variant)
	}()
	q.unstorable = func() { f.land(nil, "") }
	e, variant = c.lead(w, q, next)
}

// lead fetches for the waiters of this node. With a Locker store it first
// takes the key's fill lock; when another node holds it, it polls the store
// for that node's result for a while before fetching itself.
func (c *Cache) lead(w http.ResponseWriter, q *request, next http.Handler) (*entry, string) {
	lk, ok := q.st.(Locker)
	if !ok || q.down {
		return c.fetch(w, q, next)
	}
	token, got, err := lk.Lock(q.r.Context(), q.primary, c.lockTTL)
	switch {
	case err != nil:
		q.fail(err)
	case got:
		defer func() {
			if err := lk.Unlock(context.WithoutCancel(q.r.Context()), q.primary, token); err != nil {
				c.storeError(q.storeName, err)
			}
		}()
	default:
		if c.onLockBusy != nil {
			c.onLockBusy()
		}
		if e := c.await(q); e != nil {
			c.writeHit(w, q.r, q.p, e)
			return e, variantKey(q.primary, e.vary, q.r)
		}
	}
	return c.fetch(w, q, next)
}

// await polls q's store until the entry appears, it becomes clear it will
// not (a Vary record without q's variant, a store error), q's context ends
// or LockWait passes. The wait is in real time: it bounds latency.
func (c *Cache) await(q *request) *entry {
	deadline := time.Now().Add(c.lockWait)
	t := time.NewTimer(c.pollEvery)
	defer t.Stop()
	for {
		select {
		case <-q.r.Context().Done():
			return nil
		case <-t.C:
		}
		e, varyMiss := q.find()
		if e != nil {
			return e
		}
		if varyMiss || q.down || !time.Now().Add(c.pollEvery).Before(deadline) {
			return nil
		}
		t.Reset(c.pollEvery)
	}
}

// fetch calls next, streaming to w while recording, and stores the result
// when it is storable. It returns the stored entry and its variant key.
func (c *Cache) fetch(w http.ResponseWriter, q *request, next http.Handler) (*entry, string) {
	w.Header().Set(StatusHeader, "MISS")
	c.metrics.lookup(q.p.route, "miss")
	rec := &recorder{w: w, h: make(http.Header), q: q}
	next.ServeHTTP(rec, q.r)
	e := rec.finish()
	if e == nil {
		return nil, ""
	}
	vk := variantKey(q.primary, e.vary, q.r)
	ttl := e.lifetime - e.upstreamAge
	if len(e.vary) > 0 {
		// The record serves every variant, and this one may be the
		// shortest-lived: keep it at least as long as the route's TTL so
		// that it does not take longer-lived variants with it. Only
		// the variants' own freshness counts on a lookup.
		rec := &entry{kind: kindVary, storedAt: e.storedAt, lifetime: e.lifetime, upstreamAge: e.upstreamAge, vary: e.vary}
		q.set(q.primary, rec.encode(), max(ttl, q.p.ttl))
	}
	q.set(vk, e.encode(), ttl)
	return e, vk
}

func (c *Cache) passThrough(w http.ResponseWriter, r *http.Request, p *Policy, next http.Handler) {
	w.Header().Set(StatusHeader, "MISS")
	c.metrics.lookup(p.route, "miss")
	next.ServeHTTP(w, r)
}

// notModifiedHeaders are what a 304 repeats of the stored response
// (RFC 9110 §15.4.5).
var notModifiedHeaders = []string{"Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Vary"}

// writeHit answers r with e.
func (c *Cache) writeHit(w http.ResponseWriter, r *http.Request, p *Policy, e *entry) {
	c.metrics.lookup(p.route, "hit")
	h := w.Header()
	age := strconv.FormatInt(int64(e.age(c.now())/time.Second), 10)
	if notModified(r, e) {
		for _, k := range notModifiedHeaders {
			if vs := e.header.Values(k); len(vs) > 0 {
				h[k] = slices.Clone(vs)
			}
		}
		h.Set("Age", age)
		h.Set(StatusHeader, "HIT")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	for k, vs := range e.header {
		h[k] = slices.Clone(vs)
	}
	h.Set("Age", age)
	h.Set(StatusHeader, "HIT")
	if e.status != http.StatusNoContent {
		h.Set("Content-Length", strconv.Itoa(len(e.body)))
	}
	w.WriteHeader(e.status)
	if r.Method != http.MethodHead && len(e.body) > 0 {
		_, _ = w.Write(e.body) // a client that left is not the cache's error
	}
}

// notModified: r's If-None-Match matches e's ETag by weak comparison.
func notModified(r *http.Request, e *entry) bool {
	inm := r.Header.Values("If-None-Match")
	if len(inm) == 0 || e.status != http.StatusOK {
		return false
	}
	etag := strings.TrimPrefix(e.header.Get("Etag"), "W/")
	for _, v := range inm {
		for tag := range strings.SplitSeq(v, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || (etag != "" && strings.TrimPrefix(tag, "W/") == etag) {
				return true
			}
		}
	}
	return false
}

func (c *Cache) storeError(store string, err error) {
	c.metrics.storeError(store)
	if c.failing[store].CompareAndSwap(false, true) {
		c.log.Warn("response cache: store failing; requests go upstream until it is back", "store", store, "error", err)
	}
}

func (c *Cache) storeOK(store string) {
	if c.failing[store].CompareAndSwap(true, false) {
		c.log.Info("response cache: store is back", "store", store)
	}
}

// storableStatus are the status codes heuristically cacheable (RFC 9110
// §15.1), the only ones stored without explicit freshness, less 206 (the
// cache does not handle ranges). The 4xx and 5xx among them are stored only
// under errorStorable's further conditions.
var storableStatus = map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 308: true, 404: true, 405: true, 410: true, 414: true, 501: true}

// errorStorable: a 4xx or 5xx answer may say more about the request than
// about the resource (a 414 for a query too long, a 404 for a parameter
// misspelt), and a request part the key leaves out must not be able to put
// an error in front of requests without it. So an error is stored only when
// the upstream gave it an explicit lifetime (s-maxage or max-age: the
// route's TTL is no reason to keep an error) and the key holds the whole
// query. Headers the key leaves out are the response's Vary's business.
func (q *request) errorStorable(status int, explicit bool) bool {
	return status < 400 || explicit && q.p.keysWholeQuery()
}

// hopByHop headers belong to one connection and are never stored; the
// proxy-authentication pair belongs to the hop to the gateway.
var hopByHop = append([]string{"Proxy-Authenticate", "Proxy-Authorization"}, config.HopByHop...)

// plan decides at WriteHeader time whether a response may be stored, and
// returns its entry without the body; nil when it may not.
func (q *request) plan(status int, h http.Header) *entry {
	if !storableStatus[status] || len(h.Values("Set-Cookie")) > 0 || len(h.Values("Trailer")) > 0 {
		return nil
	}
	cc := cacheControl(h)
	for _, d := range []string{"no-store", "private", "no-cache"} {
		if _, ok := cc[d]; ok {
			return nil
		}
	}
	vary, star := varyNames(h)
	if star {
		return nil
	}
	_, public := cc["public"]
	smax, hasSmax := seconds(cc, "s-maxage")
	shared := public || hasSmax
	if q.auth && !shared || q.cookie && !public {
		return nil
	}
	lifetime := q.p.ttl
	ma, hasMaxAge := seconds(cc, "max-age")
	if hasSmax {
		lifetime = smax
	} else if hasMaxAge {
		lifetime = ma
	}
	if !q.errorStorable(status, hasSmax || hasMaxAge) {
		return nil
	}
	var age time.Duration
	if n, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && n > 0 {
		age = time.Duration(min(n, int64(config.MaxCacheTTL/time.Second))) * time.Second
	}
	if lifetime-age <= 0 {
		return nil
	}
	if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && n > q.p.maxEntry {
		return nil
	}
	stored := h.Clone()
	for _, f := range h.Values("Connection") {
		for name := range strings.SplitSeq(f, ",") {
			stored.Del(textproto.TrimString(name))
		}
	}
	for _, k := range hopByHop {
		stored.Del(k)
	}
	stored.Del("Age")
	stored.Del(StatusHeader)
	return &entry{
		kind: kindResponse, status: status, header: stored, storedAt: q.c.now(),
		upstreamAge: age, lifetime: lifetime, vary: vary, shared: shared,
	}
}

// recorder is the writer next sees on a fill: it streams to the client and
// keeps a copy of a storable response, up to the route's MaxEntryBytes. It
// has its own header map so that only what next wrote is stored, not what
// handlers around the cache put on w.
type recorder struct {
	w     http.ResponseWriter
	h     http.Header
	q     *request
	wrote bool
	e     *entry // non-nil while the response is storable
	buf   []byte
}

func (rw *recorder) Header() http.Header { return rw.h }

func (rw *recorder) WriteHeader(code int) {
	if rw.wrote {
		return
	}
	dst := rw.w.Header()
	for k, vs := range rw.h {
		dst[k] = slices.Clone(vs)
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		rw.w.WriteHeader(code) // informational: the final status is still to come
		return
	}
	rw.wrote = true
	rw.e = rw.q.plan(code, rw.h)
	if rw.e == nil {
		rw.giveUp()
	}
	dst.Set(StatusHeader, "MISS")
	rw.w.WriteHeader(code)
}

// giveUp tells the waiters that this response will not be stored.
func (rw *recorder) giveUp() {
	rw.e, rw.buf = nil, nil
	if rw.q.unstorable != nil {
		rw.q.unstorable()
	}
}

func (rw *recorder) Write(b []byte) (int, error) {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	n, err := rw.w.Write(b)
	if rw.e != nil {
		if err != nil || int64(len(rw.buf)+n) > rw.q.p.maxEntry {
			// Too big, or the client is gone and the rest may never
			// come: stream on without keeping anything.
			rw.giveUp()
		} else {
			rw.buf = append(rw.buf, b[:n]...)
		}
	}
	return n, err
}

// FlushError makes http.ResponseController's Flush reach the client's
// writer through the recorder, headers first.
func (rw *recorder) FlushError() error {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(rw.w).Flush()
}

// Flush is http.Flusher for handlers that type-assert it.
func (rw *recorder) Flush() { _ = rw.FlushError() }

// Unwrap lets http.ResponseController reach the client's writer for the
// rest (deadlines, hijacking).
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.w }

// finish completes the response and returns the entry to store, or nil.
func (rw *recorder) finish() *entry {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	// Header keys that appeared after WriteHeader are trailers (declared
	// in Trailer, or with http.TrailerPrefix): they go to the client's
	// writer, which sends them after the body. They are not stored.
	dst := rw.w.Header()
	for k, vs := range rw.h {
		if _, ok := dst[k]; !ok {
			dst[k] = vs
		}
	}
	e := rw.e
	if e == nil {
		return nil
	}
	// A body shorter than announced was cut off upstream.
	if cl := e.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.Atoi(cl); err != nil || n != len(rw.buf) {
			return nil
		}
	}
	e.body = rw.buf
	return e
}
