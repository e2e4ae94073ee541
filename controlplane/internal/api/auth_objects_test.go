package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

func TestIssuers(t *testing.T) {
	s := newTestServer(t, false)
	rsa := `{"issuer":"https://id.example.com","audiences":["portico"],"algorithms":["RS256"],"jwks_url":"https://id.example.com/jwks"}`
	s.mustStatus(t, 201, "PUT", "/v1/issuers/corp", rsa)
	tests := []struct {
		name, body, field string
		status            int
	}{
		{"alg none", `{"issuer":"x","algorithms":["none"],"keys":["k"]}`, "algorithms[0]", 422},
		{"hmac mixed with rsa", `{"issuer":"x","algorithms":["HS256","RS256"],"keys":["0123456789abcdef0123456789abcdef"]}`, "algorithms", 422},
		{"short hmac secret", `{"issuer":"x","algorithms":["HS256"],"keys":["short"]}`, "keys[0]", 422},
		{"no keys", `{"issuer":"x","algorithms":["RS256"]}`, "keys", 422},
		// The data plane could not load these; the control plane parses keys
		// with the same function (shared/jwtkey) and refuses them at write time.
		{"rs256 key that is not a key", `{"issuer":"x","algorithms":["RS256"],"keys":["not a key"]}`, "keys[0]", 422},
		{"second key broken", `{"issuer":"x","algorithms":["EdDSA"],"keys":["{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}","-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"]}`, "keys[1]", 422},
		{"private jwk", `{"issuer":"x","algorithms":["EdDSA"],"keys":["{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\",\"d\":\"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\"}"]}`, "keys[0]", 422},
		{"ec key of the wrong curve for the alg", `{"issuer":"x","algorithms":["ES384"],"keys":["{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\",\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}"]}`, "keys[0]", 422},
		{"keys and jwks", `{"issuer":"x","algorithms":["RS256"],"keys":["k"],"jwks_url":"https://x/j"}`, "jwks_url", 422},
		{"same iss twice", `{"issuer":"https://id.example.com","algorithms":["RS256"],"jwks_url":"https://x/j"}`, "issuer", 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, body := s.mustStatus(t, tt.status, "PUT", "/v1/issuers/other", tt.body)
			if !strings.Contains(string(body), `"field":"`+tt.field+`"`) {
				t.Fatalf("problem does not name %s: %s", tt.field, body)
			}
		})
	}
	s.mustStatus(t, 201, "PUT", "/v1/issuers/ed", `{"issuer":"https://ed.example","algorithms":["EdDSA"],"keys":["{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}"]}`)
	s.mustStatus(t, 201, "PUT", "/v1/services/svc", svcBody)
	s.mustStatus(t, 422, "PUT", "/v1/routes/r", `{"paths":["/r"],"service":"svc","auth":{"jwt":true,"issuers":["ghost"]}}`)
	s.mustStatus(t, 422, "PUT", "/v1/routes/r", `{"paths":["/r"],"service":"svc","auth":{}}`)
	s.mustStatus(t, 422, "PUT", "/v1/routes/r", `{"paths":["/r"],"service":"svc","rate_limit":{"limit":10,"window":"1m","key":"consumer"}}`)
	s.mustStatus(t, 201, "PUT", "/v1/routes/r", `{"paths":["/r"],"service":"svc","auth":{"jwt":true,"issuers":["corp"],"scopes":["orders:read"]},
		"rate_limit":{"limit":10,"window":"1m","key":"claim:sub","on_redis_error":"fail_closed"},"max_in_flight":5,"queue_timeout":"1s"}`)
	s.mustStatus(t, 409, "DELETE", "/v1/issuers/corp", "")

	// A consumer names the issuers whose tokens may name it; they must
	// exist, and an issuer a consumer trusts cannot be deleted under it.
	_, body := s.mustStatus(t, 422, "PUT", "/v1/consumers/alice", `{"groups":["staff"],"jwt_issuers":["ghost"]}`)
	if !strings.Contains(string(body), `"field":"jwt_issuers[0]"`) {
		t.Fatalf("problem does not name jwt_issuers[0]: %s", body)
	}
	s.mustStatus(t, 201, "PUT", "/v1/consumers/alice", `{"groups":["staff"],"jwt_issuers":["ed"]}`)
	s.mustStatus(t, 409, "DELETE", "/v1/issuers/ed", "")
	s.mustStatus(t, 422, "PUT", "/v1/issuers/ed2", `{"issuer":"https://ed2.example","algorithms":["HS256"],"keys":["0123456789abcdef0123456789abcdef"],"max_token_lifetime":"1s"}`)
	s.mustStatus(t, 201, "PUT", "/v1/issuers/ed2", `{"issuer":"https://ed2.example","algorithms":["HS256"],"keys":["0123456789abcdef0123456789abcdef"],"max_token_lifetime":"1h"}`)
}

