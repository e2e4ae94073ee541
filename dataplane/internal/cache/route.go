package cache

import (
	"maps"
	"slices"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// Route is a route's cache stage: its Policy and the Cache that holds the
// entries. Serve answers from the cache, or runs the rest of the chain and
// stores what it wrote when HTTP allows it.
type Route struct {
	cache  *Cache
	policy *Policy
}

// CompileRoute compiles route's cache settings (nil when it has none);
// generation is the route's revision, so that any change of the route (a
// purge included) starts a new key space.
func CompileRoute(c *Cache, route string, generation int64, spec *config.RouteCache) stage.Stage {
	p := Compile(route, generation, spec)
	if p == nil {
		return nil
	}
	return &Route{cache: c, policy: p}
}

// Serve answers the request from the cache or through the rest of the
// chain.
func (cr *Route) Serve(req *stage.Request) {
	consumer := ""
	if req.Identity != nil {
		consumer = req.Identity.Consumer
	}
	cr.cache.Serve(req.W, req.R, cr.policy, consumer, req)
	req.Outcome.Cache = req.W.Header().Get(StatusHeader)
}

// Policy is the route's compiled policy.
func (cr *Route) Policy() *Policy { return cr.policy }

// Describe renders the policy, for golden files.
func (cr *Route) Describe() any {
	p := cr.policy
	return struct {
		Route       string   `json:"route"`
		Generation  int64    `json:"generation"`
		TTL         string   `json:"ttl"`
		Store       string   `json:"store"`
		KeyHeaders  []string `json:"key_headers,omitempty"`
		KeyQuery    []string `json:"key_query,omitempty"`
		IgnoreQuery bool     `json:"ignore_query,omitempty"`
		KeyConsumer bool     `json:"key_consumer,omitempty"`
		KeyCookies  []string `json:"key_cookies,omitempty"`
		MaxEntry    int64    `json:"max_entry_bytes"`
	}{p.route, p.generation, p.ttl.String(), p.store, p.keyHeaders, sortedKeys(p.keyQuery), p.ignoreQuery, p.keyConsumer,
		sortedKeys(p.keyCookies), p.maxEntry}
}

func sortedKeys(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(m))
}
