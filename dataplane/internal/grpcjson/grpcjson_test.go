package grpcjson

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/portico-gw/portico/dataplane/internal/demoshop"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/problem"
	"github.com/portico-gw/portico/shared/testutil"
)

type result struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// serve runs one request through m with a ResponseRecorder.
func serve(t *testing.T, m *Method, method, target, body string, params map[string]string, hdr ...string) result {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	m.Serve(w, r, params)
	res := result{status: w.Code, header: w.Header(), raw: w.Body.String()}
	if err := json.Unmarshal(w.Body.Bytes(), &res.body); err != nil {
		t.Fatalf("%s %s: body is not JSON: %v\n%s", method, target, err, w.Body.String())
	}
	return res
}

func mustMethod(t *testing.T, full string, set []byte, up *upstream.Upstream, pool *Pool) *Method {
	t.Helper()
	m, err := NewMethod("shop", full, set, up, pool)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// wantProblem checks a problem document's status, type slug and gRPC code.
func wantProblem(t *testing.T, res result, status int, slug, grpcCode string) {
	t.Helper()
	if res.status != status {
		t.Fatalf("status %d, want %d: %s", res.status, status, res.raw)
	}
	if ct := res.header.Get("Content-Type"); ct != problem.ContentType {
		t.Errorf("Content-Type %q", ct)
	}
	if got := res.body["type"]; got != problem.TypeURI(slug) {
		t.Errorf("type %v, want %s: %s", got, problem.TypeURI(slug), res.raw)
	}
	if got, _ := res.body["grpc_code"].(string); got != grpcCode {
		t.Errorf("grpc_code %q, want %q: %s", got, grpcCode, res.raw)
	}
	if res.body["status"] != float64(status) {
		t.Errorf("problem status %v", res.body["status"])
	}
}

func TestServe(t *testing.T) {
	for _, mode := range []struct {
		name   string
		refl   reflectionMode
		useSet bool
	}{
		{"reflection v1", reflectV1, false},
		{"reflection v1alpha", reflectV1Alpha, false},
		{"descriptor set", reflectNone, true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			srv := startShop(t, serverOpts{reflection: mode.refl})
			up := newUpstream(t, srv.addr)
			pool := newPool(t, PoolOptions{})
			var set []byte
			if mode.useSet {
				set = shopDescriptorSet(t)
			}
			get := mustMethod(t, "shop.v1.Orders/GetOrder", set, up, pool)
			create := mustMethod(t, "shop.v1.Orders/CreateOrder", set, up, pool)

			t.Run("get with path, query and body", func(t *testing.T) {
				res := serve(t, get, "GET", "/orders/o-1?version=3&fields=a&fields=b&filter.status=open", "", map[string]string{"id": "o-1"},
					"X-Request-Id", "req-42", "Authorization", "Bearer secret", "Cookie", "s=1", "X-Consumer-Name", "alice")
				if res.status != 200 {
					t.Fatalf("status %d: %s", res.status, res.raw)
				}
				if ct := res.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				want := map[string]any{"id": "o-1", "status": "v3,a,b,filter=open", "totalCents": "1234"}
				for k, v := range want {
					if res.body[k] != v {
						t.Errorf("%s = %v, want %v (%s)", k, res.body[k], v, res.raw)
					}
				}
				if _, ok := res.body["items"]; ok {
					t.Errorf("unpopulated field emitted: %s", res.raw)
				}
				if got := res.header.Get("Grpc-Metadata-X-Served-By"); got != "shop-test" {
					t.Errorf("Grpc-Metadata-X-Served-By = %q", got)
				}
				if got := res.header.Get("Grpc-Metadata-X-Sig-Bin"); got != "AAE=" {
					t.Errorf("binary metadata = %q, want base64", got)
				}
				if got := res.header.Get("Grpc-Trailer-X-Cost"); got != "3" {
					t.Errorf("Grpc-Trailer-X-Cost = %q", got)
				}
				md := *srv.lastMD.Load()
				if got := md.Get("x-request-id"); len(got) != 1 || got[0] != "req-42" {
					t.Errorf("x-request-id metadata = %q", got)
				}
				if got := md.Get("x-consumer-name"); len(got) != 1 || got[0] != "alice" {
					t.Errorf("x-consumer-name metadata = %q", got)
				}
				for _, k := range []string{"authorization", "cookie"} {
					if got := md.Get(k); len(got) != 0 {
						t.Errorf("%s forwarded: %q", k, got)
					}
				}
			})
			t.Run("path parameter wins over query and body", func(t *testing.T) {
				res := serve(t, get, "POST", "/orders/o-2?id=other", `{"id":"body","version":7}`, map[string]string{"id": "o-2"})
				if res.status != 200 || res.body["id"] != "o-2" || res.body["status"] != "v7" {
					t.Fatalf("%d %s", res.status, res.raw)
				}
			})
			t.Run("create with body", func(t *testing.T) {
				res := serve(t, create, "POST", "/orders", `{"id":"n-1","total_cents":"990","items":[{"sku":"A","quantity":2}]}`, nil)
				if res.status != 200 {
					t.Fatalf("status %d: %s", res.status, res.raw)
				}
				if res.body["status"] != "created" || res.body["totalCents"] != "990" {
					t.Errorf("body %s", res.raw)
				}
				items, _ := res.body["items"].([]any)
				if len(items) != 1 || items[0].(map[string]any)["quantity"] != float64(2) {
					t.Errorf("items %v", res.body["items"])
				}
			})
			t.Run("empty body is an empty message", func(t *testing.T) {
				res := serve(t, create, "POST", "/orders", " \n", nil)
				if res.status != 200 || res.body["status"] != "created" {
					t.Fatalf("%d %s", res.status, res.raw)
				}
			})
			t.Run("not found", func(t *testing.T) {
				res := serve(t, get, "GET", "/orders/missing", "", map[string]string{"id": "missing"})
				wantProblem(t, res, 404, "grpc-not-found", "NOT_FOUND")
				if res.body["grpc_message"] != "order missing not found" {
					t.Errorf("grpc_message %v", res.body["grpc_message"])
				}
			})
			t.Run("invalid argument with details", func(t *testing.T) {
				res := serve(t, get, "GET", "/orders/bad", "", map[string]string{"id": "bad"})
				wantProblem(t, res, 400, "grpc-invalid-argument", "INVALID_ARGUMENT")
				details, _ := res.body["grpc_details"].([]any)
				if len(details) != 1 {
					t.Fatalf("details %s", res.raw)
				}
				d := details[0].(map[string]any)
				if d["@type"] != "type.googleapis.com/google.rpc.BadRequest" {
					t.Errorf("@type %v", d["@type"])
				}
				fv, _ := d["fieldViolations"].([]any)
				if len(fv) != 1 || fv[0].(map[string]any)["field"] != "id" {
					t.Errorf("field violations %v", d)
				}
			})
			t.Run("server says unavailable", func(t *testing.T) {
				before := srv.calls.Load()
				res := serve(t, get, "GET", "/orders/unavailable", "", map[string]string{"id": "unavailable"})
				wantProblem(t, res, 503, "upstream-unavailable", "UNAVAILABLE")
				if n := srv.calls.Load() - before; n != 1 {
					t.Errorf("%d calls: a call the server saw must not be retried", n)
				}
			})

			gatewayErrors := []struct {
				name, method, target, body string
				params                     map[string]string
				status                     int
				slug, detail               string
			}{
				{"bad json", "POST", "/orders", `{"id":`, nil, 400, "bad-json", "shop.v1.Order"},
				{"unknown field", "POST", "/orders", `{"nope":1}`, nil, 400, "bad-json", `unknown field "nope"`},
				{"wrong json type", "POST", "/orders", `{"total_cents":true}`, nil, 400, "bad-json", "totalCents"},
				{"bad query value", "GET", "/orders/x?version=abc", "", map[string]string{"id": "x"}, 400, "bad-parameter", `version: "abc" is not a 32-bit integer`},
				{"two values for one field", "GET", "/orders/x?version=1&version=2", "", map[string]string{"id": "x"}, 400, "bad-parameter", "takes one value"},
				{"map from query", "GET", "/orders/x?labels=a", "", nil, 400, "bad-parameter", "map fields"},
			}
			for _, tc := range gatewayErrors {
				t.Run(tc.name, func(t *testing.T) {
					m := get
					if tc.method == "POST" {
						m = create
					}
					before := srv.calls.Load()
					res := serve(t, m, tc.method, tc.target, tc.body, tc.params)
					wantProblem(t, res, tc.status, tc.slug, "")
					if d, _ := res.body["detail"].(string); !strings.Contains(d, tc.detail) {
						t.Errorf("detail %q does not mention %q", d, tc.detail)
					}
					if n := srv.calls.Load() - before; n != 0 {
						t.Errorf("%d calls made for a request the gateway refused", n)
					}
				})
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  bool
	}{{"reflection", false}, {"descriptor set", true}} {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, testutil.RefusedAddr(t))
			var set []byte
			if tc.set {
				set = shopDescriptorSet(t)
			}
			m := mustMethod(t, "shop.v1.Orders/GetOrder", set, up, newPool(t, PoolOptions{}))
			res := serve(t, m, "GET", "/orders/1", "", map[string]string{"id": "1"})
			wantProblem(t, res, 503, "upstream-unavailable", "UNAVAILABLE")
			if d, _ := res.body["detail"].(string); !strings.Contains(d, "service shop is unavailable") {
				t.Errorf("detail %q", d)
			}
		})
	}
}

