package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
)

// Object is what every configuration object offers generic code (the admin
// API and the diff): its name and the metadata the control plane maintains.
type Object interface {
	ObjectName() string
	ObjectMeta() *Meta
	Normalize()
	Validate() error
}

var (
	_ Object = (*Service)(nil)
	_ Object = (*Route)(nil)
	_ Object = (*Consumer)(nil)
	_ Object = (*Issuer)(nil)
)

// ObjectMeta returns the object's metadata; promoted to every object type.
func (m *Meta) ObjectMeta() *Meta { return m }

func (s *Service) ObjectName() string  { return s.Name }
func (r *Route) ObjectName() string    { return r.Name }
func (c *Consumer) ObjectName() string { return c.Name }

// SameSpec reports whether two objects are equal apart from their metadata:
// writing b over a would change nothing a data plane sees.
func SameSpec(a, b any) bool { return len(ChangedFields(a, b)) == 0 }

// jsonFields returns an object's top-level fields as its JSON encoding has
// them (how objects travel anyway), leaving out empty lists so that nil and
// empty compare alike. It falls back to v itself for what is not a JSON
// object.
func jsonFields[T any](v T) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return v
	}
	for k, val := range m {
		if s, ok := val.([]any); ok && len(s) == 0 {
			delete(m, k)
		}
	}
	return m
}

// ChangedFields lists the top-level fields whose values differ between two
// objects of the same kind, ignoring metadata. It feeds the dry-run diff.
func ChangedFields(before, after any) []string {
	a, b := jsonFields(before), jsonFields(after)
	am, ok1 := a.(map[string]any)
	bm, ok2 := b.(map[string]any)
	if !ok1 || !ok2 {
		return nil
	}
	for _, k := range []string{"version", "revision", "created_at", "updated_at"} {
		delete(am, k)
		delete(bm, k)
	}
	var out []string
	for k, v := range am {
		if !reflect.DeepEqual(v, bm[k]) {
			out = append(out, k)
		}
	}
	for k := range bm {
		if _, ok := am[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// CheckRoute checks a route against the rest of the configuration: its
// service must exist and no other route may match exactly the same requests.
// Field paths are relative to the route, as the admin API reports them.
func (c *Config) CheckRoute(r *Route) error {
	var l errorList
	checkRouteServices(&l, "", r, c.Service)
	if len(r.Paths) > 0 {
		claims := newRouteClaims(len(c.Routes))
		for _, other := range c.Routes {
			if other.Name != r.Name {
				claims.claim(other, func(int, matchKey, string) {})
			}
		}
		claims.claim(r, func(path int, key matchKey, holder string) {
			l.conflictf(fmt.Sprintf("paths[%d]", path), "%s", ambiguity(key, holder))
		})
	}
	return l.err()
}

// CheckRouteAuth checks a route's references to issuers.
func (c *Config) CheckRouteAuth(r *Route) error {
	var l errorList
	checkRouteIssuers(&l, "", r, c.hasIssuer)
	checkRouteOIDC(&l, "", r, c.Issuer)
	return l.err()
}

// CheckIssuer refuses a second issuer object for the same iss value.
func (c *Config) CheckIssuer(is *Issuer) error {
	var l errorList
	for _, other := range c.Issuers {
		if other.Name != is.Name && other.Issuer == is.Issuer {
			checkIssValue(&l, "", is, other.Name)
			break
		}
	}
	return l.err()
}

// CheckConsumer checks a consumer's references to issuers.
func (c *Config) CheckConsumer(cs *Consumer) error {
	var l errorList
	checkIssuerRefs(&l, "jwt_issuers", cs.JWTIssuers, c.hasIssuer)
	return l.err()
}

// The rules between objects, each written once: Validate applies them to a
// whole configuration (field paths from the document's root), the Check
// methods to one object against the rest (paths relative to the object).

// checkRouteServices: the service a route names exists and speaks the
// route's protocol, and every service it aggregates exists and speaks HTTP.
func checkRouteServices(l *errorList, p string, r *Route, service func(string) (*Service, bool)) {
	if r.Service != "" {
		if svc, ok := service(r.Service); !ok {
			l.add(join(p, "service"), "service %q does not exist", r.Service)
		} else {
			checkRouteProtocol(l, p, r, svc)
		}
	}
	checkSplitServices(l, p, r, service)
	checkMirrorService(l, p, r, service)
	for i, b := range r.Aggregate {
		f := join(p, fmt.Sprintf("aggregate[%d].service", i))
		if svc, ok := service(b.Service); !ok {
			l.add(f, "service %q does not exist", b.Service)
		} else if svc.Protocol == ProtocolGRPC {
			l.add(f, "service %q speaks gRPC; aggregation calls HTTP services", b.Service)
		} else if svc.Protocol == ProtocolSOAP {
			l.add(f, "service %q speaks SOAP; aggregation calls HTTP services", b.Service)
		}
	}
}

// checkRouteIssuers: every issuer a route's auth names exists.
func checkRouteIssuers(l *errorList, p string, r *Route, exists func(string) bool) {
	if r.Auth != nil {
		checkIssuerRefs(l, join(p, "auth.issuers"), r.Auth.Issuers, exists)
	}
}

// checkIssuerRefs: every issuer named in the list at field exists.
func checkIssuerRefs(l *errorList, field string, names []string, exists func(string) bool) {
	for i, name := range names {
		if !exists(name) {
			l.add(fmt.Sprintf("%s[%d]", field, i), "issuer %q does not exist", name)
		}
	}
}

// checkIssValue: one issuer object per iss value, so that a token's iss
// names one set of keys. other already has is's value. An empty value is
// the issuer's own validation's business.
func checkIssValue(l *errorList, p string, is *Issuer, other string) {
	if is.Issuer != "" {
		l.conflictf(join(p, "issuer"), "issuer %q already has %q: one object per iss value", other, is.Issuer)
	}
}

func (c *Config) hasIssuer(name string) bool {
	_, ok := c.Issuer(name)
	return ok
}

// CheckIssuerDelete refuses to delete an issuer that routes or consumers
// name.
func (c *Config) CheckIssuerDelete(name string) error {
	var users []string
	for _, r := range c.Routes {
		if r.Auth != nil && (slices.Contains(r.Auth.Issuers, name) || r.Auth.OIDC != nil && r.Auth.OIDC.Issuer == name) {
			users = append(users, r.Name)
		}
	}
	if len(users) > 0 {
		return Conflict("name", "issuer %q is used by routes %v", name, users)
	}
	for _, cs := range c.Consumers {
		if slices.Contains(cs.JWTIssuers, name) {
			users = append(users, cs.Name)
		}
	}
	if len(users) > 0 {
		return Conflict("name", "issuer %q may name consumers %v (jwt_issuers); remove it there first", name, users)
	}
	return nil
}

// CheckServiceDelete refuses to delete a service that routes still use.
func (c *Config) CheckServiceDelete(name string) error {
	if users := c.RoutesUsing(name); len(users) > 0 {
		return Conflict("name", "service %q is used by routes %v; delete or repoint them first", name, users)
	}
	return nil
}
