package config

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestExtAuthzValidate(t *testing.T) {
	httpURL := &ExtAuthzHTTP{URL: "http://authz.internal:8181/check"}
	grpcAddr := &ExtAuthzGRPC{Address: "127.0.0.1:9191"}
	tests := []struct {
		name   string
		e      ExtAuthz
		fields []string // nil = valid
	}{
		{"http", ExtAuthz{HTTP: httpURL, UpstreamHeaders: []string{"X-User-Id", "Authorization"}, ClientHeaders: []string{"WWW-Authenticate"}}, nil},
		{"grpc all", ExtAuthz{GRPC: &ExtAuthzGRPC{Address: "opa:9191", UseTLS: true}, TLS: &ExtAuthzTLS{ServerName: "opa.internal"},
			Timeout: Duration(200 * time.Millisecond), FailureMode: FailOpen, Cache: &ExtAuthzCache{TTL: Duration(5 * time.Second), MaxBytes: 4096}}, nil},
		{"none", ExtAuthz{}, []string{"ext_authz"}},
		{"both", ExtAuthz{HTTP: httpURL, GRPC: grpcAddr}, []string{"ext_authz"}},
		{"url scheme", ExtAuthz{HTTP: &ExtAuthzHTTP{URL: "ftp://x/"}}, []string{"ext_authz.http.url"}},
		{"url creds", ExtAuthz{HTTP: &ExtAuthzHTTP{URL: "http://u:p@x/"}}, []string{"ext_authz.http.url"}},
		{"url port", ExtAuthz{HTTP: &ExtAuthzHTTP{URL: "http://x:0/"}}, []string{"ext_authz.http.url"}},
		{"no address", ExtAuthz{GRPC: &ExtAuthzGRPC{}}, []string{"ext_authz.grpc.address"}},
		{"address no port", ExtAuthz{GRPC: &ExtAuthzGRPC{Address: "opa"}}, []string{"ext_authz.grpc.address"}},
		{"tls unused", ExtAuthz{GRPC: grpcAddr, TLS: &ExtAuthzTLS{ServerName: "opa"}}, []string{"ext_authz.tls"}},
		{"tls bad ca", ExtAuthz{HTTP: &ExtAuthzHTTP{URL: "https://x/"}, TLS: &ExtAuthzTLS{CA: "not pem"}}, []string{"ext_authz.tls.ca"}},
		{"timeout", ExtAuthz{HTTP: httpURL, Timeout: Duration(time.Minute)}, []string{"ext_authz.timeout"}},
		{"failure mode", ExtAuthz{HTTP: httpURL, FailureMode: "open"}, []string{"ext_authz.failure_mode"}},
		{"request header", ExtAuthz{HTTP: httpURL, RequestHeaders: []string{"X Bad"}}, []string{"ext_authz.request_headers[0]"}},
		{"duplicate", ExtAuthz{HTTP: httpURL, UpstreamHeaders: []string{"X-User", "x-user"}}, []string{"ext_authz.upstream_headers[1]"}},
		{"identity upstream", ExtAuthz{HTTP: httpURL, UpstreamHeaders: []string{"X-Consumer-Name", "Host", "X-Forwarded-For", "Content-Length"}},
			[]string{"ext_authz.upstream_headers[0]", "ext_authz.upstream_headers[1]", "ext_authz.upstream_headers[2]", "ext_authz.upstream_headers[3]"}},
		{"hop-by-hop to client", ExtAuthz{HTTP: httpURL, ClientHeaders: []string{"Connection"}}, []string{"ext_authz.client_headers[0]"}},
		{"body", ExtAuthz{GRPC: grpcAddr, IncludeBody: &ExtAuthzBody{MaxBytes: 4096}}, nil},
		{"body over http", ExtAuthz{HTTP: httpURL, IncludeBody: &ExtAuthzBody{MaxBytes: 4096}}, nil},
		{"body size over http", ExtAuthz{HTTP: httpURL, IncludeBody: &ExtAuthzBody{MaxBytes: MaxExtAuthzBody + 1}}, []string{"ext_authz.include_body.max_bytes"}},
		{"no body size", ExtAuthz{HTTP: httpURL, IncludeBody: &ExtAuthzBody{}}, []string{"ext_authz.include_body.max_bytes"}},
		{"body size", ExtAuthz{GRPC: grpcAddr, IncludeBody: &ExtAuthzBody{MaxBytes: MaxExtAuthzBody + 1}}, []string{"ext_authz.include_body.max_bytes"}},
		{"cache ttl", ExtAuthz{HTTP: httpURL, Cache: &ExtAuthzCache{}}, []string{"ext_authz.cache.ttl"}},
		{"cache size", ExtAuthz{HTTP: httpURL, Cache: &ExtAuthzCache{TTL: Duration(time.Second), MaxBytes: MaxExtAuthzCacheSize + 1}}, []string{"ext_authz.cache.max_bytes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.e
			r := Route{Name: "r", Paths: []string{"/"}, Service: "s", ExtAuthz: &e}
			err := r.Validate()
			if tc.fields == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v", err)
			}
			var got []string
			for _, fe := range FieldErrors(err) {
				got = append(got, fe.Field)
			}
			if !slices.Equal(got, tc.fields) {
				t.Fatalf("fields %q, want %q (%v)", got, tc.fields, err)
			}
		})
	}
}

// TestExtAuthzDecodeAndClone: the JSON form decodes strictly, and a clone
// shares no list with the original.
func TestExtAuthzDecodeAndClone(t *testing.T) {
	in := `{"name":"r","paths":["/"],"service":"s","ext_authz":{"grpc":{"address":"127.0.0.1:9191"},"timeout":"250ms",
		"failure_mode":"fail_open","upstream_headers":["X-User"],"client_headers":["WWW-Authenticate"],"request_headers":["Authorization"],
		"cache":{"ttl":"10s","max_bytes":65536}}}`
	var r Route
	if err := Decode([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	e := r.ExtAuthz
	if e.EffectiveTimeout() != 250*time.Millisecond || !e.FailOpen() || e.Cache.EffectiveMaxBytes() != 65536 {
		t.Fatalf("decoded %+v", e)
	}
	c := e.clone()
	if !reflect.DeepEqual(c, e) {
		t.Fatalf("clone %+v differs", c)
	}
	c.UpstreamHeaders[0] = "X-Other"
	if e.UpstreamHeaders[0] != "X-User" {
		t.Fatal("clone shares upstream_headers")
	}
	out, _ := json.Marshal(&ExtAuthz{HTTP: &ExtAuthzHTTP{URL: "http://a/"}})
	if string(out) != `{"http":{"url":"http://a/"}}` {
		t.Fatalf("encoded %s", out)
	}
	if err := Decode([]byte(`{"name":"r","paths":["/"],"service":"s","ext_authz":{"http":{"url":"http://a/","method":"POST"}}}`), &r); err == nil {
		t.Fatal("an unknown field decoded")
	}
	if d := (&ExtAuthz{}).EffectiveTimeout(); d != DefaultExtAuthzTimeout {
		t.Fatalf("default timeout %s", d)
	}
}
