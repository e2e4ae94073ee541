package config

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestOAuthValidate: the rules of an issuer's introspection and oidc blocks
// and of a route's auth.introspection and auth.oidc, with the field paths
// Config.Validate reports, and no message quoting a secret.
func TestOAuthValidate(t *testing.T) {
	key := NewSessionKey()
	ok := func() Config {
		return Config{
			Services: []Service{{Name: "s", Targets: []Target{{URL: "http://10.0.0.1"}}}},
			Issuers: []Issuer{{
				Name: "idp", Issuer: "https://idp.example/",
				Introspection: &Introspection{URL: "https://idp.example/introspect", ClientID: "gw", ClientSecret: "intro-secret"},
				OIDC:          &IssuerOIDC{ClientID: "web", ClientSecret: "oidc-secret", SessionKey: key},
			}},
			Routes: []*Route{
				{Name: "api", Paths: []string{"/api/*"}, Service: "s", Auth: &RouteAuth{Introspection: true, Issuers: []string{"idp"}, Scopes: []string{"read"}}},
				{Name: "app", Paths: []string{"/app/*"}, Service: "s", Auth: &RouteAuth{OIDC: &RouteOIDC{
					Issuer: "idp", Scopes: []string{"openid", "offline_access"}, CallbackPath: "/app/callback", LogoutPath: "/app/logout", PostLogoutRedirect: "/app/",
				}, ForwardClaims: map[string]string{"email": "X-User-Email"}}},
			},
		}
	}
	cases := []struct {
		name   string
		edit   func(c *Config)
		fields []string
	}{
		{"valid", func(*Config) {}, nil},
		{"introspection only, no client credentials", func(c *Config) {
			c.Issuers[0].OIDC = nil
			c.Routes = c.Routes[:1]
			c.Issuers[0].Introspection.ClientID, c.Issuers[0].Introspection.ClientSecret = "", ""
		}, nil},
		{"oidc issuer with keys of its own", func(c *Config) {
			c.Issuers[0].Algorithms = []string{"RS256"}
			c.Issuers[0].JWKSURL = "https://idp.example/jwks"
		}, nil},
		{"algorithms without keys", func(c *Config) {
			c.Issuers[0].OIDC = nil
			c.Routes = c.Routes[:1]
			c.Issuers[0].Algorithms = []string{"RS256"}
		}, []string{"issuers[0].keys"}},
		{"neither keys nor oauth", func(c *Config) {
			c.Issuers[0].OIDC, c.Issuers[0].Introspection = nil, nil
			c.Routes = nil
		}, []string{"issuers[0].algorithms", "issuers[0].keys"}},
		{"introspection url not http", func(c *Config) { c.Issuers[0].Introspection.URL = "ftp://x/" }, []string{"issuers[0].introspection.url"}},
		{"introspection url with credentials", func(c *Config) { c.Issuers[0].Introspection.URL = "https://u:p@x/" }, []string{"issuers[0].introspection.url"}},
		{"introspection secret without id", func(c *Config) { c.Issuers[0].Introspection.ClientID = "" }, []string{"issuers[0].introspection.client_id"}},
		{"introspection id without secret", func(c *Config) { c.Issuers[0].Introspection.ClientSecret = "" }, []string{"issuers[0].introspection.client_secret"}},
		{"introspection timeout", func(c *Config) { c.Issuers[0].Introspection.Timeout = Duration(MaxIntrospectionTimeout + 1) }, []string{"issuers[0].introspection.timeout"}},
		{"introspection ttl", func(c *Config) { c.Issuers[0].Introspection.CacheTTL = Duration(MaxIntrospectionTTL * 2) }, []string{"issuers[0].introspection.cache_ttl"}},
		{"introspection cache too small", func(c *Config) { c.Issuers[0].Introspection.CacheMaxBytes = 10 }, []string{"issuers[0].introspection.cache_max_bytes"}},
		{"oidc issuer not a URL", func(c *Config) { c.Issuers[0].Issuer = "idp" }, []string{"issuers[0].issuer"}},
		{"oidc without client id", func(c *Config) { c.Issuers[0].OIDC.ClientID = "" }, []string{"issuers[0].oidc.client_id"}},
		{"oidc without secret", func(c *Config) { c.Issuers[0].OIDC.ClientSecret = "" }, []string{"issuers[0].oidc.client_secret"}},
		{"oidc session key short", func(c *Config) { c.Issuers[0].OIDC.SessionKey = "c2hvcnQ=" }, []string{"issuers[0].oidc.session_key"}},
		{"oidc session key missing", func(c *Config) { c.Issuers[0].OIDC.SessionKey = "" }, []string{"issuers[0].oidc.session_key"}},
		{"oidc session lifetime", func(c *Config) { c.Issuers[0].OIDC.SessionLifetime = Duration(MinSessionLifetime / 2) }, []string{"issuers[0].oidc.session_lifetime"}},
		{"route oidc names no issuer", func(c *Config) { c.Routes[1].Auth.OIDC.Issuer = "nope" }, []string{"routes[1].auth.oidc.issuer"}},
		{"route oidc names a non-oidc issuer", func(c *Config) {
			c.Issuers = append(c.Issuers, Issuer{Name: "jwt", Issuer: "https://jwt.example/", Algorithms: []string{"RS256"}, JWKSURL: "https://jwt.example/jwks"})
			c.Routes[1].Auth.OIDC.Issuer = "jwt"
		}, []string{"routes[1].auth.oidc.issuer"}},
		{"route oidc without openid", func(c *Config) { c.Routes[1].Auth.OIDC.Scopes = []string{"email"} }, []string{"routes[1].auth.oidc.scopes"}},
		{"route oidc bad scope", func(c *Config) { c.Routes[1].Auth.OIDC.Scopes = []string{"openid", "a b"} }, []string{"routes[1].auth.oidc.scopes[1]"}},
		{"callback missing", func(c *Config) { c.Routes[1].Auth.OIDC.CallbackPath = "" }, []string{"routes[1].auth.oidc.callback_path"}},
		{"callback with query", func(c *Config) { c.Routes[1].Auth.OIDC.CallbackPath = "/app/cb?x=1" }, []string{"routes[1].auth.oidc.callback_path"}},
		{"logout equals callback", func(c *Config) { c.Routes[1].Auth.OIDC.LogoutPath = "/app/callback" }, []string{"routes[1].auth.oidc.logout_path"}},
		{"post-logout absolute URL", func(c *Config) { c.Routes[1].Auth.OIDC.PostLogoutRedirect = "https://evil.example/" }, []string{"routes[1].auth.oidc.post_logout_redirect"}},
		{"post-logout protocol-relative", func(c *Config) { c.Routes[1].Auth.OIDC.PostLogoutRedirect = "//evil.example/" }, []string{"routes[1].auth.oidc.post_logout_redirect"}},
		{"post-logout backslash", func(c *Config) { c.Routes[1].Auth.OIDC.PostLogoutRedirect = "/\\evil.example" }, []string{"routes[1].auth.oidc.post_logout_redirect"}},
		{"scopes with only oidc", func(c *Config) { c.Routes[1].Auth.Scopes = []string{"read"} }, nil},
		{"issuers with introspection only", func(c *Config) { c.Routes[0].Auth.Issuers = []string{"nope"} }, []string{"routes[0].auth.issuers[0]"}},
		{"no method", func(c *Config) { c.Routes[0].Auth = &RouteAuth{Scopes: []string{"x"}} }, []string{"routes[0].auth", "routes[0].auth.scopes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.edit(&c)
			c.Normalize()
			err := c.Validate()
			var want []string
			want = append(want, tc.fields...)
			if len(want) == 0 {
				checkFields(t, err, nil, nil)
			} else {
				checkFields(t, err, ErrInvalid, want)
			}
			if err != nil {
				for _, s := range []string{"intro-secret", "oidc-secret", key} {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("error quotes a secret: %v", err)
					}
				}
			}
		})
	}
}