// A call that never reached a server moves to another instance.
func TestRetryOnAnotherInstance(t *testing.T) {
	srv := startShop(t, serverOpts{reflection: reflectNone})
	up := newUpstream(t, testutil.RefusedAddr(t), srv.addr)
	m := mustMethod(t, "shop.v1.Orders/GetOrder", shopDescriptorSet(t), up, newPool(t, PoolOptions{}))
	for i := range 4 {
		res := serve(t, m, "GET", "/orders/1", "", map[string]string{"id": "1"})
		if res.status != 200 {
			t.Fatalf("request %d: %d %s", i, res.status, res.raw)
		}
	}
	if n := srv.calls.Load(); n != 4 {
		t.Errorf("%d calls, want 4", n)
	}
}

func TestNoInstance(t *testing.T) {
	up := newUpstream(t) // no targets
	m := mustMethod(t, "shop.v1.Orders/GetOrder", nil, up, newPool(t, PoolOptions{}))
	res := serve(t, m, "GET", "/orders/1", "", nil)
	wantProblem(t, res, 503, "no-healthy-upstream", "")
}

func TestNoReflection(t *testing.T) {
	srv := startShop(t, serverOpts{reflection: reflectNone})
	m := mustMethod(t, "shop.v1.Orders/GetOrder", nil, newUpstream(t, srv.addr), newPool(t, PoolOptions{}))
	res := serve(t, m, "GET", "/orders/1", "", nil)
	wantProblem(t, res, 502, "grpc-no-descriptors", "")
	if d, _ := res.body["detail"].(string); !strings.Contains(d, "descriptor set") {
		t.Errorf("detail %q", d)
	}
}

