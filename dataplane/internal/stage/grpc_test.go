package stage

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestWriteProblemForGRPC: the one refusal writer answers a gRPC call with
// a trailers-only status (HTTP 200, grpc-status, grpc-message, no body)
// whose code follows the refusal, and any other request with a problem.
func TestWriteProblemForGRPC(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   codes.Code
	}{
		{http.StatusBadRequest, codes.InvalidArgument},
		{http.StatusUnauthorized, codes.Unauthenticated},
		{http.StatusForbidden, codes.PermissionDenied},
		{http.StatusNotFound, codes.Unimplemented},
		{http.StatusRequestTimeout, codes.DeadlineExceeded},
		{http.StatusRequestEntityTooLarge, codes.ResourceExhausted},
		{http.StatusTooManyRequests, codes.ResourceExhausted},
		{http.StatusRequestHeaderFieldsTooLarge, codes.ResourceExhausted},
		{499, codes.Canceled},
		{http.StatusInternalServerError, codes.Internal},
		{http.StatusBadGateway, codes.Unavailable},
		{http.StatusServiceUnavailable, codes.Unavailable},
		{http.StatusGatewayTimeout, codes.DeadlineExceeded},
		{http.StatusConflict, codes.Unknown},
	} {
		r := httptest.NewRequest("POST", "/pkg.S/M", nil)
		r.Header.Set("Content-Type", "application/grpc+proto")
		w := httptest.NewRecorder()
		w.Header().Set("Retry-After", "1")
		WriteProblem(w, r, tc.status, "slug", "refused: 100% ü\n")
		h := w.Result().Header
		if w.Code != 200 || w.Body.Len() != 0 || h.Get("Content-Type") != "application/grpc" {
			t.Errorf("%d: HTTP %d, %d body bytes, %s", tc.status, w.Code, w.Body.Len(), h.Get("Content-Type"))
		}
		if got := h.Get("Grpc-Status"); got != strconv.Itoa(int(tc.want)) {
			t.Errorf("%d: grpc-status %s, want %d (%v)", tc.status, got, tc.want, tc.want)
		}
		if got := h.Get("Grpc-Message"); got != "refused: 100%25 %C3%BC%0A" {
			t.Errorf("grpc-message %q", got)
		}
		if h.Get("Retry-After") != "1" {
			t.Error("headers set before the refusal are lost")
		}
	}
	r := httptest.NewRequest("POST", "/x", nil)
	r.Header.Set("Content-Type", "application/grpc-web")
	w := httptest.NewRecorder()
	WriteProblem(w, r, http.StatusTooManyRequests, "rate-limited", "no")
	if w.Code != 429 || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("gRPC-Web (not gRPC over HTTP/2) got %d %s", w.Code, w.Header().Get("Content-Type"))
	}
}

func TestIsGRPC(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc+json": true,
		"Application/GRPC": true, "application/grpc;charset=utf-8": true,
		"application/grpc-web": false, "application/grpcx": false, "application/json": false, "": false,
	} {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("Content-Type", ct)
		if IsGRPC(r) != want {
			t.Errorf("IsGRPC(%q) = %v", ct, !want)
		}
	}
}
