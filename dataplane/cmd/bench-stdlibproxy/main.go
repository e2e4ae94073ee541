// Command bench-stdlibproxy is the plain-Go baseline of `make bench-load`: a
// bare httputil.ReverseProxy to one upstream, with a sync.Pool buffer pool
// and a keep-alive transport sized for the benchmark's concurrency. It shows
// what a Go reverse proxy costs before any gateway feature is added.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

type bufferPool struct{ p sync.Pool }

func newBufferPool(size int) *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any {
		b := make([]byte, size)
		return &b
	}}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(s []byte) { b.p.Put(&s) }

func main() {
	listen := flag.String("listen", "127.0.0.1:9102", "address to listen on")
	upstream := flag.String("upstream", "http://127.0.0.1:9101", "upstream URL")
	flag.Parse()
	target, err := url.Parse(*upstream)
	if err != nil {
		log.Fatalf("--upstream: %v", err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
		},
		Transport: &http.Transport{
			MaxIdleConns:        512,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
		BufferPool: newBufferPool(32 << 10),
	}
	log.Fatal(http.ListenAndServe(*listen, rp))
}