// TestIssuerSecrets: the client secrets and the session key are never
// shown (Redacted), a write that leaves them out keeps the stored ones
// (the client secrets only for the same client_id), a new oidc block gets a
// generated session key, and CheckIssuerSecrets asks for what is missing.
func TestIssuerSecrets(t *testing.T) {
	stored := Issuer{
		Name: "idp", Issuer: "https://idp.example/",
		Introspection: &Introspection{URL: "https://idp.example/i", ClientID: "gw", ClientSecret: "intro-secret"},
		OIDC:          &IssuerOIDC{ClientID: "web", ClientSecret: "oidc-secret", SessionKey: NewSessionKey()},
	}
	red := stored.Redacted()
	b, _ := json.Marshal(red)
	for _, s := range []string{"intro-secret", "oidc-secret", stored.OIDC.SessionKey, "client_secret", "session_key"} {
		if strings.Contains(string(b), s) {
			t.Fatalf("Redacted JSON %s shows %q", b, s)
		}
	}
	if stored.OIDC.ClientSecret == "" || stored.Introspection.ClientSecret == "" {
		t.Fatal("Redacted changed the stored object")
	}

	cases := []struct {
		name              string
		introID, oidcID   string
		introSec, oidcSec string
		wantIntro         string
		wantOIDC          string
		check             bool
	}{
		{"same clients, secrets left out: kept", "gw", "web", "", "", "intro-secret", "oidc-secret", true},
		{"other clients, secrets left out: not kept", "gw2", "web2", "", "", "", "", false},
		{"new secrets: used", "gw", "web", "n1", "n2", "n1", "n2", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := Issuer{Name: "idp", Issuer: stored.Issuer,
				Introspection: &Introspection{URL: "https://idp.example/i", ClientID: tc.introID, ClientSecret: tc.introSec},
				OIDC:          &IssuerOIDC{ClientID: tc.oidcID, ClientSecret: tc.oidcSec},
			}
			IssuerKeepsSecrets(&stored, &obj)
			if obj.Introspection.ClientSecret != tc.wantIntro || obj.OIDC.ClientSecret != tc.wantOIDC {
				t.Fatalf("secrets kept: introspection %v, oidc %v", obj.Introspection.ClientSecret != "", obj.OIDC.ClientSecret != "")
			}
			if obj.OIDC.SessionKey != stored.OIDC.SessionKey {
				t.Fatal("the stored session key was not kept")
			}
			if err := CheckIssuerSecrets(&obj); (err == nil) != tc.check {
				t.Fatalf("CheckIssuerSecrets = %v", err)
			}
		})
	}

	// A new issuer gets a fresh key, a different one each time.
	a := Issuer{Name: "n", OIDC: &IssuerOIDC{ClientID: "c", ClientSecret: "s"}}
	b2 := Issuer{Name: "n", OIDC: &IssuerOIDC{ClientID: "c", ClientSecret: "s"}}
	IssuerKeepsSecrets(nil, &a)
	IssuerKeepsSecrets(&Issuer{}, &b2)
	if _, err := ParseSessionKey(a.OIDC.SessionKey); err != nil {
		t.Fatalf("generated key: %v", err)
	}
	if a.OIDC.SessionKey == b2.OIDC.SessionKey {
		t.Fatal("two generated session keys are equal")
	}
	// A key given on a write replaces the stored one (rotation).
	given := NewSessionKey()
	c := Issuer{Name: "idp", OIDC: &IssuerOIDC{ClientID: "web", SessionKey: given}}
	IssuerKeepsSecrets(&stored, &c)
	if c.OIDC.SessionKey != given {
		t.Fatal("a given session key was replaced by the stored one")
	}
}

