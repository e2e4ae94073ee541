// Package grpcjson translates HTTP/JSON requests into unary gRPC calls, so
// that a route can expose a gRPC method to HTTP clients (transcoding, like
// grpc-gateway, but driven by configuration instead of generated code).
//
// # Design
//
// The gateway has no generated Go types for the services it fronts. A
// Method holds protobuf descriptors, either parsed once from the service's
// configured descriptor set or learned from the server through gRPC server
// reflection, and builds dynamicpb messages from them; the standard proto
// codec marshals those like any generated message.
//
// A request is translated in a fixed order: the JSON body (protojson,
// unknown fields rejected; an empty body is an empty message), then query
// parameters, then path parameters. Later sources win, so a path parameter
// (the resource's identity in the URL) cannot be overridden by the query or
// the body. Parameters name fields by proto or JSON name, dotted for nested
// messages ("filter.status"); repeated fields take repeated query values;
// names that match no field are ignored, as grpc-gateway does.
//
// The response is the protojson encoding with the canonical proto3 JSON
// mapping: lowerCamelCase field names (the request accepts both spellings),
// 64-bit integers as strings, enums by name, unpopulated fields omitted.
// That is what grpc-gateway and Envoy emit by default, so clients written
// against either keep working.
//
// A call goes through the service's call path (upstream.Call: circuit
// breaker, balancer, retries under the service's `retries` and budget,
// outlier detection, in-flight accounting), the one the reverse proxy and
// aggregation use; this package supplies only the attempt, over one
// long-lived ClientConn per instance in a Pool shared across configuration
// revisions. An attempt that reached no server (connection refused,
// UNAVAILABLE before any connection carried it) may go to another instance
// whatever the method, since no server saw it; one that a server saw is
// tried again only when the client's HTTP method is idempotent (the
// message is in memory, so it can be sent whole again): after the
// service's attempt timeout, or on a status whose HTTP mapping is listed in
// retries.on_statuses (UNAVAILABLE is 503). UNAVAILABLE, DEADLINE_EXCEEDED,
// INTERNAL, UNKNOWN and DATA_LOSS count against the instance and the
// breaker; statuses about the request (NOT_FOUND, INVALID_ARGUMENT...) do
// not, nor does a client that went away.
//
// Errors are RFC 9457 problem documents. A gRPC status maps to an HTTP
// status the way grpc-gateway maps it, with the code, message and details
// as extension members (ExtCode, ExtMessage, ExtDetails).
package grpcjson

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/problem"
)

// reflectionTimeout bounds one descriptor lookup. It runs detached from the
// request that triggered it (others may be waiting for the same lookup), so
// it needs its own bound.
const reflectionTimeout = 10 * time.Second

// Method is a compiled route target: one unary method of one service.
// It is safe for concurrent use.
type Method struct {
	service    string // config service name, for messages
	fullMethod string // "/pkg.Service/Method", as on the wire
	svcName    protoreflect.FullName
	methodName protoreflect.Name
	up         *upstream.Upstream
	pool       *Pool

	// static is set from a descriptor set and never changes; otherwise
	// learned holds what reflection found, nil until the first lookup
	// succeeds and again after a call suggests it is stale.
	static  *methodDesc
	learned atomic.Pointer[methodDesc]
	lookups singleflight.Group
}

// NewMethod compiles fullMethod ("pkg.Service/Method") of service. With a
// descriptorSet (serialized google.protobuf.FileDescriptorSet) the method
// must be in it; without one, descriptors come from the server's
// reflection service on first use.
func NewMethod(service, fullMethod string, descriptorSet []byte, up *upstream.Upstream, pool *Pool) (*Method, error) {
	svc, meth, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok || svc == "" || meth == "" || strings.Contains(meth, "/") {
		return nil, fmt.Errorf("grpc method %q: want package.Service/Method", fullMethod)
	}
	m := &Method{
		service:    service,
		fullMethod: "/" + svc + "/" + meth,
		svcName:    protoreflect.FullName(svc),
		methodName: protoreflect.Name(meth),
		up:         up,
		pool:       pool,
	}
	if !m.svcName.IsValid() || !m.methodName.IsValid() {
		return nil, fmt.Errorf("grpc method %q: not a valid protobuf name", fullMethod)
	}
	if len(descriptorSet) > 0 {
		files, err := parseDescriptorSet(descriptorSet)
		if err != nil {
			return nil, fmt.Errorf("service %q: descriptor set: %w", service, err)
		}
		d, err := describe(files, m.svcName, m.methodName)
		if err != nil {
			return nil, fmt.Errorf("service %q: descriptor set: %w", service, err)
		}
		m.static = d
	}
	return m, nil
}

