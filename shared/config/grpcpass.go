package config

import (
	"net/http"
	"slices"
)

// GRPCPassThrough reports whether route r, sending to service svc, proxies
// gRPC as gRPC: svc speaks gRPC and the route names no method to translate
// JSON into (grpc.method). This is the one definition of the route form:
// validation (checkGRPCPassThrough) and the data plane's compile step both
// ask it.
func GRPCPassThrough(r *Route, svc *Service) bool {
	return svc != nil && svc.Protocol == ProtocolGRPC && r.GRPC == nil && len(r.Aggregate) == 0
}

// checkGRPCPassThrough checks a pass-through route (GRPCPassThrough). A
// gRPC call is a POST whose path is the method ("/package.Service/Method"),
// whose body is a stream of protobuf messages and whose answer ends in
// trailers, so what would change the path, add a query, edit or copy the
// body, or replay a stored answer cannot apply: the service would receive
// another method or a broken stream, or the client an answer without its
// status.
func checkGRPCPassThrough(l *errorList, p string, r *Route) {
	if len(r.Methods) > 0 && !slices.Contains(r.Methods, http.MethodPost) {
		l.add(join(p, "methods"), "a gRPC pass-through route must allow POST: every gRPC call is a POST")
	}
	if r.Rewrite != "" || r.StripPrefix {
		l.add(join(p, "rewrite"), "does not apply to a gRPC pass-through route (the path is the method)")
	}
	if r.Query != nil {
		l.add(join(p, "query"), "does not apply to a gRPC pass-through route (gRPC requests carry no query)")
	}
	if r.Cache != nil {
		l.add(join(p, "cache"), "does not apply to a gRPC pass-through route (calls are POSTs answered with trailers)")
	}
	if r.Body != nil {
		l.add(join(p, "body"), "does not apply to a gRPC pass-through route (its messages are protobuf, passed through unread)")
	}
	if r.Mirror != nil {
		l.add(join(p, "mirror"), "does not apply to a gRPC pass-through route (a mirror copies HTTP requests)")
	}
}