func TestAPIKeys(t *testing.T) {
	s := newTestServer(t, false)
	s.mustStatus(t, 404, "POST", "/v1/consumers/alice/api-keys", "")
	s.mustStatus(t, 201, "PUT", "/v1/consumers/alice", `{"groups":["staff"]}`)
	h, body := s.mustStatus(t, 201, "POST", "/v1/consumers/alice/api-keys", "")
	var created struct{ ID, Key, Prefix string }
	if err := json.Unmarshal(body, &created); err != nil || !strings.HasPrefix(created.Key, "pk_") || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("created key: %s (%v) headers %v", body, err, h)
	}
	// From now on only the hash exists: not in the consumer, the list, the
	// export or the snapshot.
	for _, path := range []string{"/v1/consumers/alice", "/v1/consumers/alice/api-keys", "/v1/config", "/v1/audit"} {
		_, body := s.mustStatus(t, 200, "GET", path, "")
		if strings.Contains(string(body), created.Key) {
			t.Fatalf("%s shows the key in clear", path)
		}
		if path == "/v1/consumers/alice" && !strings.Contains(string(body), created.Prefix) {
			t.Fatalf("consumer does not list the key's prefix: %s", body)
		}
	}
	// Replacing the consumer keeps its keys, whatever the body says.
	s.mustStatus(t, 200, "PUT", "/v1/consumers/alice", `{"groups":["staff","ops"],"api_keys":[]}`)
	_, body = s.mustStatus(t, 200, "GET", "/v1/consumers/alice", "")
	var cs config.Consumer
	if err := json.Unmarshal(body, &cs); err != nil || len(cs.APIKeys) != 1 || cs.APIKeys[0].ID != created.ID {
		t.Fatalf("PUT dropped or forged keys: %s", body)
	}
	s.mustStatus(t, 201, "POST", "/v1/consumers/alice/api-keys", "")
	s.mustStatus(t, 204, "DELETE", "/v1/consumers/alice/api-keys/"+created.ID, "")
	s.mustStatus(t, 404, "DELETE", "/v1/consumers/alice/api-keys/"+created.ID, "")
	_, body = s.mustStatus(t, 200, "GET", "/v1/consumers/alice/api-keys", "")
	if strings.Contains(string(body), created.ID) || strings.Count(string(body), `"id"`) != 1 {
		t.Fatalf("after revoking: %s", body)
	}
}

// An imported key (the compose stack's demo key) is kept as a hash like a
// created one, never echoed, and importing it again is a no-op: the seed
// job runs on every start.
func TestImportAPIKey(t *testing.T) {
	s := newTestServer(t, false)
	key := "pk_" + strings.Repeat("Ab3-_", 9) // 45 base64url characters
	s.mustStatus(t, 404, "POST", "/v1/consumers/alice/api-keys", `{"key":"`+key+`"}`)
	s.mustStatus(t, 201, "PUT", "/v1/consumers/alice", `{}`)
	s.mustStatus(t, 201, "PUT", "/v1/consumers/bob", `{}`)
	h, body := s.mustStatus(t, 201, "POST", "/v1/consumers/alice/api-keys", `{"key":"`+key+`"}`)
	var first struct{ ID, Prefix string }
	if err := json.Unmarshal(body, &first); err != nil || first.ID == "" || first.Prefix != key[:7] || strings.Contains(string(body), key) {
		t.Fatalf("import answered %s (%v)", body, err)
	}
	rev := h.Get("X-Portico-Revision")
	h, body = s.mustStatus(t, 200, "POST", "/v1/consumers/alice/api-keys", `{"key":"`+key+`"}`)
	if h.Get("X-Portico-Revision") != rev || !strings.Contains(string(body), first.ID) {
		t.Fatalf("second import: revision %s (first %s), %s", h.Get("X-Portico-Revision"), rev, body)
	}
	for _, path := range []string{"/v1/consumers/alice", "/v1/config", "/v1/audit"} {
		_, body := s.mustStatus(t, 200, "GET", path, "")
		if strings.Contains(string(body), key) {
			t.Fatalf("%s shows the imported key in clear", path)
		}
	}
	_, body = s.mustStatus(t, 200, "GET", "/v1/consumers/alice", "")
	if !strings.Contains(string(body), apikey.Hash(key)) {
		t.Fatalf("consumer does not hold the key's hash: %s", body)
	}
	// One key, one consumer.
	_, body = s.mustStatus(t, 409, "POST", "/v1/consumers/bob/api-keys", `{"key":"`+key+`"}`)
	if !strings.Contains(string(body), "alice") {
		t.Fatalf("conflict does not name the owner: %s", body)
	}
	for _, tc := range []struct {
		body, field string
		status      int
	}{
		{`{"key":"abc"}`, `"field":"key"`, 422},
		{`{"key":"pk_short"}`, `"field":"key"`, 422},
		{`{"key":"pk_` + strings.Repeat("a", 42) + `!"}`, `"field":"key"`, 422},
		{`{"key":"pk_` + strings.Repeat("a", 200) + `"}`, `"field":"key"`, 422},
		{`{"key":"` + key + `","extra":1}`, `extra`, 400},
	} {
		_, body := s.mustStatus(t, tc.status, "POST", "/v1/consumers/bob/api-keys", tc.body)
		if !strings.Contains(string(body), tc.field) {
			t.Errorf("import %s: %s, want %s", tc.body, body, tc.field)
		}
	}
	_, body = s.mustStatus(t, 200, "GET", "/v1/consumers/bob/api-keys", "")
	if strings.Contains(string(body), `"id"`) {
		t.Fatalf("a refused import left a key: %s", body)
	}
}

