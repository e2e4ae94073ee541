package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Limits on values. They keep a single bad object from exhausting a data plane.
const (
	MaxNameLen        = 128
	MaxTargets        = 1024
	MaxPathsPerRoute  = 64
	MaxHostsPerRoute  = 64
	MaxPathLen        = 1024
	MaxParamsPerPath  = 16
	MaxRouteTimeout   = time.Hour
	MaxConnectTimeout = time.Minute
	MaxWeight         = 10000
	MaxBodyBytesLimit = 1 << 30
)

// knownMethods are the methods a route may name. Extension methods are rare
// at gateways, and a typo ("GTE") should fail loudly rather than never match.
var knownMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true,
}

// Normalize puts values into their canonical form (methods upper case,
// hosts lower case, default weights spelled out) so that validation,
// matching and diffs compare like with like. The control plane applies it
// before validating.
func (r *Route) Normalize() {
	for i, m := range r.Methods {
		r.Methods[i] = strings.ToUpper(strings.TrimSpace(m))
	}
	for i, h := range r.Hosts {
		r.Hosts[i] = strings.ToLower(strings.TrimSpace(h))
	}
	for i := range r.Aggregate {
		r.Aggregate[i].Method = strings.ToUpper(strings.TrimSpace(r.Aggregate[i].Method))
	}
	if r.CORS != nil {
		for i, m := range r.CORS.AllowMethods {
			r.CORS.AllowMethods[i] = strings.ToUpper(strings.TrimSpace(m))
		}
	}
	if r.Match != nil {
		// A copy: the object may share its match with a published one.
		m := *r.Match
		m.normalize()
		r.Match = &m
	}
	r.Precedence = nil
}

// Normalize spells out default target weights (0 means 1) and the default
// load balancer.
func (s *Service) Normalize() {
	for i := range s.Targets {
		if s.Targets[i].Weight == 0 {
			s.Targets[i].Weight = 1
		}
	}
	if s.LoadBalancer == "" {
		s.LoadBalancer = LBRoundRobin
	}
	if s.Protocol == ProtocolHTTP {
		s.Protocol = ""
	}
}

// Normalize has nothing to do for a consumer; it completes Object.
func (c *Consumer) Normalize() {}

// ValidateName checks an object name: it appears in URLs and store keys.
func ValidateName(name string) error {
	if msg := nameProblem(name); msg != "" {
		return Invalid("name", "%s", msg)
	}
	return nil
}

func nameProblem(name string) string {
	if name == "" {
		return "is required"
	}
	if len(name) > MaxNameLen {
		return fmt.Sprintf("must be at most %d characters", MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '-' || c == '_' || c == '.')
		if !ok {
			return fmt.Sprintf("%q: use letters, digits, '-', '_' and '.', starting with a letter or digit", name)
		}
	}
	return ""
}

// Validate checks the service on its own (not its relations to others).
func (s *Service) Validate() error {
	var l errorList
	s.validate(&l, "")
	return l.err()
}

func (s *Service) validate(l *errorList, p string) {
	if msg := nameProblem(s.Name); msg != "" {
		l.add(join(p, "name"), "%s", msg)
	}
	switch {
	case len(s.Targets) == 0 && s.Consul == nil:
		l.add(join(p, "targets"), "at least one target (or a consul source) is required")
	case len(s.Targets) > 0 && s.Consul != nil:
		l.add(join(p, "consul"), "give either targets or a consul source, not both")
	}
	if s.Consul != nil {
		s.Consul.validate(l, join(p, "consul"))
		if s.HealthCheck != nil {
			l.add(join(p, "health_check"), "Consul services are health-checked by Consul; active checks apply to static targets")
		}
	}
	s.validatePolicies(l, p)
	s.validateProtocol(l, p)
	s.validateTLS(l, p, false)
	if len(s.Targets) > MaxTargets {
		l.add(join(p, "targets"), "at most %d targets", MaxTargets)
	}
	seen := make(map[string]int, len(s.Targets))
	for i, t := range s.Targets {
		tp := join(p, fmt.Sprintf("targets[%d]", i))
		if msg := targetURLProblem(t.URL); msg != "" {
			l.add(join(tp, "url"), "%s", msg)
		} else if j, dup := seen[t.URL]; dup {
			l.add(join(tp, "url"), "duplicate of targets[%d]", j)
		} else {
			seen[t.URL] = i
		}
		if t.Weight < 0 || t.Weight > MaxWeight {
			l.add(join(tp, "weight"), "must be between 0 and %d", MaxWeight)
		}
	}
	if d := s.ConnectTimeout.Std(); d < 0 || d > MaxConnectTimeout {
		l.add(join(p, "connect_timeout"), "must be between 0 and %s", MaxConnectTimeout)
	}
}

