// Command bench-upstream is the upstream of `make bench-load`: it answers
// every request with a fixed "ok" body as fast as net/http allows, with
// keep-alive, so that the proxies in front of it are what the benchmark
// measures. It also accepts OTLP/HTTP trace exports (POST /v1/traces) and
// discards them, so that the traced scenario pays the data plane's whole
// exporting cost without running a collector. For the body curves it reads
// and discards any request body, and `?size=N` (at most 16 MiB) answers N
// bytes instead of "ok". Not for anything else.
package main

import (
	"bytes"
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
)

var body = []byte("ok\n")

// maxSize bounds ?size= so that a stray request cannot make it allocate.
const maxSize = 16 << 20

func main() {
	listen := flag.String("listen", "127.0.0.1:9101", "address to listen on")
	flag.Parse()
	length := strconv.Itoa(len(body))
	big := bytes.Repeat([]byte("x"), maxSize)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			// An empty ExportTraceServiceResponse: everything accepted.
			_, _ = io.Copy(io.Discard, r.Body)
			hdr["Content-Type"] = []string{"application/x-protobuf"}
			hdr["Content-Length"] = []string{"0"}
			return
		}
		if r.ContentLength != 0 {
			_, _ = io.Copy(io.Discard, r.Body)
		}
		hdr["Content-Type"] = []string{"text/plain"}
		if r.URL.RawQuery != "" {
			if n, err := strconv.Atoi(r.URL.Query().Get("size")); err == nil && n >= 0 && n <= maxSize {
				hdr["Content-Length"] = []string{strconv.Itoa(n)}
				_, _ = w.Write(big[:n])
				return
			}
		}
		hdr["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
	log.Fatal(http.ListenAndServe(*listen, h))
}