func TestGlobal(t *testing.T) {
	s := newTestServer(t, false)
	h, _ := s.mustStatus(t, 200, "PUT", "/v1/global", `{"rate_limit":{"limit":100,"window":"1s","key":"ip"}}`)
	if h.Get("X-Portico-Revision") != "1" {
		t.Fatalf("revision %s", h.Get("X-Portico-Revision"))
	}
	_, body := s.mustStatus(t, 200, "GET", "/v1/global", "")
	if !strings.Contains(string(body), `"limit":100`) {
		t.Fatal(string(body))
	}
	s.mustStatus(t, 422, "PUT", "/v1/global", `{"rate_limit":{"limit":100,"window":"1s","key":"consumer"}}`)
	s.mustStatus(t, 422, "PUT", "/v1/global", `{"rate_limit":{"limit":0,"window":"1ms"}}`)
	s.mustStatus(t, 412, "PUT", "/v1/global", `{}`, "If-Match", `"7"`)
	s.mustStatus(t, 200, "PUT", "/v1/global", `{}`, "If-Match", `"1"`)
}

// TestHMACIssuerKeysNeverReturned: an HMAC issuer's keys are shared
// secrets: no admin answer, list, export or audit entry shows them; a PUT
// or an import of the export without them keeps them; data planes still
// get them in the snapshot.
func TestHMACIssuerKeysNeverReturned(t *testing.T) {
	s := newTestServer(t, false)
	const secret = "an-hmac-secret-of-32-bytes-or-more!"
	_, created := s.mustStatus(t, 201, "PUT", "/v1/issuers/hs", `{"issuer":"https://hs.example","algorithms":["HS256"],"keys":["`+secret+`"]}`)
	_, kept := s.mustStatus(t, 200, "PUT", "/v1/issuers/hs", `{"issuer":"https://hs.example","algorithms":["HS384"]}`)
	exp, imported := s.reimportExport(t)
	_, one := s.mustStatus(t, 200, "GET", "/v1/issuers/hs", "")
	_, list := s.mustStatus(t, 200, "GET", "/v1/issuers", "")
	_, audit := s.mustStatus(t, 200, "GET", "/v1/audit", "")
	for what, b := range map[string][]byte{"create answer": created, "update answer": kept, "export": exp,
		"import answer": imported, "GET": one, "list": list, "audit": audit} {
		if strings.Contains(string(b), secret) {
			t.Fatalf("the %s shows the HMAC secret: %s", what, b)
		}
	}
	// A public-key issuer's keys are not secrets: shown as given.
	s.mustStatus(t, 201, "PUT", "/v1/issuers/ed", `{"issuer":"https://ed.example","algorithms":["EdDSA"],"keys":["{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}"]}`)
	if _, b := s.mustStatus(t, 200, "GET", "/v1/issuers/ed", ""); !strings.Contains(string(b), "11qYAYKxCrfVS") {
		t.Fatalf("a public key is hidden: %s", b)
	}
	// Switching to a public-key algorithm does not carry the secret over.
	_, b := s.mustStatus(t, 422, "PUT", "/v1/issuers/hs", `{"issuer":"https://hs.example","algorithms":["RS256"]}`)
	if !strings.Contains(string(b), `"field":"keys"`) {
		t.Fatalf("problem does not name keys: %s", b)
	}
	// Data planes verify with it: the snapshot carries it.
	dp, err := client.New(s.URL, dpToken)
	if err != nil {
		t.Fatal(err)
	}
	p, err := dp.PollSnapshot(context.Background(), client.PollRequest{After: 0, Wait: time.Second, NodeID: "dp-1", NodeVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Decode(p.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	is, ok := snap.Config.Issuer("hs")
	if !ok || len(is.Keys) != 1 || is.Keys[0] != secret || is.Algorithms[0] != "HS384" {
		t.Fatalf("the snapshot's issuer: %+v", is)
	}
}
