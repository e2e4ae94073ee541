package extauthz

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/cache"
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

// decisionCache keeps decisions for ttl, bounded in bytes (keys and
// encoded decisions), least recently used out first.
type decisionCache struct {
	ttl      time.Duration
	maxBytes int64
	mem      *cache.Memory
}

func newDecisionCache(ttl time.Duration, maxBytes int64) *decisionCache {
	return &decisionCache{ttl: ttl, maxBytes: maxBytes, mem: cache.NewMemory(maxBytes)}
}

func (c *decisionCache) get(key string) *decision {
	b, err := c.mem.Get(context.Background(), key)
	if err != nil {
		return nil
	}
	d := &decision{}
	if json.Unmarshal(b, d) != nil {
		return nil
	}
	return d
}

func (c *decisionCache) put(key string, d *decision) {
	b, err := json.Marshal(d)
	if err != nil {
		return
	}
	_ = c.mem.Set(context.Background(), key, b, c.ttl)
}