// FullMethod returns the method as it travels on the wire ("/pkg.Service/Method").
func (m *Method) FullMethod() string { return m.fullMethod }

// descriptors returns the method's descriptors, asking a server through
// reflection when they are not known. Concurrent requests share one
// lookup. The lookup goes through the service's call path like a call (an
// instance failing it is recorded, another is tried under the service's
// retries) but asks no breaker: it is not a client's request, and it
// only reads, so any failure may be tried elsewhere.
func (m *Method) descriptors(ctx context.Context) (*methodDesc, error) {
	if m.static != nil {
		return m.static, nil
	}
	if d := m.learned.Load(); d != nil {
		return d, nil
	}
	ch := m.lookups.DoChan("", func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reflectionTimeout)
		defer cancel()
		// No Request: the lookup outlives the request that started it.
		c := upstream.Call{Upstream: m.up, Resend: true}
		var d *methodDesc
		err := c.Do(lctx, func(ctx context.Context, inst *upstream.Member, _ int) upstream.Result {
			conn, err := m.pool.conn(inst.Scheme, inst.Host, m.up.TLSConfig())
			if err != nil {
				return upstream.Result{Outcome: upstream.Local, Err: err}
			}
			files, err := fetchReflection(ctx, conn, m.svcName)
			if err == nil {
				d, err = describe(files, m.svcName, m.methodName)
			}
			return lookupResult(err)
		})
		if err != nil {
			return nil, err
		}
		m.learned.Store(d)
		return d, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*methodDesc), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Serve translates one request; see the package documentation. The caller
// bounds r's context (route timeout) and r's body (size limit).
func (m *Method) Serve(w http.ResponseWriter, r *http.Request, params map[string]string) {
	m.ServeCall(w, r, params)
}

