package extauthz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"runtime"
	"strconv"
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// grpcDecider asks a service of Envoy's ext_authz v3 API.
type grpcDecider struct {
	address string
	tls     bool
	client  authv3.AuthorizationClient
	route   string
}

func newGRPCDecider(r *config.Route, cl *Client) (*grpcDecider, error) {
	e := r.ExtAuthz
	conn, err := cl.grpcConn(e.GRPC.Address, e.GRPC.UseTLS, e.TLS)
	if err != nil {
		return nil, err
	}
	return &grpcDecider{address: e.GRPC.Address, tls: e.GRPC.UseTLS, client: authv3.NewAuthorizationClient(conn), route: r.Name}, nil
}

// grpcConn is the pooled ClientConn to address with a TLS setting (it
// connects lazily, reconnects by itself, and multiplexes every check).
func (cl *Client) grpcConn(address string, useTLS bool, t *config.ExtAuthzTLS) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	key := "plain|" + address
	if useTLS {
		conf, tkey, err := tlsConfig(t)
		if err != nil {
			return nil, err
		}
		creds, key = credentials.NewTLS(conf), "tls|"+tkey+"|"+address
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if c, ok := cl.conns[key]; ok {
		return c, nil
	}
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("ext_authz.grpc.address: %w", err)
	}
	if len(cl.conns) < maxPooled {
		cl.conns[key] = conn
	} else {
		runtime.AddCleanup(conn, func(c *grpc.ClientConn) { _ = c.Close() }, conn)
	}
	return conn, nil
}

// Close closes the pooled gRPC connections and idle HTTP ones (at process
// exit).
func (cl *Client) Close() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for k, c := range cl.conns {
		_ = c.Close()
		delete(cl.conns, k)
	}
	for _, c := range cl.https {
		c.CloseIdleConnections()
	}
}

// checkRequest builds the CheckRequest Envoy would send for c: source
// address, the HTTP request (method, path with query, host, scheme,
// protocol, size, headers with lower-case names, multiple values joined by
// commas, pseudo-headers included), and the gateway's own context (route
// and identity) in context_extensions.
func checkRequest(c *check, req *stage.Request, route string) *authv3.CheckRequest {
	r := req.R
	headers := make(map[string]string, len(c.Header)+4)
	for name, v := range c.Header {
		headers[strings.ToLower(name)] = strings.Join(v, ",")
	}
	headers[":authority"], headers[":method"], headers[":path"], headers[":scheme"] = c.Host, c.Method, c.uri(), c.Scheme
	ext := map[string]string{"route": route}
	if c.AuthMethod != "" {
		ext["auth_method"] = c.AuthMethod
		ext["consumer"] = c.Consumer
		ext["consumer_groups"] = strings.Join(c.Groups, ",")
		if c.Issuer != "" {
			ext["issuer"] = c.Issuer
		}
	}
	src := &corev3.SocketAddress{Address: c.ClientIP}
	if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil && host == c.ClientIP {
		// The peer itself is the client: its port is known too.
		if p, err := strconv.Atoi(port); err == nil {
			src.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(p)}
		}
	}
	size := r.ContentLength
	if size < 0 {
		size = -1
	}
	var body string
	var raw []byte
	if c.Body != nil {
		// Envoy's with_request_body: text in body, anything else in
		// raw_body (a proto string must be UTF-8).
		if utf8.Valid(c.Body) {
			body = string(c.Body)
		} else {
			raw = c.Body
		}
		size = int64(len(c.Body))
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: src}}},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Method: c.Method, Headers: headers, Path: c.uri(), Host: c.Host, Scheme: c.Scheme,
				Protocol: r.Proto, Size: size, Body: body, RawBody: raw,
			},
		},
		ContextExtensions: ext,
	}}
}

// decide calls Check. Status OK allows with the OkResponse's headers; an
// ErrorResponse is an error; any other status denies with the
// DeniedResponse's status (403 without one), headers and body.
func (g *grpcDecider) decide(ctx context.Context, c *check, req *stage.Request) (*decision, error) {
	if req.Env != nil && req.Env.Propagator != nil {
		md := http.Header{}
		req.Env.Propagator.Inject(ctx, propagation.HeaderCarrier(md))
		for k, v := range md {
			ctx = metadata.AppendToOutgoingContext(ctx, strings.ToLower(k), v[0])
		}
	}
	resp, err := g.client.Check(ctx, checkRequest(c, req, g.route))
	if err != nil {
		return nil, err
	}
	if resp.GetErrorResponse() != nil {
		return nil, fmt.Errorf("%w: the authorization service reported an error (%s)", errBadAnswer, resp.GetStatus().GetMessage())
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		return &decision{Allow: true, Upstream: headerOptions(resp.GetOkResponse().GetHeaders())}, nil
	}
	d := &decision{Status: http.StatusForbidden}
	if den := resp.GetDeniedResponse(); den != nil {
		if s := int(den.GetStatus().GetCode()); s >= 300 && s <= 599 {
			d.Status = s
		}
		d.Header, d.Body = headerOptions(den.GetHeaders()), []byte(den.GetBody())
		if len(d.Body) > config.MaxExtAuthzDenyBody {
			return nil, fmt.Errorf("%w: a denial body over %d bytes", errBadAnswer, config.MaxExtAuthzDenyBody)
		}
	}
	return d, nil
}

// headerOptions turns Envoy header options into a header (canonical names;
// value, or raw_value when value is empty).
func headerOptions(opts []*corev3.HeaderValueOption) http.Header {
	h := http.Header{}
	for _, o := range opts {
		kv := o.GetHeader()
		if kv == nil || kv.GetKey() == "" {
			continue
		}
		v := kv.GetValue()
		if v == "" {
			v = string(kv.GetRawValue())
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(kv.GetKey()), v)
	}
	return h
}

func isGRPCDeadline(err error) bool {
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded)
}

func (g *grpcDecider) describe() map[string]any {
	return map[string]any{"address": g.address, "tls": g.tls}
}
