// Package soap translates HTTP/JSON requests into calls of SOAP
// operations, learned from the service's WSDL (package shared/wsdl), as
// grpcjson learns gRPC methods from reflection: no templates.
//
// # Request
//
// The JSON body (an object; empty is {}), then the query parameters, then
// the path parameters make the JSON form of the operation's input message:
// one member per element of the message (document/literal: the children
// of the part's element; rpc/literal: the parts). Later sources win, so a
// path parameter cannot be overridden by the query or the body; parameter
// names no element has are ignored. The message is written in the
// schema's element order and namespaces, with each value checked against
// its XSD type before anything is sent: numbers and booleans must be JSON
// numbers and booleans (parameters are converted from text), dates,
// enumerations and integer ranges are checked, an element with
// maxOccurs>1 takes an array within its bounds, nested complex types take
// objects, required elements must be present, null is xsi:nil for a
// nillable element and "absent" for an optional one, and members no
// element declares are refused. A value that does not fit is a 400
// problem naming its JSON pointer ("pointer": "/customer/since") or the
// parameter, and no call is made.
//
// SOAP 1.1 requests carry Content-Type text/xml and the operation's
// SOAPAction header; SOAP 1.2 requests application/soap+xml with the
// action parameter. A service's ws_security adds a WS-Security
// UsernameToken header (PasswordText, or PasswordDigest with a fresh nonce
// and timestamp per request); the password is never logged or described.
//
// # Answer
//
// The Body's content becomes JSON typed by the output message: numbers
// and booleans as JSON numbers and booleans (INF and NaN as strings), an
// element with maxOccurs>1 always as an array (empty when absent),
// xsi:nil as null, namespaces dropped, children the schema does not
// declare kept untyped. A SOAP Fault becomes a problem (type soap-fault)
// with faultcode, faultstring, faultactor and faultdetail (the Fault's detail, typed by the WSDL's
// fault element when it declares one): 422 for a fault that blames the
// request (SOAP 1.1 Client, SOAP 1.2 Sender: the gateway checked the form,
// the service refused the content), 502 for any other. An answer that is
// not a SOAP envelope of the request's version is a 502 problem
// (soap-bad-response).
//
// # Calls
//
// A call goes through the service's call path (upstream.Call: breaker,
// balancer, retries under the budget, outlier detection), with an attempt
// of this package's: the answer is read whole (at most 16 MiB) and parsed
// inside the attempt, so that a client fault, which SOAP 1.1 services
// send with HTTP 500, is not counted against the instance or the breaker,
// while a server fault or a non-SOAP answer is. The envelope is in memory,
// so a request whose HTTP method is idempotent may be sent again after a
// broken attempt; any request may go to another instance when the
// connection was never made.
package soap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/problem"
	"github.com/portico-gw/portico/shared/wsdl"
)

// Route is a route's SOAP stage, the terminal stage of its chain.
type Route struct {
	op       *wsdl.Operation
	up       *upstream.Upstream
	path     string // the endpoint path on every instance
	timeout  time.Duration
	security *wsSecurity
}

// Compile builds the stage of route r, whose service svc speaks SOAP.
func Compile(r *config.Route, svc *config.Service, up *upstream.Upstream, timeout time.Duration) (*Route, error) {
	if r.SOAP == nil || svc.SOAP == nil {
		return nil, errors.New("not a SOAP route")
	}
	d, err := config.SOAPDefinitions(svc.SOAP)
	if err != nil {
		return nil, fmt.Errorf("service %q: WSDL: %w", svc.Name, err)
	}
	op, err := d.Operation(r.SOAP.Port, r.SOAP.Operation, svc.SOAP.SOAPVersion())
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	path := svc.SOAP.Endpoint
	if path == "" {
		u, err := url.Parse(op.Address)
		if err != nil {
			return nil, fmt.Errorf("service %q: port %s: address %q: %w", svc.Name, op.Port, op.Address, err)
		}
		path = u.EscapedPath()
	}
	if path == "" {
		path = "/"
	}
	g := &Route{op: op, up: up, path: path, timeout: timeout}
	if ws := svc.SOAP.WSSecurity; ws != nil {
		g.security = &wsSecurity{username: ws.Username, password: ws.Password, digest: ws.PasswordType == "digest"}
	}
	return g, nil
}

// Operation is the compiled operation.
func (g *Route) Operation() *wsdl.Operation { return g.op }

// Describe renders the stage for golden files (never the password).
func (g *Route) Describe() any {
	return struct {
		Operation  string `json:"operation"`
		Port       string `json:"port"`
		Version    string `json:"version"`
		Style      string `json:"style"`
		Action     string `json:"action,omitempty"`
		Endpoint   string `json:"endpoint"`
		Timeout    string `json:"timeout"`
		WSSecurity bool   `json:"ws_security,omitempty"`
	}{g.op.Name, g.op.Port, g.op.Version, g.op.Style, g.op.Action, g.path, g.timeout.String(), g.security != nil}
}

