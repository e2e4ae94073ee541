package extauthz

import (
	"container/list"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/stage"
)

// decision is a decision service's answer.
type decision struct {
	Allow bool `json:"allow"`
	// Upstream: headers for the request to the route's service (allow).
	Upstream http.Header `json:"upstream,omitempty"`
	// Status, Header, Body: the client's answer (deny).
	Status int         `json:"status,omitempty"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

// filter keeps of the decision's headers the names the route lets through:
// upstream names on an allow, client names (and the body's Content-Type) on
// a denial.
func (d *decision) filter(upstream, client []string) {
	pick := func(from http.Header, names []string) http.Header {
		out := http.Header{}
		for _, n := range names {
			if v, ok := from[n]; ok && len(v) > 0 {
				out[n] = v
			}
		}
		return out
	}
	if d.Allow {
		d.Upstream, d.Header, d.Body = pick(d.Upstream, upstream), nil, nil
		return
	}
	ct := d.Header.Get("Content-Type")
	d.Upstream, d.Header = nil, pick(d.Header, client)
	if len(d.Body) > 0 && ct != "" {
		d.Header.Set("Content-Type", ct)
	}
}

// writeDenial answers the client with the denial: the service's status,
// headers and body, or a problem (a gRPC status for a gRPC call) when it
// gave no body.
func (d *decision) writeDenial(req *stage.Request) {
	h := req.W.Header()
	for name, v := range d.Header {
		h[name] = append([]string(nil), v...)
	}
	status := d.Status
	if status < 300 || status > 599 {
		status = http.StatusForbidden
	}
	if len(d.Body) == 0 && status < 400 && !stage.IsGRPC(req.R) {
		// A redirect (to a login page) needs no body.
		h.Set("Cache-Control", "no-store")
		req.W.WriteHeader(status)
		return
	}
	if len(d.Body) == 0 || stage.IsGRPC(req.R) {
		h.Del("Content-Type")
		stage.WriteProblem(req.W, req.R, status, "ext-authz-denied", "the authorization service denied the request")
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(d.Body)))
	h.Set("Cache-Control", "no-store")
	if h.Get("Content-Type") == "" {
		h.Set("X-Content-Type-Options", "nosniff")
	}
	req.W.WriteHeader(status)
	if req.R.Method != http.MethodHead {
		_, _ = req.W.Write(d.Body)
	}
}

// decisionCache keeps decisions for ttl, bounded in bytes (keys, header
// names and values, bodies, and a fixed overhead per entry), least
// recently used out first. A stored decision is never modified: Serve and
// writeDenial copy what they use.
type decisionCache struct {
	ttl      time.Duration
	maxBytes int64
	now      func() time.Time

	mu    sync.Mutex
	bytes int64
	ll    *list.List // front: most recently used
	items map[string]*list.Element
}

type cacheEntry struct {
	key  string
	d    *decision
	size int64
	exp  time.Time
}

// entryOverhead approximates an entry's bookkeeping (list element, map
// slot, the decision struct and its header maps).
const entryOverhead = 256

func newDecisionCache(ttl time.Duration, maxBytes int64) *decisionCache {
	return &decisionCache{ttl: ttl, maxBytes: maxBytes, now: time.Now, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *decisionCache) get(key string) *decision {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.exp) {
		c.remove(el)
		return nil
	}
	c.ll.MoveToFront(el)
	return e.d
}

func (c *decisionCache) put(key string, d *decision) {
	size := int64(len(key)+len(d.Body)) + headerSize(d.Upstream) + headerSize(d.Header) + entryOverhead
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.remove(el)
	}
	if size > c.maxBytes {
		return
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key: key, d: d, size: size, exp: c.now().Add(c.ttl)})
	c.bytes += size
	for c.bytes > c.maxBytes {
		c.remove(c.ll.Back())
	}
}

func (c *decisionCache) remove(el *list.Element) {
	e := c.ll.Remove(el).(*cacheEntry)
	delete(c.items, e.key)
	c.bytes -= e.size
}

// stats is the number of entries and the bytes they count for.
func (c *decisionCache) stats() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items), c.bytes
}

func headerSize(h http.Header) int64 {
	var n int
	for k, vs := range h {
		n += len(k)
		for _, v := range vs {
			n += len(v) + 16
		}
	}
	return int64(n)
}
