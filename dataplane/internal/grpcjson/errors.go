package grpcjson

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	// Registers google.rpc.BadRequest, ErrorInfo, RetryInfo... so that
	// status details of those types render as JSON rather than base64.
	_ "google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/portico-gw/portico/shared/problem"
)

// HTTPStatus maps a gRPC code to the HTTP status grpc-gateway answers with.
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499 // client closed request (nginx)
	case codes.Unknown:
		return http.StatusInternalServerError
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.FailedPrecondition:
		// grpc-gateway deliberately avoids 412: it is about HTTP
		// preconditions (If-Match), which this is not.
		return http.StatusBadRequest
	case codes.Aborted:
		return http.StatusConflict
	case codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Internal:
		return http.StatusInternalServerError
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DataLoss:
		return http.StatusInternalServerError
	}
	return http.StatusInternalServerError
}

// codeNames are the canonical upper-case names, as in google.rpc.Code and
// the gRPC spec; codes.Code.String is CamelCase.
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE_" + strconv.Itoa(int(c))
}

// Extension members of the problems that report a gRPC status (RFC 9457
// §3.2). grpc_details holds the status details in the JSON mapping of Any:
// {"@type": url, ...fields} when the type is known (the service's own types
// and the google.rpc error details), else {"@type": url, "value": base64}.
const (
	ExtCode    = "grpc_code"    // canonical code name, "NOT_FOUND"
	ExtMessage = "grpc_message" // the status message
	ExtDetails = "grpc_details"
)

// gatewayProblem is an error the gateway answers itself.
func gatewayProblem(status int, slug, detail string) *problem.Problem {
	return problem.New(status, slug, detail)
}

// withCode adds the gRPC code (and message, when there is one).
func withCode(p *problem.Problem, c codes.Code, msg string) *problem.Problem {
	if p.Extensions == nil {
		p.Extensions = map[string]any{}
	}
	p.Extensions[ExtCode] = codeName(c)
	if msg != "" {
		p.Extensions[ExtMessage] = msg
	}
	return p
}

// statusProblem renders a gRPC status returned by the server.
func statusProblem(st *status.Status, types resolver) *problem.Problem {
	c := st.Code()
	slug := "grpc-" + strings.ReplaceAll(strings.ToLower(codeName(c)), "_", "-")
	detail := "the gRPC server answered " + codeName(c)
	if st.Message() != "" {
		detail += ": " + st.Message()
	}
	p := withCode(problem.New(HTTPStatus(c), slug, detail), c, st.Message())
	mo := protojson.MarshalOptions{Resolver: types}
	var details []json.RawMessage
	for _, d := range st.Proto().GetDetails() {
		if b, err := mo.Marshal(d); err == nil {
			details = append(details, b)
			continue
		}
		b, _ := json.Marshal(struct {
			Type  string `json:"@type"`
			Value string `json:"value"`
		}{d.GetTypeUrl(), base64.StdEncoding.EncodeToString(d.GetValue())})
		details = append(details, b)
	}
	if len(details) > 0 {
		p.Extensions[ExtDetails] = details
	}
	return p
}

func writeProblem(w http.ResponseWriter, r *http.Request, p *problem.Problem) {
	p.Instance = r.URL.Path
	problem.Write(w, p)
}
