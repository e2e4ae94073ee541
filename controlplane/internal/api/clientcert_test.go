package api

import (
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/testutil"
)

func TestClientCertConfig(t *testing.T) {
	s := newTestServer(t, false)
	ca := testutil.NewTestCA(t, "clients CA")
	s.mustStatus(t, 201, "PUT", "/v1/services/s", `{"targets":[{"url":"http://127.0.0.1:1"}]}`)
	_, body := s.mustStatus(t, 422, "PUT", "/v1/routes/r", `{"paths":["/"],"service":"s","auth":{"client_cert":{"ca":"not a PEM"}}}`)
	if !strings.Contains(string(body), "auth.client_cert.ca") {
		t.Fatalf("bad CA: %s", body)
	}
	caJSON := strings.ReplaceAll(ca.PEM, "\n", `\n`)
	s.mustStatus(t, 201, "PUT", "/v1/routes/r", `{"paths":["/"],"service":"s","auth":{"client_cert":{"ca":"`+caJSON+`"}}}`)
	_, body = s.mustStatus(t, 422, "PUT", "/v1/consumers/alice", `{"cert_identities":["alice"]}`)
	if !strings.Contains(string(body), "cert_identities[0]") {
		t.Fatalf("bad identity: %s", body)
	}
	s.mustStatus(t, 201, "PUT", "/v1/consumers/alice", `{"cert_identities":["cn:alice","uri:spiffe://example.org/alice"]}`)
	_, body = s.mustStatus(t, 409, "PUT", "/v1/consumers/bob", `{"cert_identities":["dns:bob.example.com","cn:alice"]}`)
	if !strings.Contains(string(body), "cert_identities[1]") {
		t.Fatalf("taken identity: %s", body)
	}
}