// The route timeout (the caller's deadline) is a 504, and the call is not
// made once it has passed.
func TestDeadline(t *testing.T) {
	srv := startShop(t, serverOpts{reflection: reflectNone})
	m := mustMethod(t, "shop.v1.Orders/GetOrder", shopDescriptorSet(t), newUpstream(t, srv.addr), newPool(t, PoolOptions{}))
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel()
	r := httptest.NewRequestWithContext(ctx, "GET", "/orders/1", nil)
	w := httptest.NewRecorder()
	m.Serve(w, r, map[string]string{"id": "1"})
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, result{status: w.Code, header: w.Header(), body: body, raw: w.Body.String()}, 504, "upstream-timeout", "DEADLINE_EXCEEDED")
}

// Reflection results are looked up again when the method was missing: the
// server is redeployed with it on the same address.
func TestReflectionRefresh(t *testing.T) {
	srv := startShop(t, serverOpts{})
	up := newUpstream(t, srv.addr)
	pool := newPool(t, PoolOptions{})
	cancel := mustMethod(t, "shop.v1.Orders/CancelOrder", nil, up, pool)
	get := mustMethod(t, "shop.v1.Orders/GetOrder", nil, up, pool)

	res := serve(t, cancel, "POST", "/orders/1:cancel", "", map[string]string{"id": "1"})
	wantProblem(t, res, 501, "grpc-unimplemented", "UNIMPLEMENTED")
	if res := serve(t, get, "GET", "/orders/1", "", map[string]string{"id": "1"}); res.status != 200 {
		t.Fatalf("get: %d %s", res.status, res.raw)
	}

	srv.stop()
	startShop(t, serverOpts{withCancel: true, addr: srv.addr})

	res = afterRestart(t, pool, srv.addr, cancel, "POST", "/orders/1:cancel", map[string]string{"id": "1"})
	if res.status != 200 || res.body["status"] != "cancelled" {
		t.Fatalf("cancel after restart: %d %s", res.status, res.raw)
	}
}

