package config

import (
	"maps"
	"slices"
	"strings"
)

// Sort orders every collection by name: the canonical form.
func (c *Config) Sort() { c.SortFrom(nil) }

// SortFrom is Sort for a configuration made from prev, which is in
// canonical order (nil if none): routes c shares with prev in the same
// order are known to be in order and are not read (RoutesInOrder).
func (c *Config) SortFrom(prev *Config) {
	sortByName(c.Services, func(s *Service) string { return s.Name })
	if prev == nil || !RoutesInOrder(c.Routes, prev.Routes) {
		sortByName(c.Routes, func(r **Route) string { return (*r).Name })
	}
	sortByName(c.Consumers, func(cs *Consumer) string { return cs.Name })
	sortByName(c.Issuers, func(is *Issuer) string { return is.Name })
	sortByName(c.Certificates, func(cert *Certificate) string { return cert.Name })
}

// sortByName sorts objects by name. The control plane sorts after every
// write, nearly always a list already in order: that is checked first by
// index, without copying objects (a sort's comparisons take them by value,
// hundreds of bytes each). BenchmarkSortSorted, 100,000 routes in order:
// 10.4 ms with slices.SortFunc, 7.4 ms checked by index (what is left is
// reading every name: memory, not comparisons).
func sortByName[T any](s []T, name func(*T) string) {
	for i := 1; i < len(s); i++ {
		if name(&s[i-1]) > name(&s[i]) {
			slices.SortFunc(s, func(a, b T) int { return strings.Compare(name(&a), name(&b)) })
			return
		}
	}
}

// RoutesInOrder reports whether routes are in strict name order, none
// unnamed, given prev: routes in strict name order, none unnamed (the
// routes they were made from; nil if none). A route that follows, in
// prev too, the route before it (or one of the same name) is in order
// without reading it (the same pointer: routes are never modified in
// place); other neighbours have their names compared. At 100,000 routes a write shares nearly all of them with
// the revision before, and reading every route's name took several
// milliseconds per pass (a cache miss or two per route), with three passes
// per write on the control plane.
func RoutesInOrder(routes, prev []*Route) bool {
	// Finding a route in prev is a binary search: after this many, the
	// rest is checked name by name (a configuration that shares little
	// with prev, such as an import's).
	searches := 64
	at := -1 // the index in prev of routes[i-1], or -1
	for i, r := range routes {
		if at >= 0 && at+1 < len(prev) && prev[at+1] == r {
			at++
			continue
		}
		if r.Name == "" || i > 0 && routes[i-1].Name >= r.Name {
			return false
		}
		at = -1
		if searches > 0 {
			searches--
			// A route of the same name in prev will do: whatever follows
			// it there has a greater name.
			if k, ok := slices.BinarySearchFunc(prev, r.Name, func(p *Route, n string) int { return strings.Compare(p.Name, n) }); ok {
				at = k
			}
		}
	}
	return true
}

// FillEmpty makes every nil collection an empty one, so that a
// configuration encodes as [] rather than null whichever way it was built
// (decoded, loaded from a store, assembled by hand) and readers need not
// tell "none" from "absent". It is the one list of collections to fill: the
// stores call it on what they load and the catalog on what it publishes
// (TestFillEmptyCoversEveryCollection keeps it complete).
func (c *Config) FillEmpty() {
	if c.Services == nil {
		c.Services = []Service{}
	}
	if c.Routes == nil {
		c.Routes = []*Route{}
	}
	if c.Consumers == nil {
		c.Consumers = []Consumer{}
	}
	if c.Issuers == nil {
		c.Issuers = []Issuer{}
	}
	if c.Certificates == nil {
		c.Certificates = []Certificate{}
	}
}

// Normalize puts every object into its canonical form (see the objects'
// Normalize methods).
func (c *Config) Normalize() {
	for i := range c.Services {
		c.Services[i].Normalize()
	}
	for _, r := range c.Routes {
		if r != nil { // null: refused by Validate
			r.Normalize()
		}
	}
	for i := range c.Consumers {
		c.Consumers[i].Normalize()
	}
	for i := range c.Issuers {
		c.Issuers[i].Normalize()
	}
	for i := range c.Certificates {
		c.Certificates[i].Normalize()
	}
}