// result is what the last attempt read.
type result struct {
	status int
	ans    *answer
	err    error // the answer could not be read or is not SOAP
}

// Serve translates the request, calls the operation and translates the
// answer.
func (g *Route) Serve(req *stage.Request) {
	w, r := req.W, req.R
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				stage.WriteProblem(w, r, http.StatusRequestEntityTooLarge, "too-large", "request body exceeds "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
				return
			}
			stage.WriteProblem(w, r, http.StatusBadRequest, "bad-body", "the request body could not be read")
			return
		}
		body = b
	}
	m := &req.Match
	params := make(map[string]string, m.Params.Len())
	for i := range m.Params.Len() {
		k, v := m.Params.At(i)
		params[k] = v
	}
	obj, err := input(body, r.URL.Query(), params, g.op.Input.Content)
	var env []byte
	if err == nil {
		var header []byte
		if g.security != nil {
			header = g.security.header(time.Now())
		}
		env, err = envelope(g.op.Version, header, g.op.Input, obj)
	}
	if err != nil {
		g.invalid(w, r, err)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), g.timeout)
	defer cancel()
	hdr := g.outboundHeader(req)
	c := upstream.Call{Upstream: g.up, Request: r, Resend: upstream.Idempotent(r.Method)}
	var res result
	callErr := c.Run(ctx, func(ctx context.Context, m *upstream.Member, n int) upstream.Result {
		var ur upstream.Result
		res, ur = g.attempt(ctx, req.Env, m, n, env, hdr)
		return ur
	})
	req.Outcome.Upstream, req.Outcome.Attempts = c.Addr, c.Attempts
	switch {
	case res.ans != nil && res.ans.fault != nil:
		g.writeFault(w, r, res.ans.fault)
	case res.ans != nil:
		out, err := messageJSON(res.ans.body, g.op.Output)
		if err != nil {
			g.badResponse(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(out)
		}
	case res.err != nil && callErr != nil && errors.Is(callErr, res.err):
		g.badResponse(w, r, res.err)
	default:
		g.pathProblem(ctx, w, r, callErr)
	}
}

// outboundHeader is what every attempt carries beside the SOAP headers:
// the verified identity and the forwarding headers, as on any route.
func (g *Route) outboundHeader(req *stage.Request) http.Header {
	h := make(http.Header, 8)
	if v := req.R.Header.Get("X-Request-Id"); v != "" {
		h.Set("X-Request-Id", v)
	}
	req.WriteIdentity(h)
	if req.Env.ClientIP != nil {
		req.Env.ClientIP.SetForwarded(h, req.R)
	}
	return h
}

// attempt sends the envelope to instance m and reads and classifies the
// answer for the call path.
func (g *Route) attempt(ctx context.Context, env *stage.Env, m *upstream.Member, n int, envelope []byte, hdr http.Header) (result, upstream.Result) {
	var span trace.Span
	if env.Tracer != nil {
		ctx, span = env.Tracer.Start(ctx, "soap "+g.op.Name, trace.WithSpanKind(trace.SpanKindClient))
		defer span.End()
	}
	u := url.URL{Scheme: m.Scheme, Host: m.Host, Path: m.BasePath + g.path}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(envelope))
	if err != nil {
		return result{}, upstream.Result{Outcome: upstream.Local, Err: err}
	}
	hr.Header = hdr.Clone()
	if g.op.Version == wsdl.SOAP12 {
		ct := "application/soap+xml; charset=utf-8"
		if g.op.Action != "" {
			ct += "; action=" + strconv.Quote(g.op.Action)
		}
		hr.Header.Set("Content-Type", ct)
	} else {
		hr.Header.Set("Content-Type", "text/xml; charset=utf-8")
		hr.Header.Set("SOAPAction", strconv.Quote(g.op.Action))
	}
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(hr.Header))
	// No exchange in the context: the upstream transport hands the
	// request to the shared HTTP transport as it is; this attempt is the
	// call path's (c.Run), not the reverse proxy's.
	resp, err := env.Transport.RoundTrip(hr)
	if span != nil {
		span.SetAttributes(attribute.String("rpc.system", "soap"), attribute.String("rpc.method", g.op.Name),
			attribute.String("server.address", m.Host), attribute.String("portico.service", g.up.Name), attribute.Int("portico.attempt", n))
	}
	if err != nil {
		if span != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		return result{}, upstream.Result{Outcome: upstream.Broken, Unsent: dialFailed(err), Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return result{}, upstream.Result{Outcome: upstream.Broken, Err: err}
	}
	if span != nil {
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	}
	if len(data) > maxResponse {
		err := fmt.Errorf("the answer is larger than %d bytes", maxResponse)
		return result{status: resp.StatusCode, err: err}, upstream.Result{Outcome: upstream.Failed, Status: http.StatusBadGateway, Err: err}
	}
	ans, perr := parseAnswer(data, g.op.Version)
	if perr != nil {
		err := fmt.Errorf("HTTP %d, %w", resp.StatusCode, perr)
		if span != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		// A service that answers something else than SOAP is broken (or
		// the endpoint is wrong): it counts against the instance.
		return result{status: resp.StatusCode, err: err}, upstream.Result{Outcome: upstream.Failed, Status: resp.StatusCode, Err: err}
	}
	res := result{status: resp.StatusCode, ans: ans}
	switch f := ans.fault; {
	case f == nil:
		return res, upstream.Result{Status: resp.StatusCode}
	case f.client:
		// The request's fault: says nothing against the instance.
		return res, upstream.Result{Status: http.StatusUnprocessableEntity}
	default:
		if span != nil {
			span.SetStatus(codes.Error, "SOAP fault "+f.code)
		}
		return res, upstream.Result{Outcome: upstream.Failed, Status: resp.StatusCode, Err: errServerFault}
	}
}