// afterRestart serves a request once the pool's connection to addr has
// seen its server go away. A call can still meet the dying connection
// (EOF, UNAVAILABLE) before the client notices; it then tries again, a
// bounded number of times and on connection state changes, never on time.
func afterRestart(t *testing.T, pool *Pool, addr string, m *Method, method, target string, params map[string]string) result {
	t.Helper()
	c, err := pool.conn("http", addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	var res result
	for range 5 {
		for s := c.GetState(); s == connectivity.Ready; s = c.GetState() {
			if !c.WaitForStateChange(ctx, s) {
				t.Fatal("the connection never noticed the restart")
			}
		}
		if res = serve(t, m, method, target, "", params); res.status != 503 {
			return res
		}
	}
	return res
}

// A method that disappears from a server answers 501 and its cached
// descriptors are dropped, so that a later deployment is learned again.
func TestUnimplementedForgetsDescriptors(t *testing.T) {
	srv := startShop(t, serverOpts{withCancel: true})
	pool := newPool(t, PoolOptions{})
	m := mustMethod(t, "shop.v1.Orders/CancelOrder", nil, newUpstream(t, srv.addr), pool)
	params := map[string]string{"id": "1"}
	if res := serve(t, m, "POST", "/orders/1:cancel", "", params); res.status != 200 {
		t.Fatalf("%d %s", res.status, res.raw)
	}
	srv.stop()
	srv2 := startShop(t, serverOpts{addr: srv.addr})
	res := afterRestart(t, pool, srv.addr, m, "POST", "/orders/1:cancel", params)
	wantProblem(t, res, 501, "grpc-unimplemented", "UNIMPLEMENTED")
	if m.learned.Load() != nil {
		t.Error("descriptors still cached after UNIMPLEMENTED")
	}
	srv2.stop()
	startShop(t, serverOpts{withCancel: true, addr: srv.addr})
	if res := afterRestart(t, pool, srv.addr, m, "POST", "/orders/1:cancel", params); res.status != 200 {
		t.Fatalf("after redeploy: %d %s", res.status, res.raw)
	}
}

func TestBodyTooLarge(t *testing.T) {
	srv := startShop(t, serverOpts{reflection: reflectNone})
	m := mustMethod(t, "shop.v1.Orders/CreateOrder", shopDescriptorSet(t), newUpstream(t, srv.addr), newPool(t, PoolOptions{}))
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/orders", strings.NewReader(`{"id":"0123456789"}`))
	r.Body = http.MaxBytesReader(w, r.Body, 8)
	m.Serve(w, r, nil)
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, result{status: w.Code, header: w.Header(), body: body, raw: w.Body.String()}, 413, "too-large", "")
	if srv.calls.Load() != 0 {
		t.Error("call made")
	}
}

