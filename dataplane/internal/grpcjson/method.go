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
// Instances are chosen by the service's upstream (the same balancer, outlier
// ejection and in-flight accounting as HTTP), and each instance has one
// long-lived ClientConn in a Pool shared across configuration revisions.
// A call that fails with UNAVAILABLE before any connection carried it is
// retried on another instance, which is safe for any method because the
// server never saw it.
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

	"github.com/portico-gw/portico/dataplane/internal/balancer"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/problem"
)

// Picker chooses instances; *upstream.Upstream satisfies it.
type Picker interface {
	Pick(r *http.Request, tried *balancer.Tried) (*upstream.Picked, error)
}

// Admitter is the circuit breaker of a service; *upstream.Upstream
// satisfies it. When the Picker is one, Serve asks it before calling and
// reports the outcome, so the proxy must not do so again for gRPC routes.
type Admitter interface {
	Admit() (done func(failed, clientGone bool), err error)
}

// maxAttempts bounds the instances one request tries when connections
// cannot be established.
const maxAttempts = 3

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
	up         Picker
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
func NewMethod(service, fullMethod string, descriptorSet []byte, up Picker, pool *Pool) (*Method, error) {
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

// attempt is one instance chosen for the request.
type attempt struct {
	picked *upstream.Picked
	conn   *grpc.ClientConn
	done   bool
}

// finish reports the outcome to the upstream, once.
func (a *attempt) finish(failed bool) {
	if a != nil && !a.done {
		a.done = true
		a.picked.Done(failed)
	}
}

// pick chooses an instance not tried yet and its connection.
func (m *Method) pick(r *http.Request, tried *balancer.Tried) (*attempt, error) {
	p, err := m.up.Pick(r, tried)
	if err != nil {
		return nil, err
	}
	c, err := m.pool.conn(p.Scheme, p.Host)
	if err != nil {
		p.Done(false)
		return nil, err
	}
	return &attempt{picked: p, conn: c}, nil
}

// descriptors returns the method's descriptors, asking the server through
// a's connection when they are not known. Concurrent requests share one
// lookup.
func (m *Method) descriptors(ctx context.Context, a *attempt) (*methodDesc, error) {
	if m.static != nil {
		return m.static, nil
	}
	if d := m.learned.Load(); d != nil {
		return d, nil
	}
	ch := m.lookups.DoChan("", func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reflectionTimeout)
		defer cancel()
		files, err := fetchReflection(lctx, a.conn, m.svcName)
		if err != nil {
			return nil, err
		}
		d, err := describe(files, m.svcName, m.methodName)
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
	ctx := r.Context()
	var tried balancer.Tried
	var a *attempt
	d := m.static
	if d == nil {
		d = m.learned.Load()
	}
	if d == nil {
		// Reflection needs a server: the instance found here also
		// carries the call, so a cold start costs no extra pick.
		var err error
		if a, err = m.pick(r, &tried); err != nil {
			writeProblem(w, r, m.pickProblem(err))
			return
		}
		if d, err = m.descriptors(ctx, a); err != nil {
			p, failed := m.lookupProblem(ctx, err)
			a.finish(failed)
			writeProblem(w, r, p)
			return
		}
	}
	in, perr := m.buildRequest(d, r, params)
	if perr != nil {
		// The instance did nothing wrong; it answered reflection if asked.
		a.finish(false)
		writeProblem(w, r, perr)
		return
	}
	var breakerDone func(failed, clientGone bool)
	if ad, ok := m.up.(Admitter); ok {
		done, err := ad.Admit()
		if err != nil {
			a.finish(false)
			writeProblem(w, r, gatewayProblem(http.StatusServiceUnavailable, "circuit-open", "service "+m.service+" is failing; requests are paused"))
			return
		}
		breakerDone = done
	}
	out, hdr, trl, err := m.call(ctx, r, &tried, a, d, in)
	if breakerDone != nil {
		// Only a status from a call counts; not finding an instance is
		// not the upstream failing a request.
		st, isStatus := status.FromError(err)
		breakerDone(err != nil && isStatus && instanceFailed(st.Code()), clientGone(ctx))
	}
	h := w.Header()
	writeMetadata(h, "Grpc-Metadata-", hdr)
	writeMetadata(h, "Grpc-Trailer-", trl)
	if err != nil {
		writeProblem(w, r, m.callProblem(ctx, err, d))
		return
	}
	body, err := d.marshal.Marshal(out)
	if err != nil {
		writeProblem(w, r, gatewayProblem(http.StatusBadGateway, "grpc-bad-response", fmt.Sprintf("the %s response cannot be written as JSON: %v", d.out.FullName(), err)))
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// call invokes the method, on a when given, moving to another instance
// while connections cannot be established.
func (m *Method) call(ctx context.Context, r *http.Request, tried *balancer.Tried, a *attempt, d *methodDesc, in proto.Message) (proto.Message, metadata.MD, metadata.MD, error) {
	md := outgoingMetadata(r.Header)
	var lastErr error
	for n := 0; n < maxAttempts; n++ {
		if a == nil {
			var err error
			if a, err = m.pick(r, tried); err != nil {
				if lastErr != nil {
					return nil, nil, nil, lastErr
				}
				return nil, nil, nil, &pickError{err}
			}
		}
		out := dynamicpb.NewMessage(d.out)
		var hdr, trl metadata.MD
		var pr peer.Peer
		err := m.invoke(ctx, a, md.Copy(), in, out, &hdr, &trl, &pr)
		code := status.Code(err)
		a.finish(err != nil && instanceFailed(code) && !clientGone(ctx))
		if err == nil {
			return out, hdr, trl, nil
		}
		if code == codes.Unimplemented && m.static == nil {
			// The server may have been redeployed without the method, or
			// with a different schema: look it up again next time.
			m.learned.CompareAndSwap(d, nil)
		}
		if code != codes.Unavailable || pr.Addr != nil || ctx.Err() != nil {
			return nil, hdr, trl, err
		}
		// Never reached a server: safe to try another instance.
		lastErr, a = err, nil
	}
	return nil, nil, nil, lastErr
}

// invoke makes one call with a client span and trace context.
func (m *Method) invoke(ctx context.Context, a *attempt, md metadata.MD, in, out proto.Message, hdr, trl *metadata.MD, pr *peer.Peer) error {
	host, port, _ := net.SplitHostPort(a.picked.Host)
	pn, _ := strconv.Atoi(port)
	ctx, span := m.pool.tracer.Start(ctx, strings.TrimPrefix(m.fullMethod, "/"),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("rpc.system", "grpc"),
			attribute.String("rpc.service", string(m.svcName)),
			attribute.String("rpc.method", string(m.methodName)),
			attribute.String("server.address", host),
			attribute.Int("server.port", pn),
		))
	defer span.End()
	m.pool.prop.Inject(ctx, mdCarrier(md))
	ctx = metadata.NewOutgoingContext(ctx, md)
	err := a.conn.Invoke(ctx, m.fullMethod, in, out, grpc.Header(hdr), grpc.Trailer(trl), grpc.Peer(pr))
	code := status.Code(err)
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(code)))
	if err != nil {
		span.SetStatus(otelcodes.Error, code.String())
	}
	return err
}

