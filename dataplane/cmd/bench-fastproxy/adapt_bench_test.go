package main

// BenchmarkAdaptToNetHTTP measures what handing a fasthttp request to code
// written against net/http would cost per request (docs/PERFORMANCE.md,
// "Goal 3"): fasthttpadaptor.ConvertRequest (an *http.Request with its URL,
// header map and body reader, strings aliasing fasthttp's buffers) and
// copying a handler's response header map back. Portico's stage chain takes
// *http.Request and http.ResponseWriter, so a fast listener that keeps the
// chain as it is pays this on top of the prototype's request path.
// Run: cd dataplane/cmd/bench-fastproxy && GOWORK=off go test -run '^$' -bench . -benchmem

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

func BenchmarkAdaptToNetHTTP(b *testing.B) {
	requests := map[string]string{
		// What wrk sends in bench-load.
		"wrk": "GET /bench/x HTTP/1.1\r\nHost: 127.0.0.1:10000\r\n\r\n",
		// A browser's request through an API gateway: a dozen headers.
		"browser": "GET /bench/items/42?expand=owner HTTP/1.1\r\nHost: api.example.com\r\n" +
			"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\n" +
			"Accept: application/json\r\nAccept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
			"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl\r\n" +
			"Referer: https://app.example.com/items\r\nOrigin: https://app.example.com\r\n" +
			"Cookie: session=abc123; theme=dark\r\nX-Request-Id: 5f2b8c1e-8d3a-4f7e-9b1a-2c3d4e5f6a7b\r\n" +
			"Sec-Fetch-Mode: cors\r\nSec-Fetch-Site: same-site\r\n\r\n",
	}
	respHeader := http.Header{
		"Content-Type":   {"application/json"},
		"Content-Length": {"3"},
		"Cache-Control":  {"no-store"},
		"Date":           {"Thu, 03 Dec 2026 12:00:00 GMT"},
	}
	for name, raw := range requests {
		b.Run(name, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
			ctx.Init(&fasthttp.Request{}, addr, nil)
			if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				b.Fatal(err)
			}
			var r http.Request
			b.ReportAllocs()
			for b.Loop() {
				if err := fasthttpadaptor.ConvertRequest(&ctx, &r, true); err != nil {
					b.Fatal(err)
				}
				for k, vs := range respHeader {
					for _, v := range vs {
						ctx.Response.Header.Add(k, v)
					}
				}
				ctx.Response.Header.Reset()
			}
		})
	}
}
