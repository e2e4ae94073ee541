package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// The property behind the control plane's validation: whatever
// config.Validate accepts, every data plane compiles, every object of it.
// A gap between the two is how one accepted object (an RS256 issuer with
// keys ["not a key"]) once stopped every data plane from applying
// anything. The generator below draws each field from values that are
// valid, borderline and wrong, so that both sides see the same awkward
// inputs; the corpus of the config decoder's fuzz target and the compile
// golden inputs are checked too.

// acceptsWhatValidateAccepts checks the property for one configuration.
func acceptsWhatValidateAccepts(t *testing.T, cfg *config.Config) {
	t.Helper()
	cfg.Normalize()
	cfg.Sort()
	if cfg.Validate() != nil {
		return
	}
	s, _, err := snapshot.Encode(1, cfg, time.Unix(0, 0))
	if err != nil {
		t.Fatalf("Validate accepted a config snapshot.Encode refuses: %v", err)
	}
	tab, err := Compile(s, nil, acceptDeps())
	if err != nil {
		js, _ := json.Marshal(cfg)
		t.Fatalf("Validate accepted, Compile refused: %v\nconfig: %s", err, js)
	}
	defer tab.Retire(nil)
	if rej := tab.Rejected(); len(rej) > 0 {
		js, _ := json.Marshal(cfg)
		t.Fatalf("Validate accepted, Compile rejected %+v\nconfig: %s", rej, js)
	}
}

// acceptDeps are the test deps with a JWKS client that never leaves the
// machine: the property is about compiling, and a fetch that fails is not
// a compile failure (the issuer waits for a good fetch).
var acceptDeps = sync.OnceValue(func() Deps {
	d := testDeps()
	d.Issuer = auth.IssuerOptions{Log: discardLog(), HTTPClient: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return nil, errors.New("no network in this test")
		},
	}}}
	return d
})

// prune leaves out the objects Validate attributes an error to, until it
// accepts the rest: the generator then yields configurations made only of
// objects that passed validation, with all their awkward values.
func prune(cfg *config.Config) {
	for range 16 {
		cfg.Normalize()
		in, err := cfg.ValidateObjects()
		if err != nil {
			cfg.Global = config.Global{}
			continue
		}
		if in.Empty() {
			return
		}
		cfg.Services = dropIndexes(cfg.Services, in.Services)
		cfg.Routes = dropIndexes(cfg.Routes, in.Routes)
		cfg.Consumers = dropIndexes(cfg.Consumers, in.Consumers)
		cfg.Issuers = dropIndexes(cfg.Issuers, in.Issuers)
	}
}

func dropIndexes[T any](s []T, drop map[int]string) []T {
	out := s[:0:0]
	for i, v := range s {
		if _, bad := drop[i]; !bad {
			out = append(out, v)
		}
	}
	return out
}

// TestCompileAcceptsWhatValidateAccepts runs the property over generated
// configurations (a fixed seed, so a failure reproduces) and the corpora.
func TestCompileAcceptsWhatValidateAccepts(t *testing.T) {
	for _, raw := range acceptCorpus(t) {
		var cfg config.Config
		if config.Decode(raw, &cfg) == nil {
			acceptsWhatValidateAccepts(t, &cfg)
		}
	}
	r := rand.New(rand.NewPCG(13, 6))
	objects := 0
	for range 400 {
		cfg := genConfig(r)
		acceptsWhatValidateAccepts(t, cfg) // as generated: mostly refused
		prune(cfg)
		objects += len(cfg.Services) + len(cfg.Routes) + len(cfg.Consumers) + len(cfg.Issuers)
		acceptsWhatValidateAccepts(t, cfg)
	}
	// The generator must reach accepted objects often enough for the
	// property to say something.
	if objects < 400 {
		t.Fatalf("only %d accepted objects in 400 generated configurations", objects)
	}
	t.Logf("%d accepted objects in 400 generated configurations", objects)
}