func targetURLProblem(raw string) string { return httpURLProblem(raw, false) }

// httpURLProblem is the one check of an http(s) URL the gateway calls:
// a service target, or a decision service (which may carry a query).
func httpURLProblem(raw string, query bool) string {
	if raw == "" {
		return "is required"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Sprintf("not a valid URL: %v", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "scheme must be http or https"
	case u.Host == "" || u.Hostname() == "":
		return "a host is required"
	case u.User != nil:
		return "credentials in the URL are not allowed"
	case query && u.Fragment != "":
		return "a fragment is not allowed"
	case !query && (u.RawQuery != "" || u.ForceQuery || u.Fragment != ""):
		return "query and fragment are not allowed"
	case u.Path != "" && !strings.HasPrefix(u.Path, "/"):
		return "path must start with '/'"
	}
	if port := u.Port(); port != "" {
		var n int
		if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n < 1 || n > 65535 {
			return "port must be between 1 and 65535"
		}
	}
	return ""
}

// Validate checks the route on its own (not whether its service exists or
// whether another route already matches the same requests).
func (r *Route) Validate() error {
	var l errorList
	r.validate(&l, "")
	return l.err()
}

func (r *Route) validate(l *errorList, p string) {
	r.validateHTTPS(l, p)
	r.validateRouteSOAP(l, p)
	r.validateBody(l, p)
	if msg := nameProblem(r.Name); msg != "" {
		l.add(join(p, "name"), "%s", msg)
	}
	if len(r.Paths) == 0 {
		l.add(join(p, "paths"), "at least one path is required")
	}
	if len(r.Paths) > MaxPathsPerRoute {
		l.add(join(p, "paths"), "at most %d paths", MaxPathsPerRoute)
	}
	seenPath := map[string]int{}
	for i, path := range r.Paths {
		fp := join(p, fmt.Sprintf("paths[%d]", i))
		shape, err := PathShape(path)
		if err != nil {
			l.add(fp, "%v", err)
			continue
		}
		if j, dup := seenPath[shape]; dup {
			l.add(fp, "matches the same requests as paths[%d]", j)
		}
		seenPath[shape] = i
	}
	seenMethod := map[string]bool{}
	for i, m := range r.Methods {
		fp := join(p, fmt.Sprintf("methods[%d]", i))
		switch {
		case !knownMethods[m]:
			l.add(fp, "unknown HTTP method %q", m)
		case seenMethod[m]:
			l.add(fp, "duplicate method %q", m)
		}
		seenMethod[m] = true
	}
	if r.Match != nil {
		r.Match.validate(l, join(p, "match"))
	}
	r.validateSplit(l, p)
	if r.Mirror != nil {
		r.Mirror.validate(l, join(p, "mirror"), r)
	}
	if r.IP != nil {
		r.IP.validate(l, join(p, "ip"))
	}
	if r.Fault != nil {
		r.Fault.validate(l, join(p, "fault"))
	}
	if r.Schemas != nil {
		r.Schemas.validate(l, join(p, "validate"), r.Methods)
	}
	if r.Priority < MinPriority || r.Priority > MaxPriority {
		l.add(join(p, "priority"), "must be between %d and %d", MinPriority, MaxPriority)
	}
	if len(r.Hosts) > MaxHostsPerRoute {
		l.add(join(p, "hosts"), "at most %d hosts", MaxHostsPerRoute)
	}
	seenHost := map[string]bool{}
	for i, h := range r.Hosts {
		fp := join(p, fmt.Sprintf("hosts[%d]", i))
		if msg := HostProblem(h); msg != "" {
			l.add(fp, "%s", msg)
		} else if seenHost[h] {
			l.add(fp, "duplicate host %q", h)
		}
		seenHost[h] = true
	}
	switch {
	case r.Service == "" && len(r.Aggregate) == 0 && len(r.Split) == 0:
		l.add(join(p, "service"), "is required (or aggregate, or backends)")
	case r.Service == "":
	case nameProblem(r.Service) != "":
		l.add(join(p, "service"), "%s", nameProblem(r.Service))
	}
	if d := r.Timeout.Std(); d < 0 || d > MaxRouteTimeout {
		l.add(join(p, "timeout"), "must be between 0 and %s", MaxRouteTimeout)
	}
	if r.MaxBodyBytes < 0 || r.MaxBodyBytes > MaxBodyBytesLimit {
		l.add(join(p, "max_body_bytes"), "must be between 0 (default) and %d", MaxBodyBytesLimit)
	}
	if r.Auth != nil {
		r.Auth.validate(l, join(p, "auth"))
	}
	if r.ExtAuthz != nil {
		r.ExtAuthz.validate(l, join(p, "ext_authz"))
	}
	if r.RateLimit != nil {
		r.RateLimit.validate(l, join(p, "rate_limit"))
		if k := r.RateLimit.Key; keyNeedsConsumer(k) && r.Auth == nil {
			l.add(join(p, "rate_limit.key"), "%q needs auth on the route to know the consumer", k)
		}
	}
	if r.MaxInFlight < 0 || r.MaxInFlight > 1_000_000 {
		l.add(join(p, "max_in_flight"), "must be between 0 (no cap) and 1000000")
	}
	if d := r.QueueTimeout.Std(); d < 0 || d > time.Minute {
		l.add(join(p, "queue_timeout"), "must be between 0 and 1m")
	}
	if r.QueueTimeout != 0 && r.MaxInFlight == 0 {
		l.add(join(p, "queue_timeout"), "only applies with max_in_flight")
	}
	for i, up := range r.UpgradeProtocols {
		if up == "" || !isToken(up) {
			l.add(join(p, fmt.Sprintf("upgrade_protocols[%d]", i)), "must be an Upgrade protocol token, e.g. \"websocket\"")
		}
	}
	r.validateTunnel(l, p)
	r.validateTraffic(l, p)
}

// HostProblem says what is wrong with a route host, or "" if it is a valid
// lower-case DNS name, optionally with a leading "*." wildcard label. Ports
// are not part of host matching. The data plane's router applies the same
// rule when it compiles.
func HostProblem(h string) string {
	name := strings.TrimPrefix(h, "*.")
	if name == "" || len(name) > 253 {
		return "must be a host name such as api.example.com or *.example.com"
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Sprintf("%q is not a valid host name", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Sprintf("%q is not a valid host name (lower-case letters, digits, '-' and dots)", h)
			}
		}
	}
	return ""
}

