// Command bench-upstream is the upstream of `make bench-load`: it answers
// every request with a fixed "ok" body as fast as net/http allows, with
// keep-alive, so that the proxies in front of it are what the benchmark
// measures. Not for anything else.
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
)

var body = []byte("ok\n")

func main() {
	listen := flag.String("listen", "127.0.0.1:9101", "address to listen on")
	flag.Parse()
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hdr := w.Header()
		hdr["Content-Type"] = []string{"text/plain"}
		hdr["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
	log.Fatal(http.ListenAndServe(*listen, h))
}