var errServerFault = errors.New("SOAP server fault")

// dialFailed reports a connection that was never established.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// Extension members of the problems this stage writes.
const (
	ExtPointer     = "pointer"   // the JSON pointer of a value that does not fit
	ExtParameter   = "parameter" // or the parameter
	ExtFaultCode   = "faultcode"
	ExtFaultString = "faultstring"
	ExtFaultActor  = "faultactor"
	ExtDetail      = "faultdetail" // "detail" is the problem's own member (RFC 9457)
)

func (g *Route) invalid(w http.ResponseWriter, r *http.Request, err error) {
	p := problem.New(http.StatusBadRequest, "soap-invalid-request",
		fmt.Sprintf("the request does not fit the input of %s: %v", g.op.Name, err))
	var ve *valueError
	if errors.As(err, &ve) {
		p.Extensions = map[string]any{}
		if ve.param != "" {
			p.Extensions[ExtParameter] = ve.param
		} else {
			p.Extensions[ExtPointer] = ve.pointer
		}
	}
	p.Instance = r.URL.Path
	problem.Write(w, p)
}

func (g *Route) writeFault(w http.ResponseWriter, r *http.Request, f *fault) {
	status := http.StatusBadGateway
	if f.client {
		status = http.StatusUnprocessableEntity
	}
	detail := "the SOAP service answered with a fault"
	if f.reason != "" {
		detail += ": " + f.reason
	}
	p := problem.New(status, "soap-fault", detail)
	p.Extensions = map[string]any{ExtFaultCode: f.code, ExtFaultString: f.reason}
	if f.actor != "" {
		p.Extensions[ExtFaultActor] = f.actor
	}
	if d := detailJSON(f.detail, g.op.Faults); d != nil {
		p.Extensions[ExtDetail] = d
	}
	p.Instance = r.URL.Path
	problem.Write(w, p)
}

func (g *Route) badResponse(w http.ResponseWriter, r *http.Request, err error) {
	stage.WriteProblem(w, r, http.StatusBadGateway, "soap-bad-response",
		"service "+g.up.Name+" did not answer "+g.op.Name+" with SOAP: "+err.Error())
}

// pathProblem explains a call the call path ended without an answer.
func (g *Route) pathProblem(ctx context.Context, w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, upstream.ErrCircuitOpen):
		stage.WriteProblem(w, r, http.StatusServiceUnavailable, "circuit-open", "service "+g.up.Name+" is failing; requests are paused")
	case errors.Is(err, upstream.ErrNoEndpoints):
		stage.WriteProblem(w, r, http.StatusServiceUnavailable, "no-healthy-upstream", "service "+g.up.Name+" has no healthy instance")
	case errors.Is(err, upstream.ErrAttemptTimeout), errors.Is(ctx.Err(), context.DeadlineExceeded):
		stage.WriteProblem(w, r, http.StatusGatewayTimeout, "upstream-timeout", "the SOAP service did not answer in time")
	case r.Context().Err() != nil:
		stage.WriteProblem(w, r, 499, "client-closed-request", "the client went away")
	case err != nil:
		stage.WriteProblem(w, r, http.StatusBadGateway, "bad-gateway", "service "+g.up.Name+": "+strings.TrimSpace(err.Error()))
	default:
		stage.WriteProblem(w, r, http.StatusBadGateway, "bad-gateway", "service "+g.up.Name+" gave no answer")
	}
}