// Validate checks a consumer on its own.
func (c *Consumer) Validate() error {
	var l errorList
	c.validate(&l, "")
	return l.err()
}

func (c *Consumer) validate(l *errorList, p string) {
	if msg := nameProblem(c.Name); msg != "" {
		l.add(join(p, "name"), "%s", msg)
	}
	for i, k := range c.APIKeys {
		kp := join(p, fmt.Sprintf("api_keys[%d]", i))
		if !strings.HasPrefix(k.Hash, "sha256:") || len(k.Hash) != len("sha256:")+64 {
			l.add(join(kp, "hash"), "must be sha256:<64 hex digits>; keys are created with POST /v1/consumers/{name}/api-keys")
		}
		if nameProblem(k.ID) != "" {
			l.add(join(kp, "id"), "%s", nameProblem(k.ID))
		}
	}
	seen := map[string]bool{}
	for i, g := range c.Groups {
		fp := join(p, fmt.Sprintf("groups[%d]", i))
		if msg := nameProblem(g); msg != "" {
			l.add(fp, "%s", msg)
		} else if seen[g] {
			l.add(fp, "duplicate group %q", g)
		}
		seen[g] = true
	}
	for i, n := range c.JWTIssuers {
		if msg := nameProblem(n); msg != "" {
			l.add(join(p, fmt.Sprintf("jwt_issuers[%d]", i)), "%s", msg)
		}
	}
	c.validateBasic(l, p)
	c.validateCertIdentities(l, p)
}

