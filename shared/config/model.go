// Package config holds Portico's declarative configuration model: the objects
// an operator manages through the admin API (services, routes, consumers), how
// they are decoded strictly from JSON, and how they are validated.
//
// The model is plain data. The control plane stores it; the data plane compiles
// it into immutable runtime structures of its own. Nothing here runs requests.
package config

import (
	"encoding/json"
	"reflect"
	"strconv"
	"time"
)

var durationType = reflect.TypeFor[Duration]()

// Kind names a type of object in the configuration.
type Kind string

const (
	KindService  Kind = "service"
	KindRoute    Kind = "route"
	KindConsumer Kind = "consumer"
	KindIssuer   Kind = "issuer"
	// KindCertificate: TLS certificates served by the data planes.
	KindCertificate Kind = "certificate"
)

// Meta is what the control plane maintains on every object. Clients may send
// it back unchanged (so GET output can be PUT again); its values are ignored on
// input and recomputed on every write.
type Meta struct {
	// Version counts the writes of this object, starting at 1. It is the
	// object's ETag and what If-Match compares against.
	Version int64 `json:"version,omitempty"`
	// Revision is the global revision at which the object last changed.
	Revision  int64     `json:"revision,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Service is an upstream: where a route's traffic goes, how it is spread
// over the instances, and how failures are ridden out.
type Service struct {
	Name string `json:"name"`
	// Targets are static instances. Exactly one of Targets and Consul is set.
	Targets []Target `json:"targets,omitempty"`
	// Consul discovers the instances from Consul's health API: only
	// instances whose checks pass receive traffic.
	Consul *ConsulSource `json:"consul,omitempty"`
	// LoadBalancer is round_robin (default), weighted, least_request or
	// consistent_hash.
	LoadBalancer string `json:"load_balancer,omitempty"`
	// HashOn is the consistent_hash key: "header:<Name>", "cookie:<name>"
	// or "client_ip". Requests without the key are spread round robin.
	HashOn string `json:"hash_on,omitempty"`
	// ConnectTimeout bounds dialing one instance. Zero means the default.
	ConnectTimeout Duration `json:"connect_timeout,omitzero"`
	// Timeout bounds the wait for response headers of one attempt; the
	// route's timeout bounds the whole exchange. Zero: only the route's.
	Timeout          Duration          `json:"timeout,omitzero"`
	Retries          *Retries          `json:"retries,omitempty"`
	OutlierDetection *OutlierDetection `json:"outlier_detection,omitempty"`
	CircuitBreaker   *CircuitBreaker   `json:"circuit_breaker,omitempty"`
	// HealthCheck actively probes static targets; Consul services rely on
	// Consul's own checks.
	HealthCheck *HealthCheck `json:"health_check,omitempty"`
	// Protocol is http (default) or grpc: a gRPC service is reached over
	// HTTP/2 (h2c for http:// targets, TLS with ALPN h2 for https://), by
	// routes that name a method (JSON → gRPC) or, without one, by gRPC
	// clients whose calls pass through as they are (GRPCPassThrough).
	Protocol string       `json:"protocol,omitempty"`
	GRPC     *ServiceGRPC `json:"grpc,omitempty"`
	// SOAP describes a protocol soap service: its WSDL (soap.go).
	SOAP *ServiceSOAP `json:"soap,omitempty"`
	// TLS verifies https instances against a CA of their own and presents
	// a client certificate to them (servicetls.go). Without it, https
	// instances are verified against the system roots.
	TLS *ServiceTLS `json:"tls,omitempty"`
	Meta
}

// Load-balancing policies.
const (
	LBRoundRobin     = "round_robin"
	LBWeighted       = "weighted"
	LBLeastRequest   = "least_request"
	LBConsistentHash = "consistent_hash"
)

// ConsulSource names a service in Consul's catalog.
type ConsulSource struct {
	Service string `json:"service"`
	// Tags: only instances carrying every one of these tags.
	Tags       []string `json:"tags,omitempty"`
	Datacenter string   `json:"datacenter,omitempty"`
	// Scheme used to reach the instances: http (default) or https.
	Scheme string `json:"scheme,omitempty"`
}

// Retries retry a failed attempt on another instance. Idempotent requests
// are retried on connection errors and on OnStatuses; any request is retried
// when the connection was never established. Omitted: the defaults below.
type Retries struct {
	// Attempts counts tries including the first; 1 turns retries off.
	Attempts int `json:"attempts,omitempty"`
	// OnStatuses lists upstream statuses that make an idempotent request
	// retry (e.g. 502, 503, 504). Empty: only connection failures.
	OnStatuses []int `json:"on_statuses,omitempty"`
	// BudgetPercent caps retries at this share of requests, so that retries
	// cannot multiply load during an outage; MinPerSecond retries are always
	// allowed so that a quiet service still gets them.
	BudgetPercent int `json:"budget_percent,omitempty"`
	MinPerSecond  int `json:"min_per_second,omitempty"`
}

// OutlierDetection takes an instance out of rotation after consecutive
// failures (connection errors, timeouts, 5xx), for an interval that doubles
// with each ejection up to MaxEjection, and puts it back when it recovers.
type OutlierDetection struct {
	Disabled            bool     `json:"disabled,omitempty"`
	ConsecutiveFailures int      `json:"consecutive_failures,omitempty"`
	BaseEjection        Duration `json:"base_ejection,omitzero"`
	MaxEjection         Duration `json:"max_ejection,omitzero"`
	// MaxEjectedPercent keeps part of the pool in service however many
	// instances fail.
	MaxEjectedPercent int `json:"max_ejected_percent,omitempty"`
}

// CircuitBreaker fails requests to a service at once (503) while most recent
// requests to it failed, giving it room to recover.
type CircuitBreaker struct {
	Disabled bool `json:"disabled,omitempty"`
	// The breaker opens when, within Interval, at least MinRequests
	// requests completed and FailureRatio of them failed.
	FailureRatio float64  `json:"failure_ratio,omitempty"`
	MinRequests  int      `json:"min_requests,omitempty"`
	Interval     Duration `json:"interval,omitzero"`
	// OpenTimeout is how long it stays open before letting trial requests
	// through (HalfOpenRequests of them).
	OpenTimeout      Duration `json:"open_timeout,omitzero"`
	HalfOpenRequests int      `json:"half_open_requests,omitempty"`
}

// HealthCheck probes every static target with GET Path; 2xx and 3xx are
// healthy.
type HealthCheck struct {
	Path               string   `json:"path"`
	Interval           Duration `json:"interval,omitzero"`
	Timeout            Duration `json:"timeout,omitzero"`
	HealthyThreshold   int      `json:"healthy_threshold,omitempty"`
	UnhealthyThreshold int      `json:"unhealthy_threshold,omitempty"`
}

// Target is one static upstream address.
type Target struct {
	URL string `json:"url"`
	// Weight is relative to the other targets; 0 means 1.
	Weight int `json:"weight,omitempty"`
}

// Route maps requests to a service.
type Route struct {
	Name string `json:"name"`
	// Paths are exact ("/health"), carry {param} segments ("/users/{id}"), or
	// end in "/*" to match a prefix ("/users/*" matches "/users" and below).
	Paths []string `json:"paths"`
	// Methods limits the route to these HTTP methods; empty means any.
	Methods []string `json:"methods,omitempty"`
	// Hosts limits the route to these hosts ("api.example.com" or
	// "*.example.com"); empty means any host.
	Hosts []string `json:"hosts,omitempty"`
	// Match adds conditions on headers, query parameters and cookies
	// (match.go): the route serves only requests meeting all of them.
	Match *RouteMatch `json:"match,omitempty"`
	// Priority ranks routes that claim the same request and tie on path,
	// method and number of conditions: the higher wins (default 0).
	Priority int `json:"priority,omitempty"`
	// Split sends each request to one of several services by weight
	// (split.go), instead of Service; Sticky keeps a key ("consumer",
	// "header:<Name>", "cookie:<name>") on one of them.
	Split  []SplitBackend `json:"backends,omitempty"`
	Sticky string         `json:"sticky,omitempty"`
	// Mirror copies a share of the requests to another service, fire
	// and forget (mirror.go).
	Mirror *Mirror `json:"mirror,omitempty"`
	// Fault injects delays and error answers for resilience drills
	// (fault.go).
	Fault *Fault `json:"fault,omitempty"`
	// IP admits or refuses requests by client address, after the global
	// IP rules (iprules.go).
	IP *IPRules `json:"ip,omitempty"`
	// Schemas refuse requests whose body does not conform to a JSON
	// Schema (bodyschema.go).
	Schemas *RouteValidate `json:"validate,omitempty"`
	// Precedence is computed by the admin API on output and ignored on
	// input (like Meta), so GET output can be PUT back.
	Precedence *Precedence `json:"precedence,omitempty"`
	// Service receives the traffic. An aggregating route leaves it empty
	// and names its services in Aggregate.
	Service string `json:"service,omitempty"`
	// StripPrefix removes the matched prefix of a "/*" path before proxying.
	StripPrefix bool `json:"strip_prefix,omitempty"`
	// Rewrite replaces the upstream path with a template of the route's
	// {param}s and, for "/*" paths, {*}: the rest of the path.
	Rewrite string `json:"rewrite,omitempty"`
	// Query edits the query string sent upstream.
	Query *Edits `json:"query,omitempty"`
	// RequestHeaders and ResponseHeaders edit headers on the way in and out.
	RequestHeaders  *Edits `json:"request_headers,omitempty"`
	ResponseHeaders *Edits `json:"response_headers,omitempty"`
	// CORS answers preflights at the gateway and adds the CORS headers.
	CORS *CORS `json:"cors,omitempty"`
	// Cache caches GET and HEAD responses.
	Cache *RouteCache `json:"cache,omitempty"`
	// Aggregate fans one request out to several services in parallel and
	// merges their JSON. AggregateRequireAll fails the request (502) when
	// any backend fails, instead of answering with what arrived.
	Aggregate           []AggregateBackend `json:"aggregate,omitempty"`
	AggregateRequireAll bool               `json:"aggregate_require_all,omitempty"`
	// GRPC maps the route to a unary method of its (protocol grpc) service:
	// the JSON body, path and query parameters become the request message.
	// A route to a gRPC service without it passes gRPC calls through.
	GRPC *RouteGRPC `json:"grpc,omitempty"`
	// SOAP maps the route to an operation of its (protocol soap) service:
	// the JSON body, path and query parameters become the input message.
	SOAP *RouteSOAP `json:"soap,omitempty"`
	// Body edits JSON request and response bodies by JSON pointer
	// (bodyedit.go).
	Body *RouteBody `json:"body,omitempty"`
	// Timeout bounds the whole upstream exchange up to the response headers.
	// Zero means the default (30s).
	Timeout Duration `json:"timeout,omitzero"`
	// MaxBodyBytes caps the request body; 0 means the default (10 MiB).
	// Request size limits are always on: there is no "unlimited".
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// Auth requires an authenticated (and possibly specific) consumer.
	Auth *RouteAuth `json:"auth,omitempty"`
	// ExtAuthz asks a decision service about each request (extauthz.go).
	ExtAuthz *ExtAuthz `json:"ext_authz,omitempty"`
	// RateLimit limits requests per key across the whole cluster; without
	// one, the global default (if any) applies.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	// MaxInFlight caps concurrent requests on this route per data plane;
	// 0 means no cap. Over the cap: 503 at once, or after waiting up to
	// QueueTimeout for a slot.
	MaxInFlight  int      `json:"max_in_flight,omitempty"`
	QueueTimeout Duration `json:"queue_timeout,omitzero"`
	// UpgradeProtocols are the Upgrade tokens (besides "websocket", always
	// allowed) for which the route opens a tunnel to its service; any other
	// Upgrade header is dropped and the request goes on as a plain one.
	UpgradeProtocols []string `json:"upgrade_protocols,omitempty"`
	// TunnelIdleTimeout and TunnelMaxLifetime tighten the data plane's
	// limits on the route's upgraded connections (WebSocket): closed after
	// that long without a byte either way, or after that long in all.
	// Zero: the data plane's (--tunnel-idle-timeout, --tunnel-max-lifetime).
	TunnelIdleTimeout Duration `json:"tunnel_idle_timeout,omitzero"`
	TunnelMaxLifetime Duration `json:"tunnel_max_lifetime,omitzero"`
	// HTTPSRedirect answers requests that arrive over plain HTTP with 308
	// to the same URL on HTTPS, at HTTPSPort (0: the default, 443).
	HTTPSRedirect bool `json:"https_redirect,omitempty"`
	HTTPSPort     int  `json:"https_port,omitempty"`
	// HSTS adds Strict-Transport-Security to the route's answers over
	// HTTPS.
	HSTS *HSTS `json:"hsts,omitempty"`
	Meta
}

// HSTS is a route's Strict-Transport-Security policy (RFC 6797).
type HSTS struct {
	MaxAge            Duration `json:"max_age"`
	IncludeSubdomains bool     `json:"include_subdomains,omitempty"`
	Preload           bool     `json:"preload,omitempty"`
}

// RouteAuth says who may use a route. Any enabled method may authenticate
// the request; Consumers, Groups, Scopes and Claims then narrow who is
// allowed (403 otherwise).
type RouteAuth struct {
	JWT    bool `json:"jwt,omitempty"`
	APIKey bool `json:"api_key,omitempty"`
	// APIKeyHeader carries the key; default X-API-Key.
	APIKeyHeader string `json:"api_key_header,omitempty"`
	// Basic takes a consumer's basic-auth credentials (basicauth.go).
	Basic bool `json:"basic,omitempty"`
	// ClientCert takes client certificates (mTLS) signed by its CA bundle
	// (clientcert.go); the TLS listener asks for them on the route's hosts.
	ClientCert *ClientCertAuth `json:"client_cert,omitempty"`
	// Issuers limits JWTs to these issuer objects; empty means any.
	Issuers   []string `json:"issuers,omitempty"`
	Consumers []string `json:"consumers,omitempty"`
	// Groups: the consumer must be in at least one of them.
	Groups []string `json:"groups,omitempty"`
	// Scopes: the token must grant every one ("scope" or "scp" claim).
	Scopes []string `json:"scopes,omitempty"`
	// Claims: the token's claims must have these exact values.
	Claims map[string]string `json:"claims,omitempty"`
	// ForwardClaims sends claim values to the upstream in headers
	// (claim name → header name).
	ForwardClaims map[string]string `json:"forward_claims,omitempty"`
	// Introspection takes opaque bearer tokens, checked at the
	// introspection endpoint of the route's issuers (oauth.go).
	Introspection bool `json:"introspection,omitempty"`
	// OIDC logs browser users in at an OpenID Connect issuer (oauth.go).
	OIDC *RouteOIDC `json:"oidc,omitempty"`
}

// RateLimit allows Limit requests per Window and key, counted in Redis so
// that it holds for the cluster. With the sliding window (the default
// without a burst) up to Limit pass at once and no interval of length
// Window admits more than Limit; with GCRA (the default with a burst)
// requests are spaced evenly and Burst lets that many more through at once
// on top.
type RateLimit struct {
	Limit  int      `json:"limit"`
	Window Duration `json:"window"`
	Burst  int      `json:"burst,omitempty"`
	// Algorithm: window or gcra; empty means gcra when Burst is given,
	// window otherwise (see EffectiveAlgorithm).
	Algorithm string `json:"algorithm,omitempty"`
	// Key: route (default: the route as a whole), ip, consumer,
	// header:<Name> or claim:<name>.
	Key string `json:"key,omitempty"`
	// OnRedisError: fail_open (default: a local limiter of limit divided by
	// the live data planes takes over) or fail_closed (429 while Redis is
	// unavailable).
	OnRedisError string `json:"on_redis_error,omitempty"`
}

// Rate-limit failure modes.
const (
	FailOpen   = "fail_open"
	FailClosed = "fail_closed"
)

// Rate-limit algorithms.
const (
	AlgorithmWindow = "window"
	AlgorithmGCRA   = "gcra"
)

// EffectiveAlgorithm is the algorithm a policy uses: the configured one, or
// gcra when a burst is given (configs written before the sliding window keep
// their meaning) and window otherwise.
func (r RateLimit) EffectiveAlgorithm() string {
	switch {
	case r.Algorithm != "":
		return r.Algorithm
	case r.Burst > 0:
		return AlgorithmGCRA
	}
	return AlgorithmWindow
}

// Issuer is a trusted JWT issuer.
type Issuer struct {
	Name string `json:"name"`
	// Issuer is the exact "iss" value of its tokens.
	Issuer    string   `json:"issuer"`
	Audiences []string `json:"audiences,omitempty"`
	// Algorithms are the only ones accepted for this issuer ("none" never
	// is, and HMAC is never mixed with public-key algorithms).
	Algorithms []string `json:"algorithms"`
	// JWKSURL or Keys (PEM public keys, JWKs, or HMAC secrets).
	JWKSURL string   `json:"jwks_url,omitempty"`
	Keys    []string `json:"keys,omitempty"`
	// JWKSRefresh is the longest time between two fetches of the JWKS, so
	// a key withdrawn from it stops verifying new tokens within it. The
	// response's Cache-Control max-age may shorten it (not below 5s), never
	// lengthen it. Zero means DefaultJWKSRefresh.
	JWKSRefresh Duration `json:"jwks_refresh,omitzero"`
	// Leeway tolerates clock skew on exp, nbf and iat.
	Leeway Duration `json:"leeway,omitzero"`
	// ConsumerClaim names the consumer; default "sub". A token names a
	// consumer only if that consumer lists this issuer in jwt_issuers.
	ConsumerClaim string `json:"consumer_claim,omitempty"`
	// MaxTokenLifetime bounds how long a token may be valid: both exp-iat
	// and exp-now must not exceed it (plus leeway), or the token is refused
	// (401). A stolen token then dies within this bound whatever exp its
	// issuer wrote. Zero means DefaultMaxTokenLifetime.
	MaxTokenLifetime Duration `json:"max_token_lifetime,omitzero"`
	// Introspection checks the issuer's opaque tokens at its RFC 7662
	// endpoint; OIDC makes it a login provider for browser routes
	// (oauth.go). Their secrets are never shown.
	Introspection *Introspection `json:"introspection,omitempty"`
	OIDC          *IssuerOIDC    `json:"oidc,omitempty"`
	Meta
}

// Bounds of Issuer.MaxTokenLifetime and Issuer.JWKSRefresh.
const (
	DefaultJWKSRefresh = time.Minute
	MinJWKSRefresh     = time.Second
	MaxJWKSRefresh     = time.Hour

	DefaultMaxTokenLifetime = 24 * time.Hour
	MinMaxTokenLifetime     = time.Minute
	MaxMaxTokenLifetime     = 366 * 24 * time.Hour
)

// APIKey is a consumer's API key as stored and shipped: only its hash.
type APIKey struct {
	ID string `json:"id"`
	// Hash is "sha256:<hex>" of the key.
	Hash string `json:"hash"`
	// Prefix is the key's first characters, to recognise it in lists.
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
}

// Global holds cluster-wide defaults.
type Global struct {
	// RateLimit applies to routes without a rate_limit of their own.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	// IP rules every request must pass before its route's own (iprules.go).
	IP *IPRules `json:"ip,omitempty"`
}

// Consumer is an identified client of the gateway.
type Consumer struct {
	Name   string   `json:"name"`
	Groups []string `json:"groups,omitempty"`
	// JWTIssuers are the issuer objects whose tokens may name this
	// consumer (through the issuer's consumer_claim, "sub" by default).
	// Empty: none. A valid token of another issuer still authenticates, but
	// as no consumer (no groups): one identity provider's "sub" must not
	// speak for another's users.
	JWTIssuers []string `json:"jwt_issuers,omitempty"`
	// APIKeys are managed through /v1/consumers/{name}/api-keys; a PUT of
	// the consumer keeps them as they are.
	APIKeys []APIKey `json:"api_keys,omitempty"`
	// BasicAuth are the consumer's username/password credentials
	// (basicauth.go), managed through /v1/consumers/{name}/basic-auth like
	// API keys; only bcrypt hashes are stored, never returned.
	BasicAuth []BasicCredential `json:"basic_auth,omitempty"`
	// CertIdentities name the client certificates that authenticate as
	// this consumer: "cn:<common name>", "dns:<SAN>", "email:<SAN>",
	// "uri:<SAN>" (clientcert.go). Each belongs to one consumer.
	CertIdentities []string `json:"cert_identities,omitempty"`
	Meta
}

// Config is the whole declarative configuration. Objects are kept sorted by
// name so that its JSON form is canonical (the snapshot checksum relies on it).
type Config struct {
	Services []Service `json:"services"`
	// Routes are held by pointer: a configuration may have 100,000, and
	// each write makes a new configuration from the last. Copying the list
	// then copies 8 bytes per route instead of the ~400 of a Route (40 MB
	// of copy and garbage per write at 100,000 routes, on the control plane
	// and on every data plane). Configurations of successive revisions
	// share the routes that did not change, so a Route reached through a
	// Config is never modified: a change replaces the pointer with a new
	// Route (the catalog and Delta.Apply do). A null route is refused by
	// Validate.
	Routes    []*Route   `json:"routes"`
	Consumers []Consumer `json:"consumers"`
	Issuers   []Issuer   `json:"issuers"`
	// Certificates carry private keys: the admin API never returns them
	// (see Certificate.Key); only the sync API ships them.
	Certificates []Certificate `json:"certificates"`
	Global       Global        `json:"global"`
}

// Defaults applied by the data plane when a field is zero or a policy is
// omitted. Resilience is on by default: an operator should not have to know
// about retries and ejection for an instance failure to go unnoticed.
const (
	DefaultRouteTimeout   = 30 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultMaxBodyBytes   = 10 << 20

	DefaultRetryAttempts      = 3
	DefaultRetryBudgetPercent = 20
	DefaultRetryMinPerSecond  = 10

	DefaultOutlierConsecutiveFailures = 5
	DefaultOutlierBaseEjection        = 10 * time.Second
	DefaultOutlierMaxEjection         = 5 * time.Minute
	DefaultOutlierMaxEjectedPercent   = 50

	DefaultBreakerFailureRatio     = 0.5
	DefaultBreakerMinRequests      = 20
	DefaultBreakerInterval         = 10 * time.Second
	DefaultBreakerOpenTimeout      = 10 * time.Second
	DefaultBreakerHalfOpenRequests = 3

	DefaultHealthInterval           = 5 * time.Second
	DefaultHealthTimeout            = 2 * time.Second
	DefaultHealthHealthyThreshold   = 2
	DefaultHealthUnhealthyThreshold = 3
)

// Duration is a time.Duration written in JSON as a Go duration string ("30s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a duration string such as "1.5s" or "250ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	// UnmarshalTypeError lets the decoder attach the field path.
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: string(b), Type: durationType}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return &json.UnmarshalTypeError{Value: strconv.Quote(s), Type: durationType}
	}
	*d = Duration(v)
	return nil
}

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