// TestIssuerHMACKeysAreSecrets: an HMAC issuer's keys are never shown, a
// write without keys keeps them while the issuer still signs with HMAC,
// and public keys are shown and never carried over.
func TestIssuerHMACKeysAreSecrets(t *testing.T) {
	const secret = "an-hmac-secret-of-32-bytes-or-more!"
	stored := Issuer{Name: "hs", Issuer: "https://hs.example", Algorithms: []string{"HS256"}, Keys: []string{secret}}
	if b, _ := json.Marshal(stored.Redacted()); strings.Contains(string(b), secret) {
		t.Fatalf("Redacted shows the HMAC secret: %s", b)
	}
	if len(stored.Keys) != 1 {
		t.Fatal("Redacted changed the stored object")
	}
	pub := Issuer{Name: "ed", Algorithms: []string{"EdDSA"}, Keys: []string{"public"}}
	if len(pub.Redacted().Keys) != 1 {
		t.Fatal("Redacted dropped a public key")
	}
	cases := []struct {
		name     string
		obj      Issuer
		existing *Issuer
		want     []string
	}{
		{"keys left out: kept", Issuer{Algorithms: []string{"HS512"}}, &stored, []string{secret}},
		{"new keys: used", Issuer{Algorithms: []string{"HS256"}, Keys: []string{"new"}}, &stored, []string{"new"}},
		{"now public-key: not kept", Issuer{Algorithms: []string{"RS256"}}, &stored, nil},
		{"public before: nothing to keep", Issuer{Algorithms: []string{"HS256"}}, &pub, nil},
		{"new issuer", Issuer{Algorithms: []string{"HS256"}}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := tc.obj
			IssuerKeepsSecrets(tc.existing, &obj)
			if !slices.Equal(obj.Keys, tc.want) {
				t.Fatalf("keys %q, want %q", obj.Keys, tc.want)
			}
		})
	}
}