// ServeCall is Serve, reporting the instance of the call's last attempt and
// how many attempts it made (none when the gateway answered by itself), for
// the access log.
func (m *Method) ServeCall(w http.ResponseWriter, r *http.Request, params map[string]string) (addr string, attempts int) {
	ctx := r.Context()
	d, err := m.descriptors(ctx)
	if err != nil {
		writeProblem(w, r, m.lookupProblem(ctx, err))
		return "", 0
	}
	in, perr := m.buildRequest(d, r, params)
	if perr != nil {
		writeProblem(w, r, perr)
		return "", 0
	}
	c := upstream.Call{Upstream: m.up, Request: r}
	out, hdr, trl, err := m.call(ctx, &c, d, in)
	addr, attempts = c.Addr, c.Attempts
	h := w.Header()
	writeMetadata(h, "Grpc-Metadata-", hdr)
	writeMetadata(h, "Grpc-Trailer-", trl)
	if err != nil {
		writeProblem(w, r, m.callProblem(ctx, err, d))
		return addr, attempts
	}
	body, err := d.marshal.Marshal(out)
	if err != nil {
		writeProblem(w, r, gatewayProblem(http.StatusBadGateway, "grpc-bad-response", fmt.Sprintf("the %s response cannot be written as JSON: %v", d.out.FullName(), err)))
		return addr, attempts
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return addr, attempts
}

// call invokes the method through the service's call path c (for c's
// Request); the header and trailer metadata are the last attempt's.
func (m *Method) call(ctx context.Context, c *upstream.Call, d *methodDesc, in proto.Message) (proto.Message, metadata.MD, metadata.MD, error) {
	r := c.Request
	md := outgoingMetadata(r.Header)
	// The message is in memory, so a request whose HTTP method is
	// idempotent can be sent again whole.
	c.Resend = upstream.Idempotent(r.Method)
	var out proto.Message
	var hdr, trl metadata.MD
	err := c.Run(ctx, func(ctx context.Context, inst *upstream.Member, n int) upstream.Result {
		conn, err := m.pool.conn(inst.Scheme, inst.Host, m.up.TLSConfig())
		if err != nil {
			return upstream.Result{Outcome: upstream.Local, Err: err}
		}
		msg := dynamicpb.NewMessage(d.out)
		hdr, trl = nil, nil
		var pr peer.Peer
		err = m.invoke(ctx, conn, inst.Host, n, md.Copy(), in, msg, &hdr, &trl, &pr)
		if err == nil {
			out = msg
		}
		return callResult(err, pr.Addr != nil)
	})
	if err != nil {
		if status.Code(err) == codes.Unimplemented && m.static == nil {
			// The server may have been redeployed without the method, or
			// with a different schema: look it up again next time.
			m.learned.CompareAndSwap(d, nil)
		}
		return nil, hdr, trl, err
	}
	return out, hdr, trl, nil
}

// callResult classifies one call for the call path; reached tells whether
// a connection carried it to a server.
func callResult(err error, reached bool) upstream.Result {
	if err == nil {
		return upstream.Result{}
	}
	st, ok := status.FromError(err)
	if !ok {
		return upstream.Result{Outcome: upstream.Broken, Err: err}
	}
	c := st.Code()
	switch {
	case c == codes.Unavailable && !reached:
		// No server saw it: another instance may have it.
		return upstream.Result{Outcome: upstream.Broken, Unsent: true, Err: err}
	case InstanceFailed(c):
		return upstream.Result{Outcome: upstream.Failed, Status: HTTPStatus(c), Err: err}
	}
	return upstream.Result{Status: HTTPStatus(c), Err: err}
}

// lookupResult classifies a reflection lookup for the call path: a server
// that answers without the method, or without reflection, did its job.
func lookupResult(err error) upstream.Result {
	if err == nil || errors.Is(err, errMethodNotFound) || errors.Is(err, errNoReflection) {
		return upstream.Result{Err: err}
	}
	st, ok := status.FromError(err)
	switch {
	case !ok:
		return upstream.Result{Err: err}
	case st.Code() == codes.Unavailable:
		return upstream.Result{Outcome: upstream.Broken, Err: err}
	case InstanceFailed(st.Code()):
		return upstream.Result{Outcome: upstream.Failed, Status: HTTPStatus(st.Code()), Err: err}
	}
	return upstream.Result{Status: HTTPStatus(st.Code()), Err: err}
}

// invoke makes one call (attempt n) on conn, to host, with a client span
// and trace context.
func (m *Method) invoke(ctx context.Context, conn *grpc.ClientConn, hostPort string, n int, md metadata.MD, in, out proto.Message, hdr, trl *metadata.MD, pr *peer.Peer) error {
	host, port, _ := net.SplitHostPort(hostPort)
	pn, _ := strconv.Atoi(port)
	ctx, span := m.pool.tracer.Start(ctx, strings.TrimPrefix(m.fullMethod, "/"),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("rpc.system", "grpc"),
			attribute.String("rpc.service", string(m.svcName)),
			attribute.String("rpc.method", string(m.methodName)),
			attribute.String("server.address", host),
			attribute.Int("server.port", pn),
			attribute.String("portico.service", m.service),
			attribute.Int("portico.attempt", n),
		))
	defer span.End()
	m.pool.prop.Inject(ctx, mdCarrier(md))
	ctx = metadata.NewOutgoingContext(ctx, md)
	err := conn.Invoke(ctx, m.fullMethod, in, out, grpc.Header(hdr), grpc.Trailer(trl), grpc.Peer(pr))
	code := status.Code(err)
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(code)))
	if err != nil {
		span.SetStatus(otelcodes.Error, code.String())
	}
	return err
}

// InstanceFailed tells whether a code counts against the instance for
// outlier detection and the breaker: it was unreachable, too slow, or broke
// on its own. Codes about the request (NotFound, InvalidArgument...) do
// not. JSON → gRPC and gRPC pass-through (grpcpass) both judge by it.
func InstanceFailed(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown, codes.DataLoss:
		return true
	}
	return false
}

// pathProblem is the problem of a call the call path ended before any
// server answered it, or nil.
func (m *Method) pathProblem(err error) *problem.Problem {
	switch {
	case errors.Is(err, upstream.ErrCircuitOpen):
		return gatewayProblem(http.StatusServiceUnavailable, "circuit-open", "service "+m.service+" is failing; requests are paused")
	case errors.Is(err, upstream.ErrNoEndpoints):
		return gatewayProblem(http.StatusServiceUnavailable, "no-healthy-upstream", "service "+m.service+" has no healthy instance")
	case errors.Is(err, ErrPoolClosed):
		return gatewayProblem(http.StatusServiceUnavailable, "shutting-down", "the gateway is shutting down")
	case errors.Is(err, upstream.ErrAttemptTimeout):
		p := gatewayProblem(http.StatusGatewayTimeout, "upstream-timeout", "the gRPC server did not answer in time")
		return withCode(p, codes.DeadlineExceeded, "")
	}
	if _, ok := status.FromError(err); !ok {
		return gatewayProblem(http.StatusBadGateway, "bad-gateway", "service "+m.service+": "+err.Error())
	}
	return nil
}

