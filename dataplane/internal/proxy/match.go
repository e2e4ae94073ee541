package proxy

import (
	"github.com/portico-gw/portico/dataplane/internal/router"
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