// Validate checks a whole configuration: every object, unique names, that
// every route names an existing service, and that no two routes match exactly
// the same requests. Field paths are relative to the Config document.
func (c *Config) Validate() error {
	l := c.check()
	return l.err()
}

// check runs every rule of Validate and keeps both severities.
func (c *Config) check() *errorList {
	var l errorList
	services := make(map[string]int, len(c.Services))
	for i := range c.Services {
		s := &c.Services[i]
		p := fmt.Sprintf("services[%d]", i)
		s.validate(&l, p)
		if s.TLS != nil && s.TLS.ClientCert != "" && s.TLS.ClientKey == "" {
			l.add(join(p, "tls.client_key"), "is required with client_cert (a PEM private key matching it)")
		}
		if j, dup := services[s.Name]; dup {
			l.conflictf(join(p, "name"), "duplicate service name %q (also services[%d])", s.Name, j)
		}
		services[s.Name] = i
	}
	routes := make(map[string]int, len(c.Routes))
	claims := newRouteClaims(len(c.Routes))
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if r == nil {
			l.add(p, "must be an object, not null")
			continue
		}
		r.validate(&l, p)
		if j, dup := routes[r.Name]; dup {
			l.conflictf(join(p, "name"), "duplicate route name %q (also routes[%d])", r.Name, j)
		}
		routes[r.Name] = i
		checkRouteServices(&l, p, r, func(name string) (*Service, bool) {
			j, ok := services[name]
			if !ok {
				return nil, false
			}
			return &c.Services[j], true
		})
		claims.claim(r, func(path int, key matchKey, holder string) {
			l.conflictf(join(p, fmt.Sprintf("paths[%d]", path)), "%s", ambiguity(key, holder))
		})
	}
	consumers := make(map[string]int, len(c.Consumers))
	keyHashes := map[string]string{}
	usernames := map[string]string{}
	certIDs := map[string]string{}
	for i := range c.Consumers {
		cs := &c.Consumers[i]
		p := fmt.Sprintf("consumers[%d]", i)
		cs.validate(&l, p)
		if j, dup := consumers[cs.Name]; dup {
			l.conflictf(join(p, "name"), "duplicate consumer name %q (also consumers[%d])", cs.Name, j)
		}
		consumers[cs.Name] = i
		for k, key := range cs.APIKeys {
			if owner, dup := keyHashes[key.Hash]; dup {
				l.conflictf(join(p, fmt.Sprintf("api_keys[%d]", k)), "the same key already belongs to consumer %q", owner)
			}
			keyHashes[key.Hash] = cs.Name
		}
		checkBasicUsernames(&l, p, cs, usernames)
		checkCertIdentities(&l, p, cs, certIDs)
	}
	issuers := make(map[string]int, len(c.Issuers))
	issValues := map[string]string{}
	for i := range c.Issuers {
		is := &c.Issuers[i]
		p := fmt.Sprintf("issuers[%d]", i)
		is.validate(&l, p)
		is.checkSecrets(&l, p)
		if j, dup := issuers[is.Name]; dup {
			l.conflictf(join(p, "name"), "duplicate issuer name %q (also issuers[%d])", is.Name, j)
		}
		if other, dup := issValues[is.Issuer]; dup {
			checkIssValue(&l, p, is, other)
		}
		issuers[is.Name], issValues[is.Issuer] = i, is.Name
	}
	certificates := make(map[string]int, len(c.Certificates))
	sniOwners := map[string]string{}
	for i := range c.Certificates {
		cert := &c.Certificates[i]
		p := fmt.Sprintf("certificates[%d]", i)
		cert.validate(&l, p, true)
		if j, dup := certificates[cert.Name]; dup {
			l.conflictf(join(p, "name"), "duplicate certificate name %q (also certificates[%d])", cert.Name, j)
		}
		certificates[cert.Name] = i
		for k, s := range cert.SNIs {
			if owner, dup := sniOwners[s]; dup && owner != cert.Name {
				checkSNIOwner(&l, join(p, fmt.Sprintf("snis[%d]", k)), s, owner)
			} else if !dup {
				sniOwners[s] = cert.Name
			}
		}
	}
	issuerExists := func(name string) bool { _, ok := issuers[name]; return ok }
	issuerAt := func(name string) (*Issuer, bool) {
		if i, ok := issuers[name]; ok {
			return &c.Issuers[i], true
		}
		return nil, false
	}
	for i, r := range c.Routes {
		if r != nil {
			checkRouteIssuers(&l, fmt.Sprintf("routes[%d]", i), r, issuerExists)
			checkRouteOIDC(&l, fmt.Sprintf("routes[%d]", i), r, issuerAt)
		}
	}
	for i := range c.Consumers {
		checkIssuerRefs(&l, fmt.Sprintf("consumers[%d].jwt_issuers", i), c.Consumers[i].JWTIssuers, issuerExists)
	}
	if c.Global.IP != nil {
		c.Global.IP.validate(&l, "global.ip")
	}
	if rl := c.Global.RateLimit; rl != nil {
		rl.validate(&l, "global.rate_limit")
		if k := rl.Key; keyNeedsConsumer(k) {
			l.add("global.rate_limit.key", "%q needs an authenticated consumer, which not every route has; use route, ip or header:<Name>", k)
		}
	}
	return &l
}

