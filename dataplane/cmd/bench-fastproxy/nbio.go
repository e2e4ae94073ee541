package main

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"runtime"
	"sync"
	"time"

	"github.com/lesismal/nbio/nbhttp"
)

// newNbioEngine is the prototype's second listener (--engine nbio): the
// lesismal/nbio event loop (epoll, a few poller goroutines instead of one
// goroutine per connection) in front of exactly bench-stdlibproxy's
// handler, net/http's ReverseProxy and Transport. It answers one question:
// what swapping only the listener buys while the handler keeps net/http's
// ResponseWriter and Request, the interfaces Portico's stage chain is
// written against. It does none of the fasthttp prototype's checks beyond
// what nbio's parser and ReverseProxy do.
func newNbioEngine(listen string, upstream *url.URL) *nbhttp.Engine {
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(upstream)
			r.SetXForwarded()
		},
		Transport: &http.Transport{
			MaxIdleConns:        512,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
		BufferPool: newBufferPool(32 << 10),
	}
	return nbhttp.NewEngine(nbhttp.Config{
		Network:       "tcp",
		Addrs:         []string{listen},
		Handler:       rp,
		KeepaliveTime: idleTimeout,
		// One event loop per core, as nginx has one worker per core
		// (nbio's default is a quarter of the cores).
		NPoller: runtime.NumCPU(),
	})
}

type bufferPool struct{ p sync.Pool }

func newBufferPool(size int) *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any {
		b := make([]byte, size)
		return &b
	}}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(s []byte) { b.p.Put(&s) }