func mustMarshalSet(t *testing.T, files ...*descriptorpb.FileDescriptorProto) []byte {
	t.Helper()
	b, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: files})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewMethodErrors(t *testing.T) {
	set := shopDescriptorSet(t)
	for _, tc := range []struct {
		name, method string
		set          []byte
		want         string
	}{
		{"not a method name", "GetOrder", nil, "want package.Service/Method"},
		{"too many slashes", "shop.v1.Orders/Get/Order", nil, "want package.Service/Method"},
		{"invalid name", "shop..v1.Orders/GetOrder", nil, "not a valid protobuf name"},
		{"garbage set", "shop.v1.Orders/GetOrder", []byte("\xff\xff\xff"), "not a serialized"},
		{"service missing", "shop.v1.Carts/GetOrder", set, "method not found"},
		{"method missing", "shop.v1.Orders/DeleteOrder", set, "method not found"},
		{"streaming", "shop.v1.Orders/WatchOrders", set, "streaming"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewMethod("shop", tc.method, tc.set, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// A set without its imports still links: the well-known types are in
	// the binary.
	b := mustMarshalSet(t, demoshop.FileProto(false))
	if _, err := NewMethod("shop", "shop.v1.Orders/GetOrder", b, nil, nil); err != nil {
		t.Fatalf("set without imports: %v", err)
	}
}

func TestTracing(t *testing.T) {
	srv := startShop(t, serverOpts{reflection: reflectNone})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prop := propagation.TraceContext{}
	pool := newPool(t, PoolOptions{TracerProvider: tp, Propagator: prop})
	m := mustMethod(t, "shop.v1.Orders/GetOrder", shopDescriptorSet(t), newUpstream(t, srv.addr), pool)

	parent, span := tp.Tracer("test").Start(context.Background(), "server")
	r := httptest.NewRequestWithContext(parent, "GET", "/orders/1", nil)
	m.Serve(httptest.NewRecorder(), r, map[string]string{"id": "1"})
	span.End()

	var client sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			client = s
		}
	}
	if client == nil {
		t.Fatal("no client span")
	}
	if client.Name() != "shop.v1.Orders/GetOrder" || client.Parent().SpanID() != span.SpanContext().SpanID() {
		t.Errorf("client span %q, parent %v", client.Name(), client.Parent().SpanID())
	}
	tp0 := srv.lastMD.Load().Get("traceparent")
	if len(tp0) != 1 || !strings.Contains(tp0[0], client.SpanContext().SpanID().String()) {
		t.Errorf("traceparent %q does not name the client span %s", tp0, client.SpanContext().SpanID())
	}
}

func TestHTTPStatus(t *testing.T) {
	want := map[codes.Code]int{
		codes.OK: 200, codes.Canceled: 499, codes.Unknown: 500, codes.InvalidArgument: 400,
		codes.DeadlineExceeded: 504, codes.NotFound: 404, codes.AlreadyExists: 409,
		codes.PermissionDenied: 403, codes.Unauthenticated: 401, codes.ResourceExhausted: 429,
		codes.FailedPrecondition: 400, codes.Aborted: 409, codes.OutOfRange: 400,
		codes.Unimplemented: 501, codes.Internal: 500, codes.Unavailable: 503, codes.DataLoss: 500,
		codes.Code(99): 500,
	}
	for c, s := range want {
		if got := HTTPStatus(c); got != s {
			t.Errorf("HTTPStatus(%v) = %d, want %d", c, got, s)
		}
	}
	if codeName(codes.OK) != "OK" || codeName(codes.Unauthenticated) != "UNAUTHENTICATED" || codeName(codes.Code(99)) != "CODE_99" {
		t.Error("codeName")
	}
}