// Clone returns a deep copy, so that a change can be prepared without
// touching a configuration that readers may hold.
func (c *Config) Clone() *Config {
	out := &Config{
		Services:     make([]Service, len(c.Services)),
		Routes:       make([]*Route, len(c.Routes)),
		Consumers:    make([]Consumer, len(c.Consumers)),
		Issuers:      make([]Issuer, len(c.Issuers)),
		Certificates: make([]Certificate, len(c.Certificates)),
		Global:       Global{RateLimit: clonePtr(c.Global.RateLimit), IP: c.Global.IP.clone()},
	}
	for i, s := range c.Services {
		s.Targets = slices.Clone(s.Targets)
		if s.Consul != nil {
			cs := *s.Consul
			cs.Tags = slices.Clone(cs.Tags)
			s.Consul = &cs
		}
		if s.Retries != nil {
			r := *s.Retries
			r.OnStatuses = slices.Clone(r.OnStatuses)
			s.Retries = &r
		}
		s.OutlierDetection = clonePtr(s.OutlierDetection)
		s.CircuitBreaker = clonePtr(s.CircuitBreaker)
		s.HealthCheck = clonePtr(s.HealthCheck)
		s.TLS = clonePtr(s.TLS)
		if s.GRPC != nil {
			g := *s.GRPC
			g.DescriptorSet = slices.Clone(g.DescriptorSet)
			s.GRPC = &g
		}
		if s.SOAP != nil {
			sp := *s.SOAP
			sp.WSSecurity = clonePtr(sp.WSSecurity)
			sp.Documents = maps.Clone(sp.Documents)
			s.SOAP = &sp
		}
		out.Services[i] = s
	}
	for i, rp := range c.Routes {
		if rp == nil { // null: refused by Validate
			continue
		}
		r := *rp
		r.Paths = slices.Clone(r.Paths)
		r.Methods = slices.Clone(r.Methods)
		r.Hosts = slices.Clone(r.Hosts)
		r.RateLimit = clonePtr(r.RateLimit)
		r.Query, r.RequestHeaders, r.ResponseHeaders = r.Query.clone(), r.RequestHeaders.clone(), r.ResponseHeaders.clone()
		if r.CORS != nil {
			cors := *r.CORS
			cors.AllowOrigins, cors.AllowMethods = slices.Clone(cors.AllowOrigins), slices.Clone(cors.AllowMethods)
			cors.AllowHeaders, cors.ExposeHeaders = slices.Clone(cors.AllowHeaders), slices.Clone(cors.ExposeHeaders)
			r.CORS = &cors
		}
		if r.Cache != nil {
			rc := *r.Cache
			rc.KeyHeaders, rc.KeyQuery = slices.Clone(rc.KeyHeaders), slices.Clone(rc.KeyQuery)
			rc.KeyCookies = slices.Clone(rc.KeyCookies)
			r.Cache = &rc
		}
		r.Aggregate = slices.Clone(r.Aggregate)
		r.UpgradeProtocols = slices.Clone(r.UpgradeProtocols)
		r.GRPC = clonePtr(r.GRPC)
		r.SOAP = clonePtr(r.SOAP)
		if r.Body != nil {
			b := *r.Body
			b.Request, b.Response = slices.Clone(b.Request), slices.Clone(b.Response)
			r.Body = &b
		}
		r.HSTS = clonePtr(r.HSTS)
		r.Split = slices.Clone(r.Split)
		r.Mirror = clonePtr(r.Mirror)
		r.IP = r.IP.clone()
		r.ExtAuthz = r.ExtAuthz.clone()
		if r.Schemas != nil {
			v := RouteValidate{Body: slices.Clone(r.Schemas.Body), Query: slices.Clone(r.Schemas.Query), Headers: slices.Clone(r.Schemas.Headers),
				OpenAPI: r.Schemas.OpenAPI, Operation: r.Schemas.Operation, Response: slices.Clone(r.Schemas.Response), ReportResponses: r.Schemas.ReportResponses}
			r.Schemas = &v
		}
		if r.Fault != nil {
			f := *r.Fault
			f.Delay, f.Abort = clonePtr(f.Delay), clonePtr(f.Abort)
			r.Fault = &f
		}
		if r.Match != nil {
			m := *r.Match
			m.Headers, m.Query, m.Cookies = maps.Clone(m.Headers), maps.Clone(m.Query), maps.Clone(m.Cookies)
			r.Match = &m
		}
		r.Precedence = nil
		if r.Auth != nil {
			a := *r.Auth
			a.Issuers, a.Consumers = slices.Clone(a.Issuers), slices.Clone(a.Consumers)
			a.Groups, a.Scopes = slices.Clone(a.Groups), slices.Clone(a.Scopes)
			a.Claims, a.ForwardClaims = maps.Clone(a.Claims), maps.Clone(a.ForwardClaims)
			if a.ClientCert != nil {
				cc := *a.ClientCert
				cc.CRLs = slices.Clone(cc.CRLs)
				a.ClientCert = &cc
			}
			if a.OIDC != nil {
				o := *a.OIDC
				o.Scopes = slices.Clone(o.Scopes)
				a.OIDC = &o
			}
			r.Auth = &a
		}
		out.Routes[i] = &r
	}
	for i, cs := range c.Consumers {
		cs.Groups = slices.Clone(cs.Groups)
		cs.JWTIssuers = slices.Clone(cs.JWTIssuers)
		cs.APIKeys = slices.Clone(cs.APIKeys)
		cs.BasicAuth = slices.Clone(cs.BasicAuth)
		cs.CertIdentities = slices.Clone(cs.CertIdentities)
		out.Consumers[i] = cs
	}
	for i, is := range c.Issuers {
		is.Audiences = slices.Clone(is.Audiences)
		is.Algorithms = slices.Clone(is.Algorithms)
		is.Keys = slices.Clone(is.Keys)
		is.Introspection, is.OIDC = clonePtr(is.Introspection), clonePtr(is.OIDC)
		out.Issuers[i] = is
	}
	for i, cert := range c.Certificates {
		cert.SNIs = slices.Clone(cert.SNIs)
		cert.Status = nil
		if cert.ACME != nil {
			a := *cert.ACME
			a.State = clonePtr(a.State)
			a.Challenges = slices.Clone(a.Challenges)
			cert.ACME = &a
		}
		out.Certificates[i] = cert
	}
	return out
}

