package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestIssuerSecretsAreSecret: an issuer's introspection.client_secret,
// oidc.client_secret and oidc.session_key are stored and shipped in the
// snapshot to data planes, never in a write's answer, GET, the list, the
// export, the audit log or a log line; a write or an import without them
// keeps the stored ones; the control plane generates the session key on
// the first write and keeps it; field paths for what is wrong.
func TestIssuerSecretsAreSecret(t *testing.T) {
	s, logs := newLoggedServer(t)
	var answers []string
	keep := func(b []byte) { answers = append(answers, string(b)) }
	const introSecret, oidcSecret = "intro-s3cret-value", "oidc-s3cret-value"
	body := `{"issuer":"https://idp.example/",
		"introspection":{"url":"https://idp.example/introspect","client_id":"gw","client_secret":"` + introSecret + `","cache_ttl":"30s"},
		"oidc":{"client_id":"web","client_secret":"` + oidcSecret + `"}}`
	h, b := s.mustStatus(t, 201, "PUT", "/v1/issuers/idp", body)
	keep(b)
	if h.Get("ETag") != `"1"` || strings.Contains(string(b), "client_secret") || strings.Contains(string(b), "session_key") {
		t.Fatalf("create: ETag %s, body %s", h.Get("ETag"), b)
	}
	stored, _ := s.cat.Current().State.Config.Issuer("idp")
	if stored == nil || stored.OIDC.ClientSecret != oidcSecret || stored.Introspection.ClientSecret != introSecret {
		t.Fatalf("secrets not stored: %+v", stored)
	}
	sessionKey := stored.OIDC.SessionKey
	if _, err := config.ParseSessionKey(sessionKey); err != nil {
		t.Fatalf("no session key generated: %v", err)
	}

	// GET output PUT back: secrets and key kept, nothing changes.
	_, b = s.mustStatus(t, 200, "GET", "/v1/issuers/idp", "")
	keep(b)
	h, _ = s.mustStatus(t, 200, "PUT", "/v1/issuers/idp", string(b), "If-Match", `"1"`)
	if h.Get("ETag") != `"1"` {
		t.Fatalf("GET output PUT back changed the issuer: ETag %s", h.Get("ETag"))
	}
	if is, _ := s.cat.Current().State.Config.Issuer("idp"); is.OIDC.SessionKey != sessionKey || is.OIDC.ClientSecret != oidcSecret || is.Introspection.ClientSecret != introSecret {
		t.Fatal("a write without the secrets did not keep them")
	}
	// Another oidc client without a secret cannot keep the old one.
	_, b = s.mustStatus(t, 422, "PUT", "/v1/issuers/idp", `{"issuer":"https://idp.example/","oidc":{"client_id":"other"}}`)
	keep(b)
	if !strings.Contains(string(b), `"field":"oidc.client_secret"`) {
		t.Fatalf("new client without a secret: %s", b)
	}
	// Field paths; a short session key is refused without being quoted.
	_, b = s.mustStatus(t, 422, "PUT", "/v1/issuers/idp", `{"issuer":"idp","introspection":{"url":"x"},"oidc":{"client_id":"web","session_key":"c2hvcnQ="}}`)
	keep(b)
	for _, f := range []string{`"field":"introspection.url"`, `"field":"issuer"`, `"field":"oidc.session_key"`} {
		if !strings.Contains(string(b), f) {
			t.Fatalf("broken issuer: %s lacks %s", b, f)
		}
	}
	_, b = s.mustStatus(t, 200, "GET", "/v1/issuers", "")
	keep(b)

	// The export has no secrets; importing it back changes nothing.
	_, export := s.mustStatus(t, 200, "GET", "/v1/config", "")
	keep(export)
	_, b = s.mustStatus(t, 200, "PUT", "/v1/config?dry_run=true", string(export))
	if !strings.Contains(string(b), `"changes":[]`) {
		t.Fatalf("dry run of the export: %s", b)
	}
	s.mustStatus(t, 200, "PUT", "/v1/config", string(export))
	if is, _ := s.cat.Current().State.Config.Issuer("idp"); is == nil || is.OIDC.SessionKey != sessionKey || is.Introspection.ClientSecret != introSecret || is.Version != 1 {
		t.Fatalf("export round trip lost a secret or moved the version: %+v", is)
	}
	// Under another name nothing is kept: the client secrets are asked
	// for, and a new session key is generated.
	var env struct {
		Config config.Config `json:"config"`
	}
	if err := json.Unmarshal(export, &env); err != nil {
		t.Fatal(err)
	}
	env.Config.Issuers[0].Name = "fresh"
	edited, _ := json.Marshal(env.Config)
	_, b = s.mustStatus(t, 422, "PUT", "/v1/config", string(edited))
	if !strings.Contains(string(b), `"field":"issuers[0].introspection.client_secret"`) || !strings.Contains(string(b), `"field":"issuers[0].oidc.client_secret"`) {
		t.Fatalf("import without secrets: %s", b)
	}

	_, b = s.mustStatus(t, 200, "GET", "/v1/audit", "")
	keep(b)
	code, _, snap := s.call(t, "GET", "/v1/snapshot?after=0&wait=1ms", dpToken, "", "X-Portico-Node-Id", "dp-1")
	if code != 200 || !strings.Contains(string(snap), sessionKey) || !strings.Contains(string(snap), oidcSecret) {
		t.Fatalf("snapshot %d does not carry the secrets data planes need", code)
	}
	for _, secret := range []string{introSecret, oidcSecret, sessionKey} {
		for i, a := range answers {
			if strings.Contains(a, secret) {
				t.Fatalf("answer %d carries a secret: %s", i, a)
			}
		}
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("log carries a secret:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "/v1/issuers/idp") {
		t.Fatal("the log buffer saw no request: the check above proves nothing")
	}
}