// FuzzCompileAcceptsWhatValidateAccepts: the fuzzer's bytes are either a
// JSON configuration (seeded from the corpora) or the seed of the
// generator.
func FuzzCompileAcceptsWhatValidateAccepts(f *testing.F) {
	for _, raw := range acceptCorpus(f) {
		f.Add(raw)
	}
	f.Add([]byte("seed:1"))
	f.Add([]byte("seed:42"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg *config.Config
		if seed, ok := bytes.CutPrefix(data, []byte("seed:")); ok || len(data) > 0 && data[0] != '{' {
			var a, b uint64
			for i, c := range seed {
				if i%2 == 0 {
					a = a*31 + uint64(c)
				} else {
					b = b*37 + uint64(c)
				}
			}
			cfg = genConfig(rand.New(rand.NewPCG(a, b)))
			prune(cfg)
		} else {
			cfg = &config.Config{}
			if config.Decode(data, cfg) != nil {
				return
			}
		}
		acceptsWhatValidateAccepts(t, cfg)
	})
}

// acceptCorpus reads the config decoder's fuzz corpus (go test fuzz v1
// files) and the compile golden inputs.
func acceptCorpus(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	files, _ := filepath.Glob("../../../shared/config/testdata/fuzz/FuzzDecodeConfig/*")
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if q, ok := strings.CutPrefix(line, "[]byte("); ok {
				if s, err := strconv.Unquote(strings.TrimSuffix(q, ")")); err == nil {
					out = append(out, []byte(s))
				}
			}
		}
		f.Close()
	}
	golden, _ := filepath.Glob("testdata/compile/*.in.json")
	for _, name := range golden {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	if len(files) == 0 || len(golden) == 0 {
		t.Fatalf("corpus not found (%d fuzz files, %d golden inputs)", len(files), len(golden))
	}
	return out
}

// pick returns one of vs.
func pick[T any](r *rand.Rand, vs ...T) T { return vs[r.IntN(len(vs))] }

// mostly returns good seven times in eight, else one of others: each field
// is usually valid, so that whole objects often are.
func mostly[T any](r *rand.Rand, good T, others ...T) T {
	if r.IntN(8) > 0 || len(others) == 0 {
		return good
	}
	return pick(r, others...)
}

// some returns up to n values drawn from vs.
func some[T any](r *rand.Rand, n int, vs ...T) []T {
	k := r.IntN(n + 1)
	if k == 0 {
		return nil
	}
	out := make([]T, k)
	for i := range out {
		out[i] = pick(r, vs...)
	}
	return out
}

// genKeys are keys in every format an issuer may be given, valid and not.
var genKeys = sync.OnceValue(func() []string {
	rk, _ := rsa.GenerateKey(crand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	ek384, _ := ecdsa.GenerateKey(elliptic.P384(), crand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(crand.Reader)
	pkix := func(k any) string {
		der, _ := x509.MarshalPKIXPublicKey(k)
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	privDER, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	return []string{
		pkix(&rk.PublicKey), pkix(&ek.PublicKey), pkix(&ek384.PublicKey), pkix(edPub),
		string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rk.PublicKey)})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})),
		pkix(&rk.PublicKey) + pkix(&ek.PublicKey),
		"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
		`{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`,
		`{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"ES256"}`,
		`{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`,
		`{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}`,
		`{"kty":"oct","k":"c2VjcmV0"}`,
		`{"kty":"RSA","n":"AQAB","e":"AQAB","use":"enc"}`,
		"{", "not a key", " ", "0123456789abcdef0123456789abcdef", "short-secret",
		"0123456789abcdef0123456789abcdef{\"kty\":\"x\"}",
	}
})

// genDescriptorSets are serialized FileDescriptorSets: one that links, one
// whose method names a message type nowhere defined, and garbage.
var genDescriptorSets = sync.OnceValue(func() [][]byte {
	file := func(input string) []byte {
		fds := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{{
			Name: proto.String("g.proto"), Package: proto.String("g"), Syntax: proto.String("proto3"),
			MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Req")}},
			Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("S"), Method: []*descriptorpb.MethodDescriptorProto{
				{Name: proto.String("M"), InputType: proto.String(input), OutputType: proto.String(".g.Req")},
			}}},
		}}}
		b, _ := proto.Marshal(fds)
		return b
	}
	return [][]byte{file(".g.Req"), file(".g.Missing"), []byte("not a descriptor set")}
})

