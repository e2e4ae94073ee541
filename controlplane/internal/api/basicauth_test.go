package api

import (
	"encoding/json"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

func TestBasicAuthCredentials(t *testing.T) {
	s := newTestServer(t, false)
	s.mustStatus(t, 404, "POST", "/v1/consumers/alice/basic-auth", `{"username":"alice"}`)
	s.mustStatus(t, 201, "PUT", "/v1/consumers/alice", `{"groups":["staff"]}`)
	s.mustStatus(t, 201, "PUT", "/v1/consumers/bob", `{}`)

	// Generated password: returned once, with no-store.
	h, body := s.mustStatus(t, 201, "POST", "/v1/consumers/alice/basic-auth", `{"username":"alice"}`)
	var gen struct{ ID, Username, Password string }
	if err := json.Unmarshal(body, &gen); err != nil || len(gen.Password) != 32 || gen.Username != "alice" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("created: %s (%v) headers %v", body, err, h)
	}
	// Chosen password: not echoed.
	_, body = s.mustStatus(t, 201, "POST", "/v1/consumers/alice/basic-auth", `{"username":"alice-ci","password":"a long enough secret"}`)
	if strings.Contains(string(body), "a long enough secret") || strings.Contains(string(body), `"password"`) {
		t.Fatalf("the chosen password is echoed: %s", body)
	}

	// Refusals with field paths, nothing stored.
	for _, tc := range []struct {
		status      int
		body, field string
	}{
		{422, `{"username":"al:ice"}`, "username"},
		{422, `{"username":""}`, "username"},
		{422, `{"username":"carol","password":"short"}`, "password"},
		{422, `{"username":"carol","password":"` + strings.Repeat("x", 73) + `"}`, "password"},
		{409, `{"username":"alice"}`, "username"}, // taken by alice already, from any consumer
		{400, `{"username":"carol","hash":"$2a$10$x"}`, "hash"},
	} {
		_, body := s.mustStatus(t, tc.status, "POST", "/v1/consumers/bob/basic-auth", tc.body)
		if !strings.Contains(string(body), tc.field) {
			t.Errorf("%s: %s does not name %s", tc.body, body, tc.field)
		}
	}

	// Neither password nor hash in the consumer, the list, the export or
	// the audit log.
	for _, path := range []string{"/v1/consumers/alice", "/v1/consumers", "/v1/consumers/alice/basic-auth", "/v1/config", "/v1/audit"} {
		_, body := s.mustStatus(t, 200, "GET", path, "")
		if strings.Contains(string(body), gen.Password) || strings.Contains(string(body), "$2a$") || strings.Contains(string(body), `"hash"`) {
			t.Fatalf("%s shows a password or hash: %s", path, body)
		}
		if path != "/v1/audit" && !strings.Contains(string(body), "alice-ci") {
			t.Fatalf("%s does not list the credential: %s", path, body)
		}
	}
	// The data planes' snapshot carries the hash, which checks the password.
	_, _, raw := s.call(t, "GET", "/v1/snapshot?after=0&wait=0s", dpToken, "", apiv1.HeaderNodeID, "n")
	snap, err := snapshot.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := snap.Config.Consumer("alice")
	if len(cs.BasicAuth) != 2 || bcrypt.CompareHashAndPassword([]byte(cs.BasicAuth[0].Hash), []byte(gen.Password)) != nil {
		t.Fatalf("snapshot credentials %+v", cs.BasicAuth)
	}

	// Replacing the consumer keeps its credentials, whatever the body says.
	s.mustStatus(t, 200, "PUT", "/v1/consumers/alice", `{"groups":["staff","ops"],"basic_auth":[]}`)
	_, body = s.mustStatus(t, 200, "GET", "/v1/consumers/alice", "")
	var got config.Consumer
	if err := json.Unmarshal(body, &got); err != nil || len(got.BasicAuth) != 2 || got.BasicAuth[0].ID != gen.ID {
		t.Fatalf("PUT dropped or forged credentials: %s", body)
	}

	// The export, sent back as it is, keeps the stored hashes (no change);
	// a credential the store does not know needs its hash (422).
	_, export := s.mustStatus(t, 200, "GET", "/v1/config", "")
	_, body = s.mustStatus(t, 200, "PUT", "/v1/config", string(export))
	if !strings.Contains(string(body), `"update":0`) {
		t.Fatalf("re-import changed something: %s", body)
	}
	forged := strings.Replace(string(export), gen.ID, "basic-forged", 1)
	_, body = s.mustStatus(t, 422, "PUT", "/v1/config", forged)
	if !strings.Contains(string(body), "basic_auth[0].hash") {
		t.Fatalf("forged credential: %s", body)
	}

	// Delete by id.
	s.mustStatus(t, 204, "DELETE", "/v1/consumers/alice/basic-auth/"+gen.ID, "")
	s.mustStatus(t, 404, "DELETE", "/v1/consumers/alice/basic-auth/"+gen.ID, "")
	_, body = s.mustStatus(t, 200, "GET", "/v1/consumers/alice/basic-auth", "")
	if strings.Contains(string(body), gen.ID) || strings.Count(string(body), `"id"`) != 1 {
		t.Fatalf("after deleting: %s", body)
	}
	// The username is free again.
	s.mustStatus(t, 201, "POST", "/v1/consumers/bob/basic-auth", `{"username":"alice"}`)
}