// PathShape validates a route path pattern and returns its shape: the pattern
// with parameter names erased ("/users/{id}" → "/users/{}",
// "/users/{id:[0-9]+}" → "/users/{:[0-9]+}"), so that patterns matching the
// same request paths compare equal.
func PathShape(path string) (string, error) {
	switch {
	case path == "":
		return "", fmt.Errorf("path is empty")
	case path[0] != '/':
		return "", fmt.Errorf("%q must start with '/'", path)
	case len(path) > MaxPathLen:
		return "", fmt.Errorf("path longer than %d bytes", MaxPathLen)
	}
	if path == "/" || path == "/*" {
		return path, nil
	}
	segs := strings.Split(path[1:], "/")
	var b strings.Builder
	params := map[string]bool{}
	for i, seg := range segs {
		last := i == len(segs)-1
		switch {
		case seg == "" && last:
			// A trailing slash is significant: "/a/" and "/a" are different paths.
		case seg == "":
			return "", fmt.Errorf("%q has an empty segment ('//')", path)
		case seg == "." || seg == "..":
			return "", fmt.Errorf("%q has a dot segment", path)
		case seg == "*":
			if !last {
				return "", fmt.Errorf("%q: '*' is only allowed as the last segment (\"/prefix/*\")", path)
			}
		case seg[0] == '{':
			name, constraint, _ := ParamSegment(seg)
			if !strings.HasSuffix(seg, "}") || !isIdent(name) || strings.Contains(seg[1:len(seg)-1], ":") && constraint == "" {
				return "", fmt.Errorf("%q: parameter segment %q must look like {name} or {name:regex}", path, seg)
			}
			if constraint != "" {
				if _, err := CompileRegexp(constraint); err != nil {
					return "", fmt.Errorf("%q: parameter {%s}: %w", path, name, err)
				}
			}
			if params[name] {
				return "", fmt.Errorf("%q: parameter {%s} appears twice", path, name)
			}
			params[name] = true
			if len(params) > MaxParamsPerPath {
				return "", fmt.Errorf("%q: at most %d parameters", path, MaxParamsPerPath)
			}
			// The constraint stays in the shape: "/{id:[0-9]+}" and
			// "/{id}" are told apart (the constrained one is tried first).
			seg = "{:" + constraint + "}"
			if constraint == "" {
				seg = "{}"
			}
		default:
			for j := 0; j < len(seg); j++ {
				if !isPathChar(seg[j]) {
					return "", fmt.Errorf("%q: character %q is not allowed in a path segment", path, seg[j])
				}
			}
		}
		b.WriteByte('/')
		b.WriteString(seg)
	}
	return b.String(), nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// isPathChar reports RFC 3986 pchar characters, minus '%', '{', '}' and '*':
// patterns match decoded, normalised request paths, so escapes have no place
// in them, and the others carry pattern syntax.
func isPathChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()+,;=:@", c) >= 0
}

