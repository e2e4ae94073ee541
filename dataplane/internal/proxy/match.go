package proxy

import (
	"github.com/portico-gw/portico/dataplane/internal/bodyschema"
	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// matchRule is the matching part of a route, as the router takes it: host,
// path and method, the conditions and priority (issue 16), and the name,
// which breaks the last ties between routes on one pattern.
func matchRule(r *config.Route) router.Rule {
	return router.Rule{Paths: r.Paths, Methods: r.Methods, Hosts: r.Hosts, Match: r.Match, Priority: r.Priority, Name: r.Name}
}

// sameMatch reports whether two routes' conditions and priority are the
// same (the rest of the matching part is compared by sameRule).
func sameMatch(a, b *config.Route) bool {
	return a.Priority == b.Priority && a.Match.Key() == b.Match.Key()
}

// compileSchemas compiles the route's request schemas; one that does not
// compile (validation refuses it first, so only input that skipped
// validation gets here) rejects the route.
func (c *routeCompiler) compileSchemas(r *config.Route) stage.Stage {
	s, err := bodyschema.Compile(r)
	if err != nil {
		if c.rt.rejected == "" {
			c.rt.rejected = err.Error()
			c.t.reject(config.KindRoute, r.Name, c.rt.rejected)
		}
		return nil
	}
	return s
}
