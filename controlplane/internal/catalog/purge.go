package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/config"
)

// PurgeRouteCache invalidates every cached response of a route on every
// data plane and in the shared Redis cache. Data planes key cache entries
// by the route's revision, so bumping it (a write of its own, in the audit
// log like any other) makes every earlier entry unreachable as soon as the
// new snapshot arrives; entries left behind age out of the LRU and Redis.
func (c *Catalog) PurgeRouteCache(ctx context.Context, name string, pre Precondition, actor Actor) (config.Route, *Change, error) {
	var out config.Route
	ch, _, err := c.apply(ctx, actor, func(cur *store.State, next *config.Config, now time.Time) (store.AuditEntry, bool, error) {
		i := Routes.index(next, name)
		if i < 0 {
			return store.AuditEntry{}, false, fmt.Errorf("route %q: %w", name, ErrNotFound)
		}
		// A copy: the route in next is shared with the published revision.
		r := *next.Routes[i]
		if err := pre.check(config.KindRoute, name, &r.Meta); err != nil {
			return store.AuditEntry{}, false, err
		}
		if r.Cache == nil {
			return store.AuditEntry{}, false, config.Conflict("cache", "route %q has no cache to purge", name)
		}
		bump(&r.Meta, cur.Revision+1, now)
		next.Routes[i] = &r
		out = r
		return store.AuditEntry{Action: "purge-cache", Kind: config.KindRoute, Name: name, Version: r.Version}, false, nil
	})
	if err != nil {
		return config.Route{}, nil, err
	}
	return out, ch, nil
}
