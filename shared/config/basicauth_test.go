package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// bcryptHash returns a real bcrypt hash of cost 10 (the control plane's),
// and the same hash relabelled with another cost: Validate only parses.
func bcryptHash(t *testing.T) (cost10 string, withCost func(int) string) {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("correct horse battery"), 10)
	if err != nil {
		t.Fatal(err)
	}
	return string(h), func(c int) string { return fmt.Sprintf("%s%02d%s", h[:4], c, h[6:]) }
}

func TestBasicCredentialRules(t *testing.T) {
	for _, tc := range []struct{ in, problem string }{
		{"alice", ""}, {"alice@example.com", ""}, {"a", ""}, {strings.Repeat("u", MaxBasicUsername), ""},
		{"", "1 to 128"}, {strings.Repeat("u", MaxBasicUsername+1), "1 to 128"},
		{"ali:ce", "without ':'"}, {"ali ce", "visible ASCII"}, {"alicé", "visible ASCII"}, {"a\tb", "visible ASCII"},
	} {
		if got := BasicUsernameProblem(tc.in); (tc.problem == "") != (got == "") || !strings.Contains(got, tc.problem) {
			t.Errorf("username %q: %q, want %q", tc.in, got, tc.problem)
		}
	}
	for _, tc := range []struct{ in, problem string }{
		{"twelve chars", ""}, {"pässwörd mit ümlauten", ""}, {strings.Repeat("p", 72), ""}, {"colons:are:fine", ""},
		{"short", "at least 12"}, {"", "at least 12"}, {strings.Repeat("p", 73), "at most 72"},
		{"bad\xffutf8 string", "UTF-8"}, {"tab\tinside password", "control"}, {"del\x7finside password", "control"},
	} {
		if got := BasicPasswordProblem(tc.in); (tc.problem == "") != (got == "") || !strings.Contains(got, tc.problem) {
			t.Errorf("password %q: %q, want %q", tc.in, got, tc.problem)
		}
	}
}

func TestConsumerBasicAuthValidate(t *testing.T) {
	h, withCost := bcryptHash(t)
	cred := func(id, user, hash string) BasicCredential {
		return BasicCredential{ID: id, Username: user, Hash: hash}
	}
	tests := []struct {
		name     string
		creds    []BasicCredential
		fields   []string // nil = valid
		conflict bool
	}{
		{"valid", []BasicCredential{cred("basic-1", "alice", h), cred("basic-2", "alice-2", withCost(12))}, nil, false},
		{"missing hash", []BasicCredential{cred("basic-1", "alice", "")}, []string{"consumers[0].basic_auth[0].hash"}, false},
		{"not bcrypt", []BasicCredential{cred("basic-1", "alice", "sha256:"+strings.Repeat("0", 64))}, []string{"consumers[0].basic_auth[0].hash"}, false},
		{"cost too low", []BasicCredential{cred("basic-1", "alice", withCost(4))}, []string{"consumers[0].basic_auth[0].hash"}, false},
		{"cost too high", []BasicCredential{cred("basic-1", "alice", withCost(31))}, []string{"consumers[0].basic_auth[0].hash"}, false},
		{"bad username and id", []BasicCredential{cred("", "al:ice", h)}, []string{"consumers[0].basic_auth[0].id", "consumers[0].basic_auth[0].username"}, false},
		{"too many", slices.Repeat([]BasicCredential{cred("basic-1", "x", h)}, MaxBasicCredentials+1)[:MaxBasicCredentials+1], []string{"consumers[0].basic_auth"}, false},
		{"same username twice in one consumer", []BasicCredential{cred("basic-1", "alice", h), cred("basic-2", "alice", h)}, []string{"consumers[0].basic_auth[1].username"}, true},
		{"username of another consumer", []BasicCredential{cred("basic-1", "bob", h)}, []string{"consumers[1].basic_auth[0].username"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			creds := slices.Clone(tc.creds)
			if tc.name == "too many" {
				for i := range creds {
					creds[i].Username = fmt.Sprintf("user%d", i)
				}
			}
			c := Config{Consumers: []Consumer{
				{Name: "alice", BasicAuth: creds},
				{Name: "zed", BasicAuth: []BasicCredential{cred("basic-9", "bob", h)}},
			}}
			if tc.name == "username of another consumer" {
				// The second consumer in document order is the one refused.
				c.Consumers[0], c.Consumers[1] = Consumer{Name: "aaron", BasicAuth: []BasicCredential{cred("basic-9", "bob", h)}}, Consumer{Name: "alice", BasicAuth: creds}
			}
			err := c.Validate()
			if tc.fields == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			kind := ErrInvalid
			if tc.conflict {
				kind = ErrConflict
			}
			if !errors.Is(err, kind) {
				t.Fatalf("error %v, want %v", err, kind)
			}
			var got []string
			for _, fe := range FieldErrors(err) {
				got = append(got, fe.Field)
			}
			slices.Sort(got)
			if fmt.Sprint(got) != fmt.Sprint(tc.fields) {
				t.Fatalf("fields %v, want %v", got, tc.fields)
			}
			if strings.Contains(err.Error(), h[7:]) {
				t.Fatal("the error shows the hash")
			}
		})
	}
}

func TestRouteAuthBasic(t *testing.T) {
	r := Route{Name: "r", Paths: []string{"/"}, Service: "s", Auth: &RouteAuth{Basic: true}}
	if err := r.Validate(); err != nil {
		t.Fatalf("basic alone refused: %v", err)
	}
	r.Auth = &RouteAuth{}
	checkValidation(t, r.Validate(), ErrInvalid, "auth")
}

func TestConsumerRedactedAndKeepsHashes(t *testing.T) {
	h, _ := bcryptHash(t)
	stored := Consumer{Name: "alice", BasicAuth: []BasicCredential{{ID: "basic-1", Username: "alice", Hash: h}, {ID: "basic-2", Username: "al", Hash: h}}}
	red := stored.Redacted()
	if red.BasicAuth[0].Hash != "" || red.BasicAuth[1].Hash != "" || stored.BasicAuth[0].Hash != h {
		t.Fatalf("Redacted: %+v (stored %+v)", red.BasicAuth, stored.BasicAuth)
	}
	// An export sent back keeps the hashes; a renamed username does not
	// inherit one (it must be created again).
	red.BasicAuth[1].Username = "other"
	ConsumerKeepsHashes(&stored, &red)
	if red.BasicAuth[0].Hash != h || red.BasicAuth[1].Hash != "" {
		t.Fatalf("kept: %+v", red.BasicAuth)
	}
}