// genConfig draws a configuration: a few services, issuers, consumers and
// routes whose fields come from lists of valid, borderline and wrong values
// and whose references mostly point at objects that exist.
func genConfig(r *rand.Rand) *config.Config {
	svcNames := []string{"s0", "s1", "s2"}
	issNames := []string{"i0", "i1"}
	cfg := &config.Config{}
	// s0 speaks HTTP and s1 gRPC (mostly); s2, when drawn, anything.
	for i := range r.IntN(2) + 2 {
		svc := config.Service{Name: svcNames[i]}
		if r.IntN(6) == 0 {
			svc.Consul = &config.ConsulSource{Service: pick(r, "demo", "bad name"), Scheme: pick(r, "", "https", "gopher")}
		} else {
			for range r.IntN(2) + 1 {
				svc.Targets = append(svc.Targets, config.Target{URL: mostly(r,
					"http://127.0.0.1:9", "http://h:1", "https://h.example", "http://[::1]:80/p", "http://h:99999",
					"ftp://h", "http://user@h", "http://h/p?q", "http://h:0", "http://[::1", "http://h:80x"),
					Weight: mostly(r, 0, 1, 5, -1)})
			}
		}
		svc.LoadBalancer = mostly(r, "", "weighted", "least_request", "consistent_hash", "random")
		svc.HashOn = mostly(r, "", "header:X-User", "cookie:sid", "client_ip", "header:", "query:x")
		svc.ConnectTimeout = config.Duration(mostly(r, 0, time.Second, 2*time.Minute))
		svc.Timeout = config.Duration(pick(r, 0, time.Second))
		if r.IntN(4) == 0 {
			svc.Retries = &config.Retries{Attempts: pick(r, 0, 1, 3, 11), OnStatuses: some(r, 2, 502, 503, 404), BudgetPercent: pick(r, 0, 20, 101)}
		}
		if r.IntN(4) == 0 {
			svc.CircuitBreaker = &config.CircuitBreaker{FailureRatio: pick(r, 0, 0.5, 1, 1.5), MinRequests: pick(r, 0, 1, 5),
				Interval: config.Duration(pick(r, 0, time.Second)), OpenTimeout: config.Duration(pick(r, 0, time.Second)), HalfOpenRequests: pick(r, 0, 1, 3)}
		}
		if r.IntN(4) == 0 {
			svc.OutlierDetection = &config.OutlierDetection{ConsecutiveFailures: pick(r, 0, 1, 5), BaseEjection: config.Duration(pick(r, 0, time.Second, time.Minute)),
				MaxEjection: config.Duration(pick(r, 0, 30*time.Second, time.Hour)), MaxEjectedPercent: pick(r, 0, 50, 100)}
		}
		if r.IntN(5) == 0 {
			svc.HealthCheck = &config.HealthCheck{Path: pick(r, "/healthz", "healthz", "/a b"), Interval: config.Duration(pick(r, 0, time.Second, 10*time.Millisecond))}
		}
		if i == 1 || i == 2 && r.IntN(3) == 0 {
			svc.Protocol = mostly(r, "grpc", "http", "h3")
			if r.IntN(2) == 0 {
				sets := genDescriptorSets()
				svc.GRPC = &config.ServiceGRPC{DescriptorSet: mostly(r, sets[0], sets...)}
			}
		}
		cfg.Services = append(cfg.Services, svc)
	}
	keys := genKeys() // rsa, ec256, ec384, ed25519 PEMs first; then the rest
	for i := range r.IntN(3) {
		is := config.Issuer{Name: issNames[min(i, 1)], Issuer: mostly(r, "https://"+issNames[min(i, 1)]+".example", ""),
			Audiences: mostly(r, nil, []string{"api"}, []string{""})}
		fam := r.IntN(5)
		is.Algorithms = []string{[]string{"RS256", "ES256", "ES384", "EdDSA", "HS256"}[fam]}
		good := []string{keys[0], keys[1], keys[2], keys[3], "0123456789abcdef0123456789abcdef"}[fam]
		is.Algorithms = mostly(r, is.Algorithms, []string{"RS256", "PS256"}, []string{"ES256", "ES512"}, []string{"none"}, []string{"HS256", "RS256"})
		if r.IntN(4) == 0 {
			is.JWKSURL = mostly(r, "http://127.0.0.1:1/jwks", "ftp://x/jwks", "https://")
			is.JWKSRefresh = config.Duration(mostly(r, 0, time.Second, time.Millisecond))
		} else {
			is.Keys = []string{mostly(r, good, keys...)}
			if r.IntN(3) == 0 {
				is.Keys = append(is.Keys, mostly(r, good, keys...))
			}
		}
		is.Leeway = config.Duration(mostly(r, 0, time.Second, time.Hour))
		is.MaxTokenLifetime = config.Duration(mostly(r, 0, time.Hour, time.Second))
		is.ConsumerClaim = mostly(r, "", "client_id", "a b")
		cfg.Issuers = append(cfg.Issuers, is)
	}
	for i := range r.IntN(3) {
		cs := config.Consumer{Name: mostly(r, "alice", "bob", "-x") + strconv.Itoa(i), Groups: mostly(r, []string{"staff"}, some(r, 2, "staff", "ops", "bad group")),
			JWTIssuers: mostly(r, nil, []string{"i0"}, []string{"ghost"})}
		if r.IntN(2) == 0 {
			_, id, hash, _ := apikey.New()
			cs.APIKeys = []config.APIKey{{ID: mostly(r, id, "bad id"), Hash: mostly(r, hash, "sha256:00")}}
		}
		cfg.Consumers = append(cfg.Consumers, cs)
	}
	for i := range r.IntN(4) + 1 {
		rt := config.Route{Name: "r" + strconv.Itoa(i),
			Paths:   []string{mostly(r, "/r"+strconv.Itoa(i)+pick(r, "", "/{id}", "/*", "/{id}/*", "/"), "/a", "/a/{id}", "/b/*", "/", "/*", "/x%", "/a/{id}/{id}", "/f/{p}/*")},
			Methods: mostly(r, nil, some(r, 2, "GET", "post", "HEAD", "GTE")),
			Hosts:   mostly(r, nil, some(r, 1, "api.example.com", "*.example.com", "Bad_Host", "*.*.x")),
		}
		mode := r.IntN(5) // 0-2 proxy, 3 aggregate, 4 gRPC
		if mode == 3 {
			for k := range r.IntN(3) + 1 {
				rt.Aggregate = append(rt.Aggregate, config.AggregateBackend{Service: mostly(r, "s0", svcNames...),
					Path: mostly(r, "/u/{id}", "/u/{nope}", "/q?x={id}", "/{", "u", "/v/{*}", "/w", "/q?x={id}&y=1"), Key: mostly(r, "k"+strconv.Itoa(k), "", "a"),
					Method: mostly(r, "", "GET", "POST", "DELETE", "HEAD"), Timeout: config.Duration(mostly(r, 0, time.Second)),
					Required: r.IntN(2) == 0})
			}
		} else {
			rt.Service = mostly(r, "s0", append(svcNames, "ghost")...)
		}
		if mode < 3 || r.IntN(8) == 0 {
			rt.StripPrefix = r.IntN(8) == 0
			rt.Rewrite = mostly(r, "", "/v2/{id}", "/v2/{*}", "/x/{", "v2", "/{nope}", "/v2")
		}
		if r.IntN(4) == 0 {
			rt.Query = &config.Edits{Set: map[string]string{mostly(r, "a", "", "b c"): mostly(r, "x", "{id}", "{")}, Remove: mostly(r, nil, []string{"t"}, []string{""})}
		}
		if r.IntN(4) == 0 {
			rt.RequestHeaders = &config.Edits{Add: map[string]string{mostly(r, "X-A", "Bad Header", "Host", "X_A"): mostly(r, "v", "{id}", "a\nb")}}
		}
		if r.IntN(4) == 0 {
			rt.ResponseHeaders = &config.Edits{Set: map[string]string{mostly(r, "X-B", "Content-Length", ""): mostly(r, "v", "{*}")}}
		}
		if r.IntN(4) == 0 {
			rt.CORS = &config.CORS{AllowOrigins: mostly(r, []string{"https://a.example"}, some(r, 2, "*", "https://a.example", "https://*.example.com", "not an origin", "null", "https://a.example/path")),
				AllowMethods: mostly(r, nil, []string{"GET"}, []string{"FETCH"}), AllowHeaders: mostly(r, nil, []string{"X-A"}, []string{"bad header"}),
				AllowCredentials: r.IntN(4) == 0, MaxAge: config.Duration(mostly(r, 0, time.Minute, 48*time.Hour))}
		}
		if r.IntN(4) == 0 {
			rt.Cache = &config.RouteCache{TTL: config.Duration(mostly(r, time.Minute, 0, 60*24*time.Hour)), Store: mostly(r, "", "memory", "redis", "disk"),
				KeyHeaders: mostly(r, nil, []string{"Accept"}, []string{"bad header"}), KeyQuery: mostly(r, nil, []string{"q"}, []string{""}),
				IgnoreQuery: r.IntN(4) == 0, KeyConsumer: r.IntN(4) == 0, MaxEntryBytes: mostly[int64](r, 0, 1024, -1, 1<<40)}
		}
		if mode == 4 {
			rt.Service = mostly(r, "s1", svcNames...)
			rt.Aggregate = nil
			rt.GRPC = &config.RouteGRPC{Method: mostly(r, "g.S/M", "g.S/Missing", "/g.S/M", "bad", "g.S/M/x", "1.S/M")}
		}
		if r.IntN(3) == 0 {
			jwt := r.IntN(2) == 0
			rt.Auth = &config.RouteAuth{JWT: jwt, APIKey: !jwt || r.IntN(2) == 0, Groups: mostly(r, nil, []string{"staff"}, []string{"bad group"})}
			if jwt {
				rt.Auth.Issuers = mostly(r, nil, []string{"i0"}, []string{"ghost"})
				rt.Auth.Scopes = mostly(r, nil, []string{"read"}, []string{"a b"})
				rt.Auth.ForwardClaims = mostly(r, nil, map[string]string{"sub": "X-User-Sub"}, map[string]string{"sub": "X_User"}, map[string]string{"": "Authorization"})
			}
		}
		if r.IntN(4) == 0 {
			rt.RateLimit = &config.RateLimit{Limit: mostly(r, 100, 0, 1), Window: config.Duration(mostly(r, time.Second, 0, time.Minute)),
				Burst: mostly(r, 0, 5), Key: mostly(r, "", "ip", "consumer", "header:X-Key", "claim:sub", "cookie:x"),
				OnRedisError: mostly(r, "", "fail_open", "fail_closed", "fail_maybe")}
		}
		rt.MaxInFlight = mostly(r, 0, 3, -1)
		if rt.MaxInFlight > 0 {
			rt.QueueTimeout = config.Duration(mostly(r, 0, time.Second))
		}
		rt.Timeout = config.Duration(mostly(r, 0, time.Second, 2*time.Hour))
		rt.MaxBodyBytes = mostly[int64](r, 0, 1024, -1)
		cfg.Routes = append(cfg.Routes, &rt)
	}
	if r.IntN(5) == 0 {
		cfg.Global.RateLimit = &config.RateLimit{Limit: 10, Window: config.Duration(time.Second), Key: pick(r, "ip", "consumer")}
	}
	return cfg
}
