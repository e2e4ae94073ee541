package grpcjson

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkTranslate is one request through Serve: JSON body and query
// parameters in, one unary call over loopback, JSON out.
func BenchmarkTranslate(b *testing.B) {
	srv := startShop(b, serverOpts{})
	m, err := NewMethod("shop", "shop.v1.Orders/GetOrder", nil, newUpstream(b, srv.addr), newPool(b, PoolOptions{}))
	if err != nil {
		b.Fatal(err)
	}
	params := map[string]string{"id": "o-1"}
	const body = `{"fields":["a","b"],"filter":{"status":"open"}}`
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/orders/o-1?version=3", strings.NewReader(body))
		w := httptest.NewRecorder()
		m.Serve(w, r, params)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
