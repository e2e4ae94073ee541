package config

import "fmt"

// Route ambiguity, the one rule. A route matches, for each of its paths,
// every (host, method, path shape, conditions) it lists: no hosts means "any
// host", no methods "any method", the shape is the path with its parameter
// names erased (PathShape: "/users/{id}" and "/users/{name}" are one shape;
// a constraint stays, "/users/{id:[0-9]+}" is another), and the conditions
// are the route's match in canonical form (RouteMatch.Key: "X-Api-Version"
// exact "2" and "x-api-version": "2" are one). Two routes sharing such a key
// can never be told apart, so which of them serves the requests it
// describes would be arbitrary (priority would only make one of them dead
// config); the later one is refused (409), and the message names the route
// it collides with. Keys that differ are not ambiguous even when their
// requests overlap: a route listing a method beats an any-method route on
// the same shape, an exact host beats a wildcard, a static segment beats a
// {param}, more conditions beat fewer, then priority, then the name (the
// router's precedence rules decide those, deterministically).
//
// Validate (and so ValidateObjects, which the data plane compiles with) and
// CheckRoute decide with routeClaims. The data plane's router holds the same
// rule in its structure: the keys of two rules meet in one leaf of its trie
// exactly when they are equal, and it refuses the second claim of a method
// there (router.FuzzAmbiguityMatchesConfig checks that it refuses exactly
// what Validate refuses).

// matchKey is one (host, method, path shape) of a route.
type matchKey struct {
	host, method, shape string
	conds               string // RouteMatch.Key
}

func (k matchKey) String() string {
	host, method := k.host, k.method
	if host == "" {
		host = "any host"
	}
	if method == "" {
		method = "any method"
	}
	if k.conds != "" {
		return fmt.Sprintf("%s %s %s if %s", method, host, k.shape, k.conds)
	}
	return fmt.Sprintf("%s %s %s", method, host, k.shape)
}

// ambiguity is the message of a key already held by another route.
func ambiguity(k matchKey, holder string) string {
	return fmt.Sprintf("matches exactly the same requests as route %q (%s)", holder, k)
}

// routeClaims records which route holds each match key.
type routeClaims map[matchKey]string

func newRouteClaims(routes int) routeClaims { return make(routeClaims, routes) }

// claim gives r every key of it no other route holds, and calls clash (path
// index, key, holder) for each key another route holds already; that key
// stays with its holder. A route meeting its own key again (a host or path
// listed twice, which its own validation reports) is no clash. Paths that
// are not valid patterns claim nothing: their validation reports them.
func (c routeClaims) claim(r *Route, clash func(path int, key matchKey, holder string)) {
	hosts := r.Hosts
	if len(hosts) == 0 {
		hosts = []string{""}
	}
	methods := r.Methods
	if len(methods) == 0 {
		methods = []string{""}
	}
	conds := r.Match.Key()
	for pi, path := range r.Paths {
		shape, err := PathShape(path)
		if err != nil {
			continue
		}
		for _, h := range hosts {
			for _, m := range methods {
				k := matchKey{host: h, method: m, shape: shape, conds: conds}
				switch holder, taken := c[k]; {
				case !taken:
					c[k] = r.Name
				case holder != r.Name:
					clash(pi, k, holder)
				}
			}
		}
	}
}