// instanceFailed tells whether a code counts against the instance for
// outlier detection and the breaker: it was unreachable, too slow, or broke
// on its own. Codes about the request (NotFound, InvalidArgument...) do not.
func instanceFailed(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown, codes.DataLoss:
		return true
	}
	return false
}

// clientGone tells whether the client left: what fails then says nothing
// about the instance. A route timeout (deadline) does count against it.
func clientGone(ctx context.Context) bool { return errors.Is(ctx.Err(), context.Canceled) }

// pickError is a failure to choose an instance.
type pickError struct{ err error }

func (e *pickError) Error() string { return e.err.Error() }
func (e *pickError) Unwrap() error { return e.err }

func (m *Method) pickProblem(err error) *problem.Problem {
	if errors.Is(err, upstream.ErrNoEndpoints) {
		return gatewayProblem(http.StatusServiceUnavailable, "no-healthy-upstream", "service "+m.service+" has no healthy instance")
	}
	if errors.Is(err, ErrPoolClosed) {
		return gatewayProblem(http.StatusServiceUnavailable, "shutting-down", "the gateway is shutting down")
	}
	return gatewayProblem(http.StatusBadGateway, "bad-gateway", "service "+m.service+": "+err.Error())
}

// lookupProblem explains a failed descriptor lookup; failed tells whether
// it counts against the instance.
func (m *Method) lookupProblem(ctx context.Context, err error) (*problem.Problem, bool) {
	switch {
	case errors.Is(err, errMethodNotFound):
		p := gatewayProblem(http.StatusNotImplemented, "grpc-unimplemented", fmt.Sprintf("service %s does not offer %s (per its reflection service)", m.service, strings.TrimPrefix(m.fullMethod, "/")))
		return withCode(p, codes.Unimplemented, err.Error()), false
	case errors.Is(err, errNoReflection):
		return gatewayProblem(http.StatusBadGateway, "grpc-no-descriptors", "service "+m.service+": "+err.Error()), false
	case ctx.Err() != nil:
		return m.contextProblem(ctx), false
	}
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.Unavailable {
			return m.unavailable(st), true
		}
		p := statusProblem(st, globalTypes)
		p.Detail = "looking up " + strings.TrimPrefix(m.fullMethod, "/") + " through reflection failed: " + p.Detail
		return p, instanceFailed(st.Code())
	}
	return gatewayProblem(http.StatusBadGateway, "grpc-bad-descriptors", fmt.Sprintf("service %s: reflection: %v", m.service, err)), false
}

// callProblem explains a failed call.
func (m *Method) callProblem(ctx context.Context, err error, d *methodDesc) *problem.Problem {
	var pe *pickError
	if errors.As(err, &pe) {
		return m.pickProblem(pe.err)
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
