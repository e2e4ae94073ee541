package stage

import (
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
)

// The gateway's refusals reach gRPC clients as gRPC statuses. A gRPC client
// reads an answer's status from its grpc-status and grpc-message fields and
// nothing else: a problem+json body under a 429 reaches its application as
// "Unavailable: unexpected HTTP status code received from server: 429
// (Too Many Requests)", with the reason lost. So WriteProblem, the one way
// every stage refuses, answers a request whose content type is
// application/grpc (or application/grpc+proto, ...) with a trailers-only
// response (HTTP 200, the status in the header block, no body), the form
// the gRPC over HTTP/2 protocol gives an immediate error. The HTTP status
// the refusal would have had decides the code (GRPCCode) and is kept for
// the access log, metrics and analytics (LogStatus).

// IsGRPC reports whether r is a gRPC call: its content type is
// application/grpc, alone or with a +codec suffix or parameters (the gRPC
// over HTTP/2 protocol's Content-Type rule). gRPC-Web
// (application/grpc-web) is not gRPC over HTTP/2 and does not count.
func IsGRPC(r *http.Request) bool {
	const base = "application/grpc"
	ct := r.Header.Get("Content-Type")
	// Media types are case-insensitive.
	if len(ct) < len(base) || !strings.EqualFold(ct[:len(base)], base) {
		return false
	}
	rest := ct[len(base):]
	return rest == "" || rest[0] == '+' || rest[0] == ';'
}

// GRPCCode maps the HTTP status of a gateway refusal to the gRPC code a
// client acts on: the codes grpc-go's own HTTP mapping would give, except
// where the refusal says more (a rate limit is RESOURCE_EXHAUSTED, not
// UNAVAILABLE; a gateway timeout is DEADLINE_EXCEEDED).
func GRPCCode(status int) codes.Code {
	switch status {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests, http.StatusRequestHeaderFieldsTooLarge:
		return codes.ResourceExhausted
	case 499: // the client closed the request
		return codes.Canceled
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusHTTPVersionNotSupported:
		return codes.Unimplemented
	}
	if status >= 500 {
		return codes.Internal
	}
	return codes.Unknown
}

// WriteGRPCStatus answers a gRPC call with a trailers-only response
// carrying code and msg. status is the HTTP status the refusal stands for,
// which the access log and metrics record (it is not what the client
// gets: gRPC answers are HTTP 200). Headers already set on w (Retry-After,
// RateLimit-*) go out in the same header block.
func WriteGRPCStatus(w http.ResponseWriter, status int, code codes.Code, msg string) {
	if l, ok := w.(interface{ LogStatus(int) }); ok {
		l.LogStatus(status)
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(int(code)))
	if msg != "" {
		h.Set("Grpc-Message", EncodeGRPCMessage(msg))
	}
	w.WriteHeader(http.StatusOK)
}

// EncodeGRPCMessage percent-encodes a status message as the gRPC protocol
// requires of grpc-message: bytes outside printable ASCII, and '%', are
// sent as %XX.
func EncodeGRPCMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < ' ' || c > '~' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < ' ' || c > '~' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
