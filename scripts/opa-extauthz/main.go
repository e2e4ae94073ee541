// Command opa-extauthz is a test-only decision service: Open Policy
// Agent's Rego engine (github.com/open-policy-agent/opa v1.22.4) behind
// Envoy's ext_authz v3 gRPC API (envoy.service.auth.v3.Authorization).
//
// OPA's own Envoy plugin (opa-envoy-plugin) is what operators deploy, but
// the Go module proxy this project builds from does not serve it. This
// program does what that plugin does, and nothing more: the CheckRequest
// becomes the policy's input as its protobuf JSON form (camel-case names:
// input.attributes.contextExtensions) plus input.parsed_path,
// input.parsed_query, input.parsed_body (a JSON body) and input.version, the query (default
// data.envoy.authz.allow) is evaluated by OPA, and its result answers the
// Check the way the plugin's does: a boolean, or an object with allowed,
// headers, response_headers_to_add, body and http_status. Every decision is
// the policy's: the program has none of its own.
//
// It is built by scripts/ensure-opa.sh (its own module, outside the
// workspace) and started by the data plane's tests. It listens on loopback.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/open-policy-agent/opa/v1/rego"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9191", "gRPC listen address")
	policy := flag.String("policy", "", "Rego policy file")
	query := flag.String("query", "data.envoy.authz.allow", "Rego query whose result decides")
	flag.Parse()
	src, err := os.ReadFile(*policy)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pq, err := rego.New(rego.Query(*query), rego.Module(*policy, string(src))).PrepareForEval(ctx)
	if err != nil {
		log.Fatalf("policy: %v", err)
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, &server{pq: pq})
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	log.Printf("opa-extauthz serving %s on %s", *query, lis.Addr())
	if err := srv.Serve(lis); err != nil {
		log.Fatal(err)
	}
}

type server struct {
	authv3.UnimplementedAuthorizationServer
	pq rego.PreparedEvalQuery
}

// Check evaluates the policy on the request, as opa-envoy-plugin does.
func (s *server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	input, err := toInput(req)
	if err != nil {
		return nil, err
	}
	rs, err := s.pq.Eval(ctx, rego.EvalInput(input))
	if err != nil {
		return nil, fmt.Errorf("evaluating the policy: %w", err)
	}
	r := result{HTTPStatus: 403}
	if len(rs) > 0 && len(rs[0].Expressions) > 0 {
		switch v := rs[0].Expressions[0].Value.(type) {
		case bool:
			r.Allowed = v
		case map[string]any:
			b, _ := json.Marshal(v)
			if err := json.Unmarshal(b, &r); err != nil {
				return nil, fmt.Errorf("the policy's decision is not a decision object: %w", err)
			}
		default:
			return nil, fmt.Errorf("the policy's decision has type %T, want boolean or object", v)
		}
	}
	if r.Allowed {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: options(r.Headers), ResponseHeadersToAdd: options(r.ResponseHeadersToAdd),
			}},
		}, nil
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(r.HTTPStatus)}, Headers: options(r.Headers), Body: r.Body,
		}},
	}, nil
}

// result is opa-envoy-plugin's decision object.
type result struct {
	Allowed              bool              `json:"allowed"`
	Headers              map[string]string `json:"headers"`
	ResponseHeadersToAdd map[string]string `json:"response_headers_to_add"`
	Body                 string            `json:"body"`
	HTTPStatus           int               `json:"http_status"`
}

func options(h map[string]string) []*corev3.HeaderValueOption {
	var out []*corev3.HeaderValueOption
	for k, v := range h {
		out = append(out, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}})
	}
	return out
}

// toInput is the plugin's input: the CheckRequest's protobuf JSON form,
// with parsed_path (the path's segments) and parsed_query.
func toInput(req *authv3.CheckRequest) (map[string]any, error) {
	b, err := protojson.Marshal(req)
	if err != nil {
		return nil, err
	}
	var input map[string]any
	if err := json.Unmarshal(b, &input); err != nil {
		return nil, err
	}
	path := req.GetAttributes().GetRequest().GetHttp().GetPath()
	p, rawQuery, _ := strings.Cut(path, "?")
	segs := []any{}
	for _, s := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if u, err := url.PathUnescape(s); err == nil {
			s = u
		}
		segs = append(segs, s)
	}
	input["parsed_path"] = segs
	q := map[string]any{}
	if vals, err := url.ParseQuery(rawQuery); err == nil {
		for k, v := range vals {
			list := make([]any, len(v))
			for i, x := range v {
				list[i] = x
			}
			q[k] = list
		}
	}
	input["parsed_query"] = q
	input["version"] = map[string]any{"encoding": "protojson", "ext_authz": "v3"}
	// parsed_body: a JSON body (by its content type), as the plugin does.
	var parsed any
	h := req.GetAttributes().GetRequest().GetHttp()
	if ct := h.GetHeaders()["content-type"]; strings.HasPrefix(ct, "application/json") && h.GetBody() != "" {
		if err := json.Unmarshal([]byte(h.GetBody()), &parsed); err != nil {
			return nil, fmt.Errorf("the JSON body does not parse: %w", err)
		}
	}
	input["parsed_body"] = parsed
	return input, nil
}