// Service returns the named service and whether it exists.
func (c *Config) Service(name string) (*Service, bool) {
	i, ok := slices.BinarySearchFunc(c.Services, name, func(s Service, n string) int { return strings.Compare(s.Name, n) })
	if !ok {
		return nil, false
	}
	return &c.Services[i], true
}

// Route returns the named route and whether it exists.
func (c *Config) Route(name string) (*Route, bool) {
	i, ok := slices.BinarySearchFunc(c.Routes, name, func(r *Route, n string) int { return strings.Compare(r.Name, n) })
	if !ok {
		return nil, false
	}
	return c.Routes[i], true
}

// Consumer returns the named consumer and whether it exists.
func (c *Config) Consumer(name string) (*Consumer, bool) {
	i, ok := slices.BinarySearchFunc(c.Consumers, name, func(cs Consumer, n string) int { return strings.Compare(cs.Name, n) })
	if !ok {
		return nil, false
	}
	return &c.Consumers[i], true
}

// Issuer returns the named issuer and whether it exists.
func (c *Config) Issuer(name string) (*Issuer, bool) {
	i, ok := slices.BinarySearchFunc(c.Issuers, name, func(is Issuer, n string) int { return strings.Compare(is.Name, n) })
	if !ok {
		return nil, false
	}
	return &c.Issuers[i], true
}

// RoutesUsing lists the routes whose traffic goes to the named service.
func (c *Config) RoutesUsing(service string) []string {
	var names []string
	for i := range c.Routes {
		if slices.Contains(c.Routes[i].Backends(), service) {
			names = append(names, c.Routes[i].Name)
		}
	}
	return names
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