func (c *ConsulSource) validate(l *errorList, p string) {
	if msg := nameProblem(c.Service); msg != "" {
		l.add(join(p, "service"), "%s", msg)
	}
	for i, tag := range c.Tags {
		if tag == "" || len(tag) > MaxNameLen || strings.ContainsAny(tag, " \t\r\n") {
			l.add(join(p, fmt.Sprintf("tags[%d]", i)), "must be a non-empty tag without spaces")
		}
	}
	if c.Datacenter != "" && nameProblem(c.Datacenter) != "" {
		l.add(join(p, "datacenter"), "%s", nameProblem(c.Datacenter))
	}
	if c.Scheme != "" && c.Scheme != "http" && c.Scheme != "https" {
		l.add(join(p, "scheme"), "must be http or https")
	}
}

func (s *Service) validatePolicies(l *errorList, p string) {
	switch s.LoadBalancer {
	case "", LBRoundRobin, LBWeighted, LBLeastRequest:
		if s.HashOn != "" {
			l.add(join(p, "hash_on"), "only applies to load_balancer consistent_hash")
		}
	case LBConsistentHash:
		if msg := hashOnProblem(s.HashOn); msg != "" {
			l.add(join(p, "hash_on"), "%s", msg)
		}
	default:
		l.add(join(p, "load_balancer"), "must be one of round_robin, weighted, least_request, consistent_hash")
	}
	if d := s.Timeout.Std(); d < 0 || d > MaxRouteTimeout {
		l.add(join(p, "timeout"), "must be between 0 and %s", MaxRouteTimeout)
	}
	if r := s.Retries; r != nil {
		rp := join(p, "retries")
		if r.Attempts < 0 || r.Attempts > 10 {
			l.add(join(rp, "attempts"), "must be between 1 and 10 (0: the default, %d)", DefaultRetryAttempts)
		}
		for i, st := range r.OnStatuses {
			if st < 500 || st > 599 {
				l.add(join(rp, fmt.Sprintf("on_statuses[%d]", i)), "must be a 5xx status")
			}
		}
		if r.BudgetPercent < 0 || r.BudgetPercent > 100 {
			l.add(join(rp, "budget_percent"), "must be between 0 and 100")
		}
		if r.MinPerSecond < 0 || r.MinPerSecond > 10000 {
			l.add(join(rp, "min_per_second"), "must be between 0 and 10000")
		}
	}
	if o := s.OutlierDetection; o != nil {
		op := join(p, "outlier_detection")
		if o.ConsecutiveFailures < 0 || o.ConsecutiveFailures > 1000 {
			l.add(join(op, "consecutive_failures"), "must be between 1 and 1000")
		}
		if o.BaseEjection < 0 || o.BaseEjection.Std() > time.Hour {
			l.add(join(op, "base_ejection"), "must be between 0 and 1h")
		}
		if o.MaxEjection < 0 || o.MaxEjection.Std() > 24*time.Hour {
			l.add(join(op, "max_ejection"), "must be between 0 and 24h")
		}
		if o.MaxEjection != 0 && o.MaxEjection < o.BaseEjection {
			l.add(join(op, "max_ejection"), "must not be shorter than base_ejection")
		}
		if o.MaxEjectedPercent < 0 || o.MaxEjectedPercent > 100 {
			l.add(join(op, "max_ejected_percent"), "must be between 0 and 100")
		}
	}
	if b := s.CircuitBreaker; b != nil {
		bp := join(p, "circuit_breaker")
		if b.FailureRatio < 0 || b.FailureRatio > 1 {
			l.add(join(bp, "failure_ratio"), "must be between 0 and 1")
		}
		if b.MinRequests < 0 || b.MinRequests > 1_000_000 {
			l.add(join(bp, "min_requests"), "must be between 1 and 1000000")
		}
		if b.Interval < 0 || b.Interval.Std() > time.Hour {
			l.add(join(bp, "interval"), "must be between 0 and 1h")
		}
		if b.OpenTimeout < 0 || b.OpenTimeout.Std() > time.Hour {
			l.add(join(bp, "open_timeout"), "must be between 0 and 1h")
		}
		if b.HalfOpenRequests < 0 || b.HalfOpenRequests > 1000 {
			l.add(join(bp, "half_open_requests"), "must be between 1 and 1000")
		}
	}
	if h := s.HealthCheck; h != nil {
		hp := join(p, "health_check")
		if h.Path == "" || h.Path[0] != '/' || strings.ContainsAny(h.Path, " #") {
			l.add(join(hp, "path"), "must be an absolute path such as /healthz")
		}
		if h.Interval < 0 || (h.Interval != 0 && h.Interval.Std() < 100*time.Millisecond) || h.Interval.Std() > time.Hour {
			l.add(join(hp, "interval"), "must be between 100ms and 1h")
		}
		if h.Timeout < 0 || h.Timeout.Std() > time.Minute {
			l.add(join(hp, "timeout"), "must be between 0 and 1m")
		}
		if h.HealthyThreshold < 0 || h.HealthyThreshold > 100 {
			l.add(join(hp, "healthy_threshold"), "must be between 1 and 100")
		}
		if h.UnhealthyThreshold < 0 || h.UnhealthyThreshold > 100 {
			l.add(join(hp, "unhealthy_threshold"), "must be between 1 and 100")
		}
	}
}

// hashOnProblem checks a consistent-hash key: "header:<Name>",
// "cookie:<name>" or "client_ip".
func hashOnProblem(h string) string {
	kind, name, _ := strings.Cut(h, ":")
	switch {
	case h == "client_ip":
		return ""
	case (kind == "header" || kind == "cookie") && name != "" && isToken(name):
		return ""
	}
	return `must be "header:<Name>", "cookie:<name>" or "client_ip"`
}

// isToken reports an RFC 9110 token (header and cookie names).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return s != ""
}

// keyNeedsConsumer says whether a rate-limit key counts per authenticated
// consumer ("consumer", "claim:<name>"), which only a route with auth has.
func keyNeedsConsumer(key string) bool {
	return key == "consumer" || strings.HasPrefix(key, "claim:")
}