// lookupProblem explains a failed descriptor lookup.
func (m *Method) lookupProblem(ctx context.Context, err error) *problem.Problem {
	switch {
	case errors.Is(err, errMethodNotFound):
		p := gatewayProblem(http.StatusNotImplemented, "grpc-unimplemented", fmt.Sprintf("service %s does not offer %s (per its reflection service)", m.service, strings.TrimPrefix(m.fullMethod, "/")))
		return withCode(p, codes.Unimplemented, err.Error())
	case errors.Is(err, errNoReflection):
		return gatewayProblem(http.StatusBadGateway, "grpc-no-descriptors", "service "+m.service+": "+err.Error())
	case ctx.Err() != nil:
		return m.contextProblem(ctx)
	case errors.Is(err, upstream.ErrNoEndpoints), errors.Is(err, ErrPoolClosed), errors.Is(err, upstream.ErrAttemptTimeout):
		return m.pathProblem(err)
	}
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.Unavailable {
			return m.unavailable(st)
		}
		p := statusProblem(st, globalTypes)
		p.Detail = "looking up " + strings.TrimPrefix(m.fullMethod, "/") + " through reflection failed: " + p.Detail
		return p
	}
	return gatewayProblem(http.StatusBadGateway, "grpc-bad-descriptors", fmt.Sprintf("service %s: reflection: %v", m.service, err))
}

// callProblem explains a failed call.
func (m *Method) callProblem(ctx context.Context, err error, d *methodDesc) *problem.Problem {
	if p := m.pathProblem(err); p != nil {
		return p
	}
	st := status.Convert(err)
	switch {
	case st.Code() == codes.Unavailable:
		return m.unavailable(st)
	case ctx.Err() != nil && (st.Code() == codes.DeadlineExceeded || st.Code() == codes.Canceled):
		return m.contextProblem(ctx)
	}
	return statusProblem(st, d.types)
}

// unavailable is the problem of an instance that cannot be reached (or
// says it cannot serve).
func (m *Method) unavailable(st *status.Status) *problem.Problem {
	p := statusProblem(st, globalTypes)
	p.Type = problem.TypeURI("upstream-unavailable")
	p.Detail = "service " + m.service + " is unavailable: " + st.Message()
	return p
}

// contextProblem is the answer when the request's own context ended.
func (m *Method) contextProblem(ctx context.Context) *problem.Problem {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		p := gatewayProblem(http.StatusGatewayTimeout, "upstream-timeout", "the gRPC server did not answer in time")
		return withCode(p, codes.DeadlineExceeded, "")
	}
	return withCode(gatewayProblem(499, "client-closed-request", "the client went away"), codes.Canceled, "")
}

// buildRequest makes the request message from body, query and params.
func (m *Method) buildRequest(d *methodDesc, r *http.Request, params map[string]string) (proto.Message, *problem.Problem) {
	in := dynamicpb.NewMessage(d.in)
	if r.Body != nil {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, gatewayProblem(http.StatusRequestEntityTooLarge, "too-large", "request body exceeds "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
			}
			return nil, gatewayProblem(http.StatusBadRequest, "bad-body", "the request body could not be read")
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := d.unmarshal.Unmarshal(body, in); err != nil {
				return nil, gatewayProblem(http.StatusBadRequest, "bad-json", fmt.Sprintf("the body is not a valid %s: %v", d.in.FullName(), cleanProtoErr(err)))
			}
		}
	}
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	// Sorted so that the error a client gets does not vary between tries.
	slices.Sort(keys)
	for _, k := range keys {
		if _, err := setField(in.ProtoReflect(), k, q[k]); err != nil {
			return nil, gatewayProblem(http.StatusBadRequest, "bad-parameter", "query parameter "+err.Error())
		}
	}
	keys = keys[:0]
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if _, err := setField(in.ProtoReflect(), k, []string{params[k]}); err != nil {
			return nil, gatewayProblem(http.StatusBadRequest, "bad-parameter", "path parameter "+err.Error())
		}
	}
	return in, nil
}

// cleanProtoErr drops the "proto: " prefix protojson puts on its errors.
func cleanProtoErr(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "proto:")
	s = strings.TrimPrefix(s, "proto: ")
	return strings.TrimSpace(strings.ReplaceAll(s, "\u00a0", " "))
}
