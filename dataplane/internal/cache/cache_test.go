package cache

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

func TestHitMissExpiry(t *testing.T) {
	e := newEnv(t, Options{})
	p := policy(config.RouteCache{TTL: config.Duration(time.Minute)})

	e.expect(e.get(p, "/a"), "MISS", "call 1", 1)
	res := e.get(p, "/a")
	e.expect(res, "HIT", "call 1", 1)
	if got := res.header.Get("Age"); got != "0" {
		t.Errorf("Age = %q, want 0", got)
	}
	if got := res.header.Get("Content-Type"); got != "text/plain" {
		t.Errorf("Content-Type = %q, want the stored one", got)
	}

	e.clock.Add(59 * time.Second)
	res = e.get(p, "/a")
	e.expect(res, "HIT", "call 1", 1)
	if got := res.header.Get("Age"); got != "59" {
		t.Errorf("Age = %q, want 59", got)
	}

	e.clock.Add(time.Second)
	e.expect(e.get(p, "/a"), "MISS", "call 2", 2)
	e.expect(e.get(p, "/a"), "HIT", "call 2", 2)
	e.expect(e.get(p, "/b"), "MISS", "call 3", 3)
}

func TestFreshnessLifetime(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hdr      []string
		lifetime time.Duration // 0: not stored
		age      string        // Age on a hit right after storing
	}{
		{"route ttl", nil, time.Minute, "0"},
		{"max-age wins over ttl", []string{"Cache-Control", "max-age=10"}, 10 * time.Second, "0"},
		{"s-maxage wins over max-age", []string{"Cache-Control", "max-age=10, s-maxage=20"}, 20 * time.Second, "0"},
		{"upstream age is subtracted", []string{"Cache-Control", "max-age=10", "Age", "4"}, 6 * time.Second, "4"},
		{"max-age=0", []string{"Cache-Control", "max-age=0"}, 0, ""},
		{"no-cache", []string{"Cache-Control", "no-cache"}, 0, ""},
		{"age beyond lifetime", []string{"Cache-Control", "max-age=5", "Age", "5"}, 0, ""},
		{"quoted value", []string{"Cache-Control", `public, max-age="30"`}, 30 * time.Second, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.up.respond = withHeaders(http.StatusOK, tc.hdr...)
			p := policy(config.RouteCache{TTL: config.Duration(time.Minute)})
			e.expect(e.get(p, "/"), "MISS", "call 1", 1)
			if tc.lifetime == 0 {
				e.expect(e.get(p, "/"), "MISS", "call 2", 2)
				return
			}
			res := e.get(p, "/")
			e.expect(res, "HIT", "call 1", 1)
			if got := res.header.Get("Age"); got != tc.age {
				t.Errorf("Age = %q, want %q", got, tc.age)
			}
			e.clock.Add(tc.lifetime - time.Second)
			e.expect(e.get(p, "/"), "HIT", "call 1", 1)
			e.clock.Add(time.Second)
			e.expect(e.get(p, "/"), "MISS", "call 2", 2)
		})
	}
}

func TestStorable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		spec     config.RouteCache
		consumer string
		method   string
		reqHdr   []string
		status   int
		respHdr  []string
		first    string // X-Cache-Status of the first request
		stored   bool
	}{
		{name: "200", status: 200, first: "MISS", stored: true},
		{name: "204", status: 204, first: "MISS", stored: true},
		{name: "301", status: 301, first: "MISS", stored: true},
		// Errors: only with an explicit lifetime, and only when the key
		// holds the whole query (issue 13, item 5).
		{name: "404 on the route ttl", status: 404, first: "MISS"},
		{name: "404 max-age", status: 404, respHdr: []string{"Cache-Control", "max-age=60"}, first: "MISS", stored: true},
		{name: "410 s-maxage", status: 410, respHdr: []string{"Cache-Control", "s-maxage=60"}, first: "MISS", stored: true},
		{name: "414 max-age, key_query", spec: config.RouteCache{KeyQuery: []string{"id"}}, status: 414, respHdr: []string{"Cache-Control", "max-age=60"}, first: "MISS"},
		{name: "404 max-age, ignore_query", spec: config.RouteCache{IgnoreQuery: true}, status: 404, respHdr: []string{"Cache-Control", "max-age=60"}, first: "MISS"},
		{name: "501 public only", status: 501, respHdr: []string{"Cache-Control", "public"}, first: "MISS"},
		{name: "500 max-age", status: 500, respHdr: []string{"Cache-Control", "max-age=60"}, first: "MISS"},
		// Cookies: only explicitly public answers, unless the key holds
		// the Cookie header.
		{name: "Cookie", status: 200, reqHdr: []string{"Cookie", "session=a"}, first: "MISS"},
		{name: "Cookie, public", status: 200, reqHdr: []string{"Cookie", "session=a"}, respHdr: []string{"Cache-Control", "public, max-age=60"}, first: "MISS", stored: true},
		{name: "Cookie, s-maxage is not public", status: 200, reqHdr: []string{"Cookie", "session=a"}, respHdr: []string{"Cache-Control", "s-maxage=60"}, first: "MISS"},
		{name: "Cookie, keyed", spec: config.RouteCache{KeyHeaders: []string{"cookie"}}, status: 200, reqHdr: []string{"Cookie", "session=a"}, first: "MISS", stored: true},
		{name: "Cookie, key_cookies", spec: config.RouteCache{KeyCookies: []string{"lang"}}, status: 200, reqHdr: []string{"Cookie", "lang=en"}, first: "MISS", stored: true},
		{name: "Cookie, key_cookies and another", spec: config.RouteCache{KeyCookies: []string{"lang"}}, status: 200, reqHdr: []string{"Cookie", "lang=en; session=a"}, first: "MISS"},
		{name: "Cookie, key_cookies and a pair net/http skips", spec: config.RouteCache{KeyCookies: []string{"lang"}}, status: 200, reqHdr: []string{"Cookie", "lang=en; sess ion=a"}, first: "MISS"},
		{name: "Cookie, key_cookies and a bare name", spec: config.RouteCache{KeyCookies: []string{"lang"}}, status: 200, reqHdr: []string{"Cookie", "lang=en; session"}, first: "MISS"},
		{name: "201", status: 201, first: "MISS"},
		{name: "206", status: 206, first: "MISS"},
		{name: "302", status: 302, first: "MISS"},
		{name: "500", status: 500, first: "MISS"},
		{name: "503", status: 503, first: "MISS"},
		{name: "no-store", status: 200, respHdr: []string{"Cache-Control", "no-store"}, first: "MISS"},
		{name: "private", status: 200, respHdr: []string{"Cache-Control", "private, max-age=60"}, first: "MISS"},
		{name: "Set-Cookie", status: 200, respHdr: []string{"Set-Cookie", "s=1"}, first: "MISS"},
		{name: "Vary star", status: 200, respHdr: []string{"Vary", "*"}, first: "MISS"},
		{name: "request no-store", status: 200, reqHdr: []string{"Cache-Control", "no-store"}, first: "BYPASS"},
		{name: "POST", method: http.MethodPost, status: 200, first: "BYPASS"},
		{name: "DELETE", method: http.MethodDelete, status: 200, first: "BYPASS"},
		{name: "websocket upgrade", status: 200, reqHdr: []string{"Upgrade", "websocket", "Connection", "Upgrade"}, first: "BYPASS"},
		{name: "Authorization", status: 200, reqHdr: []string{"Authorization", "Bearer x"}, first: "MISS"},
		{name: "Authorization, public", status: 200, reqHdr: []string{"Authorization", "Bearer x"}, respHdr: []string{"Cache-Control", "public"}, first: "MISS", stored: true},
		{name: "Authorization, s-maxage", status: 200, reqHdr: []string{"Authorization", "Bearer x"}, respHdr: []string{"Cache-Control", "s-maxage=60"}, first: "MISS", stored: true},
		{name: "Authorization, keyed by consumer", spec: config.RouteCache{KeyConsumer: true}, consumer: "alice", status: 200, reqHdr: []string{"Authorization", "Bearer x"}, first: "MISS", stored: true},
		{name: "Authorization, keyed by consumer but none", spec: config.RouteCache{KeyConsumer: true}, status: 200, reqHdr: []string{"Authorization", "Bearer x"}, first: "MISS"},
		// An API key authenticates without an Authorization header.
		{name: "API key consumer, not keyed by consumer", consumer: "alice", status: 200, first: "MISS"},
		{name: "API key consumer, keyed by consumer", spec: config.RouteCache{KeyConsumer: true}, consumer: "alice", status: 200, first: "MISS", stored: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.up.respond = withHeaders(tc.status, tc.respHdr...)
			p := policy(tc.spec)
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			res := e.do(p, tc.consumer, req(method, "/x", tc.reqHdr...))
			if res.status != tc.status {
				t.Fatalf("status = %d, want %d", res.status, tc.status)
			}
			e.expect(res, tc.first, "", 1)
			res = e.do(p, tc.consumer, req(method, "/x", tc.reqHdr...))
			if tc.stored {
				e.expect(res, "HIT", "", 1)
			} else {
				e.expect(res, tc.first, "", 2)
			}
			if res.status != tc.status {
				t.Errorf("second status = %d, want %d", res.status, tc.status)
			}
		})
	}
}

// A response stored for a request without cookies is not handed to one
// with cookies unless it is public: the upstream may answer a session
// differently and still say nothing about it.
func TestCookieLookup(t *testing.T) {
	e := newEnv(t, Options{})
	p := policy(config.RouteCache{})
	e.expect(e.get(p, "/"), "MISS", "call 1", 1)
	e.expect(e.get(p, "/", "Cookie", "session=bob"), "MISS", "call 2", 2)
	e.expect(e.get(p, "/", "Cookie", "session=bob"), "MISS", "call 3", 3)
	e.expect(e.get(p, "/"), "HIT", "call 1", 3)
	e.up.respond = withHeaders(http.StatusOK, "Cache-Control", "public")
	e.expect(e.get(p, "/pub", "Cookie", "session=bob"), "MISS", "call 4", 4)
	e.expect(e.get(p, "/pub", "Cookie", "session=eve"), "HIT", "call 4", 4)
	e.expect(e.get(p, "/pub"), "HIT", "call 4", 4)
}

// A response stored for an anonymous request is not handed to one with
// credentials unless it said a shared cache may do that.
func TestAuthorizationLookup(t *testing.T) {
	e := newEnv(t, Options{})
	p := policy(config.RouteCache{})
	e.expect(e.get(p, "/"), "MISS", "call 1", 1)
	e.expect(e.get(p, "/", "Authorization", "Bearer x"), "MISS", "call 2", 2)
	e.expect(e.get(p, "/"), "HIT", "call 1", 2)
}

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		spec   config.RouteCache
		a, b   *http.Request
		ca, cb string // consumers
		same   bool
	}{
		{name: "query order", a: req("GET", "/p?a=1&b=2"), b: req("GET", "/p?b=2&a=1"), same: true},
		{name: "query encoding", a: req("GET", "/p?a=%41"), b: req("GET", "/p?a=A"), same: true},
		{name: "query hex case", a: req("GET", "/p?a=%2f"), b: req("GET", "/p?a=%2F"), same: true},
		// Issue 13: raw queries an upstream may read differently.
		{name: "invalid escape vs its encoding", a: req("GET", "/p?a=%zz"), b: req("GET", "/p?a=%25zz")},
		{name: "plus vs %20", a: req("GET", "/p?a=b+c"), b: req("GET", "/p?a=b%20c")},
		{name: "semicolon vs %3B", a: req("GET", "/p?a=1;b=2"), b: req("GET", "/p?a=1%3Bb=2")},
		{name: "semicolon vs ampersand", a: req("GET", "/p?a=1;b=2"), b: req("GET", "/p?a=1&b=2")},
		{name: "semicolon keeps order", a: req("GET", "/p?b=1;a=2"), b: req("GET", "/p?a=2;b=1")},
		{name: "key query: semicolon cloaking", spec: config.RouteCache{KeyQuery: []string{"id"}}, a: req("GET", "/p?id=1"), b: req("GET", "/p?id=1&x=1;id=2")},
		{name: "key query: encoded name", spec: config.RouteCache{KeyQuery: []string{"id"}}, a: req("GET", "/p?id=1"), b: req("GET", "/p?id=1&%69d=2")},
		{name: "key query: other case", spec: config.RouteCache{KeyQuery: []string{"id"}}, a: req("GET", "/p?id=1"), b: req("GET", "/p?id=1&ID=2")},
		{name: "key query: php array", spec: config.RouteCache{KeyQuery: []string{"id"}}, a: req("GET", "/p?id=1"), b: req("GET", "/p?id=1&id[]=2")},
		{name: "key query: invalid escape", spec: config.RouteCache{KeyQuery: []string{"id"}}, a: req("GET", "/p?id=%zz"), b: req("GET", "/p?id=%25zz")},
		{name: "key query: semicolon elsewhere", spec: config.RouteCache{KeyQuery: []string{"id"}}, a: req("GET", "/p?id=1&x=1;y=2"), b: req("GET", "/p?id=1&x=3;y=4"), same: true},
		{name: "repeated param order matters", a: req("GET", "/p?a=1&a=2"), b: req("GET", "/p?a=2&a=1")},
		{name: "query value", a: req("GET", "/p?a=1"), b: req("GET", "/p?a=2")},
		{name: "path", a: req("GET", "/p"), b: req("GET", "/q")},
		{name: "host case", a: req("GET", "http://Example.COM/p"), b: req("GET", "http://example.com/p"), same: true},
		{name: "host default port", a: req("GET", "http://example.com:80/p"), b: req("GET", "http://example.com/p"), same: true},
		// Issue 13, item 1: the port is part of the authority.
		{name: "host port", a: req("GET", "http://example.com:8080/p"), b: req("GET", "http://example.com/p")},
		{name: "host junk port", a: hostReq("example.com:1,evil.example"), b: hostReq("example.com")},
		{name: "host", a: req("GET", "http://a.example/p"), b: req("GET", "http://b.example/p")},
		{name: "ignore query", spec: config.RouteCache{IgnoreQuery: true}, a: req("GET", "/p?a=1"), b: req("GET", "/p?a=2"), same: true},
		{name: "key query other param", spec: config.RouteCache{KeyQuery: []string{"id"}}, a: req("GET", "/p?id=1&utm=x"), b: req("GET", "/p?utm=y&id=1"), same: true},
		{name: "key query param", spec: config.RouteCache{KeyQuery: []string{"id"}}, a: req("GET", "/p?id=1"), b: req("GET", "/p?id=2")},
		{name: "header not keyed", a: req("GET", "/p", "X-Tenant", "a"), b: req("GET", "/p", "X-Tenant", "b"), same: true},
		{name: "key header", spec: config.RouteCache{KeyHeaders: []string{"x-tenant"}}, a: req("GET", "/p", "X-Tenant", "a"), b: req("GET", "/p", "X-Tenant", "b")},
		{name: "key header same", spec: config.RouteCache{KeyHeaders: []string{"x-tenant"}}, a: req("GET", "/p", "X-Tenant", "a"), b: req("GET", "/p", "X-Tenant", "a"), same: true},
		{name: "key cookie", spec: config.RouteCache{KeyCookies: []string{"lang"}}, a: req("GET", "/p", "Cookie", "lang=en"), b: req("GET", "/p", "Cookie", "lang=fr")},
		{name: "key cookie same", spec: config.RouteCache{KeyCookies: []string{"lang"}}, a: req("GET", "/p", "Cookie", "lang=en"), b: req("GET", "/p", "Cookie", " lang=en "), same: true},
		{name: "key cookie vs none", spec: config.RouteCache{KeyCookies: []string{"lang"}}, a: req("GET", "/p"), b: req("GET", "/p", "Cookie", "lang=en")},
		{name: "key cookie, comma in the value", spec: config.RouteCache{KeyCookies: []string{"lang"}}, a: req("GET", "/p", "Cookie", "lang=en"), b: req("GET", "/p", "Cookie", "lang=en, session=x")},
		{name: "key header absent vs empty", spec: config.RouteCache{KeyHeaders: []string{"x-tenant"}}, a: req("GET", "/p"), b: req("GET", "/p", "X-Tenant", "")},
		// Authenticated without a per-consumer key: not shared (RFC 9111 §3.5).
		{name: "consumer not keyed", a: req("GET", "/p"), b: req("GET", "/p"), ca: "alice", cb: "bob"},
		{name: "key consumer", spec: config.RouteCache{KeyConsumer: true}, a: req("GET", "/p"), b: req("GET", "/p"), ca: "alice", cb: "bob"},
		{name: "key consumer same", spec: config.RouteCache{KeyConsumer: true}, a: req("GET", "/p"), b: req("GET", "/p"), ca: "alice", cb: "alice", same: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			p := policy(tc.spec)
			e.expect(e.do(p, tc.ca, tc.a), "MISS", "call 1", 1)
			if tc.same {
				e.expect(e.do(p, tc.cb, tc.b), "HIT", "call 1", 1)
			} else {
				e.expect(e.do(p, tc.cb, tc.b), "MISS", "call 2", 2)
			}
		})
	}
}

// hostReq is a GET of /p with a Host httptest.NewRequest would not parse.
func hostReq(host string) *http.Request {
	r := req("GET", "/p")
	r.Host = host
	return r
}

func TestVary(t *testing.T) {
	e := newEnv(t, Options{})
	e.up.respond = func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Vary", "accept-encoding, X-Lang")
		fmt.Fprintf(w, "%s/%s call %d", r.Header.Get("Accept-Encoding"), r.Header.Get("X-Lang"), n)
	}
	p := policy(config.RouteCache{})
	e.expect(e.get(p, "/", "Accept-Encoding", "gzip"), "MISS", "gzip/ call 1", 1)
	e.expect(e.get(p, "/", "Accept-Encoding", "br"), "MISS", "br/ call 2", 2)
	e.expect(e.get(p, "/", "Accept-Encoding", "gzip"), "HIT", "gzip/ call 1", 2)
	e.expect(e.get(p, "/", "Accept-Encoding", "br"), "HIT", "br/ call 2", 2)
	e.expect(e.get(p, "/", "Accept-Encoding", "br", "X-Lang", "fr"), "MISS", "br/fr call 3", 3)
	e.expect(e.get(p, "/", "Accept-Encoding", "br", "X-Lang", "fr"), "HIT", "br/fr call 3", 3)
	e.expect(e.get(p, "/"), "MISS", "/ call 4", 4)
	e.expect(e.get(p, "/"), "HIT", "/ call 4", 4)
}

func TestIfNoneMatch(t *testing.T) {
	e := newEnv(t, Options{})
	e.up.respond = withHeaders(http.StatusOK, "Etag", `"v1"`, "Cache-Control", "max-age=60", "X-Other", "1")
	p := policy(config.RouteCache{})
	e.expect(e.get(p, "/"), "MISS", "call 1", 1)
	e.clock.Add(3 * time.Second)
	for _, tc := range []struct {
		inm    string
		status int
	}{
		{`"v1"`, http.StatusNotModified},
		{`W/"v1"`, http.StatusNotModified},
		{`"v0", "v1"`, http.StatusNotModified},
		{`*`, http.StatusNotModified},
		{`"v2"`, http.StatusOK},
	} {
		t.Run(tc.inm, func(t *testing.T) {
			res := e.get(p, "/", "If-None-Match", tc.inm)
			e.expect(res, "HIT", "", 1)
			if res.status != tc.status {
				t.Fatalf("status = %d, want %d", res.status, tc.status)
			}
			if tc.status != http.StatusNotModified {
				return
			}
			if res.body != "" {
				t.Errorf("304 has body %q", res.body)
			}
			for k, want := range map[string]string{"Etag": `"v1"`, "Cache-Control": "max-age=60", "Age": "3", "X-Other": ""} {
				if got := res.header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestHead(t *testing.T) {
	e := newEnv(t, Options{})
	p := policy(config.RouteCache{})
	e.expect(e.do(p, "", req(http.MethodHead, "/")), "MISS", "", 1)
	e.expect(e.do(p, "", req(http.MethodHead, "/")), "MISS", "", 2) // a HEAD miss is not stored
	e.expect(e.get(p, "/"), "MISS", "call 3", 3)
	res := e.do(p, "", req(http.MethodHead, "/"))
	e.expect(res, "HIT", "", 3)
	if res.body != "" {
		t.Errorf("HEAD hit has body %q", res.body)
	}
	if got := res.header.Get("Content-Length"); got != "6" {
		t.Errorf("Content-Length = %q, want 6", got)
	}
}

func TestOversize(t *testing.T) {
	big := strings.Repeat("x", 100)
	for _, tc := range []struct {
		name          string
		contentLength bool
	}{{"with Content-Length", true}, {"streamed", false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.up.respond = func(w http.ResponseWriter, _ *http.Request, _ int64) {
				if tc.contentLength {
					w.Header().Set("Content-Length", "100")
				}
				for i := 0; i < len(big); i += 10 {
					_, _ = io.WriteString(w, big[i:i+10])
				}
			}
			p := policy(config.RouteCache{MaxEntryBytes: 50})
			e.expect(e.get(p, "/"), "MISS", big, 1)
			e.expect(e.get(p, "/"), "MISS", big, 2)
			if e.mem.Len() != 0 {
				t.Errorf("memory holds %d entries, want 0", e.mem.Len())
			}
		})
	}
	t.Run("at the limit", func(t *testing.T) {
		e := newEnv(t, Options{})
		e.up.respond = func(w http.ResponseWriter, _ *http.Request, _ int64) { _, _ = io.WriteString(w, big) }
		p := policy(config.RouteCache{MaxEntryBytes: 100})
		e.expect(e.get(p, "/"), "MISS", big, 1)
		e.expect(e.get(p, "/"), "HIT", big, 1)
	})
}

// A body shorter than its Content-Length was cut off upstream.
func TestTruncatedBodyNotStored(t *testing.T) {
	e := newEnv(t, Options{})
	e.up.respond = func(w http.ResponseWriter, _ *http.Request, _ int64) {
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "short")
	}
	p := policy(config.RouteCache{})
	e.get(p, "/")
	e.expect(e.get(p, "/"), "MISS", "", 2)
}

func TestGenerationPurges(t *testing.T) {
	e := newEnv(t, Options{})
	spec := &config.RouteCache{TTL: config.Duration(time.Hour)}
	p1 := Compile("r1", 1, spec)
	e.expect(e.get(p1, "/"), "MISS", "call 1", 1)
	e.expect(e.get(p1, "/"), "HIT", "call 1", 1)
	p2 := Compile("r1", 2, spec)
	e.expect(e.get(p2, "/"), "MISS", "call 2", 2)
	e.expect(e.get(p2, "/"), "HIT", "call 2", 2)
	// Another route never shares entries either.
	e.expect(e.get(Compile("r2", 2, spec), "/"), "MISS", "call 3", 3)
}

func TestRequestCacheControl(t *testing.T) {
	e := newEnv(t, Options{})
	p := policy(config.RouteCache{})
	e.expect(e.get(p, "/"), "MISS", "call 1", 1)
	e.clock.Add(10 * time.Second)
	e.expect(e.get(p, "/", "Cache-Control", "max-age=20"), "HIT", "call 1", 1)
	e.expect(e.get(p, "/", "Cache-Control", "max-age=5"), "MISS", "call 2", 2)
	e.expect(e.get(p, "/", "Cache-Control", "no-cache"), "MISS", "call 3", 3)
	e.expect(e.get(p, "/", "Cache-Control", "max-age=0"), "MISS", "call 4", 4)
	// Each of them refreshed the entry.
	e.expect(e.get(p, "/"), "HIT", "call 4", 4)
}

func TestNilPolicy(t *testing.T) {
	e := newEnv(t, Options{})
	if Compile("r", 1, nil) != nil {
		t.Fatal("Compile(nil spec) is not nil")
	}
	e.expect(e.get(nil, "/"), "", "call 1", 1)
	e.expect(e.get(nil, "/"), "", "call 2", 2)
}

// Handlers around the cache may have put headers on w: they are neither
// stored nor overwritten by a hit, and the upstream's hop-by-hop headers
// are not stored.
func TestStoredHeaders(t *testing.T) {
	e := newEnv(t, Options{})
	e.up.respond = withHeaders(http.StatusOK, "X-Up", "1", "Connection", "X-Conn", "X-Conn", "a", "Keep-Alive", "timeout=5", "Age", "2", StatusHeader, "HIT")
	p := policy(config.RouteCache{})
	serve := func(id string) result {
		w := httptest.NewRecorder()
		w.Header().Set("X-Request-Id", id)
		e.cache.Serve(w, req(http.MethodGet, "/"), p, "", e.up)
		return result{status: w.Code, header: w.Result().Header, body: w.Body.String()}
	}
	res := serve("one")
	e.expect(res, "MISS", "call 1", 1)
	res = serve("two")
	e.expect(res, "HIT", "call 1", 1)
	for k, want := range map[string]string{"X-Request-Id": "two", "X-Up": "1", "X-Conn": "", "Keep-Alive": "", "Connection": "", "Age": "2"} {
		if got := res.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := res.header.Values(StatusHeader); len(got) != 1 {
		t.Errorf("%s = %q, want one value", StatusHeader, got)
	}
}

func TestStampede(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cacheable bool
		calls     int64
	}{{"storable", true, 1}, {"not storable", false, 50}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 50
			e := newEnv(t, Options{})
			entered, release := make(chan struct{}), make(chan struct{})
			e.up.respond = func(w http.ResponseWriter, _ *http.Request, c int64) {
				if c == 1 {
					close(entered)
					<-release
				}
				if !tc.cacheable {
					w.Header().Set("Cache-Control", "no-store")
				}
				_, _ = io.WriteString(w, "body")
			}
			followers := make(chan struct{}, n)
			e.cache.onFollow = func() { followers <- struct{}{} }
			p := policy(config.RouteCache{})
			results := make([]result, n)
			var wg sync.WaitGroup
			wg.Go(func() { results[0] = e.get(p, "/") })
			<-entered
			for i := 1; i < n; i++ {
				wg.Go(func() { results[i] = e.get(p, "/") })
			}
			for range n - 1 {
				<-followers
			}
			close(release)
			wg.Wait()
			if got := e.up.calls.Load(); got != tc.calls {
				t.Errorf("upstream calls = %d, want %d", got, tc.calls)
			}
			counts := map[string]int{}
			for _, r := range results {
				counts[r.cacheStatus()]++
				if r.body != "body" || r.status != http.StatusOK {
					t.Errorf("answer %d %q, want 200 body", r.status, r.body)
				}
			}
			want := map[string]int{"MISS": 1, "HIT": n - 1}
			if !tc.cacheable {
				want = map[string]int{"MISS": n}
			}
			if fmt.Sprint(counts) != fmt.Sprint(want) {
				t.Errorf("cache statuses %v, want %v", counts, want)
			}
		})
	}
}

// A response that turns out not to be storable releases the requests
// waiting for it as soon as its headers say so, not when its (possibly
// endless) body ends.
func TestUnstorableReleasesWaiters(t *testing.T) {
	e := newEnv(t, Options{})
	streaming, release := make(chan struct{}), make(chan struct{})
	e.up.respond = func(w http.ResponseWriter, _ *http.Request, c int64) {
		w.Header().Set("Cache-Control", "no-store")
		_, _ = io.WriteString(w, "part")
		if c == 1 {
			w.(http.Flusher).Flush()
			close(streaming)
			<-release
		}
	}
	followed := make(chan struct{}, 1)
	e.cache.onFollow = func() { followed <- struct{}{} }
	p := policy(config.RouteCache{})
	leader := make(chan result, 1)
	go func() { leader <- e.get(p, "/stream") }()
	<-streaming
	res := e.get(p, "/stream") // joins the leader's flight, must not wait for it
	select {
	case <-followed:
	default:
		t.Fatal("the second request did not wait on the first one's flight")
	}
	if res.status != 200 || res.body != "part" {
		t.Errorf("waiter: %d %q", res.status, res.body)
	}
	close(release)
	if r := <-leader; r.body != "part" {
		t.Errorf("leader: %q", r.body)
	}
}

// A waiter whose client leaves stops waiting at once.
func TestStampedeWaiterCancelled(t *testing.T) {
	e := newEnv(t, Options{})
	entered, release := make(chan struct{}), make(chan struct{})
	e.up.respond = func(w http.ResponseWriter, _ *http.Request, _ int64) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "body")
	}
	followed := make(chan struct{})
	e.cache.onFollow = func() { close(followed) }
	p := policy(config.RouteCache{})
	done := make(chan result)
	go func() { done <- e.get(p, "/") }()
	<-entered
	ctx, cancel := context.WithCancel(t.Context())
	r := req(http.MethodGet, "/").WithContext(ctx)
	waiterDone := make(chan struct{})
	go func() {
		e.cache.Serve(httptest.NewRecorder(), r, p, "", e.up)
		close(waiterDone)
	}()
	<-followed
	cancel()
	<-waiterDone
	close(release)
	e.expect(<-done, "MISS", "body", 1)
}

// Streaming survives the recorder: a flushed chunk reaches the client
// before the handler returns.
func TestFlushThroughRecorder(t *testing.T) {
	e := newEnv(t, Options{})
	release := make(chan struct{})
	e.up.respond = func(w http.ResponseWriter, _ *http.Request, _ int64) {
		_, _ = io.WriteString(w, "first\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
		<-release
		_, _ = io.WriteString(w, "second\n")
	}
	p := policy(config.RouteCache{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.cache.Serve(w, r, p, "", e.up)
	}))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/s")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "second\n" {
		t.Fatalf("rest %q", rest)
	}
	res2, err := http.Get(srv.URL + "/s")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res2.Body)
	res2.Body.Close()
	if res2.Header.Get(StatusHeader) != "HIT" || string(b) != "first\nsecond\n" {
		t.Fatalf("second request %s %q, want a HIT with the whole body", res2.Header.Get(StatusHeader), b)
	}
}

// A short-lived variant does not take the Vary record, and with it the
// longer-lived variants, along when it expires.
func TestVaryRecordOutlivesShortVariant(t *testing.T) {
	e := newEnv(t, Options{})
	e.up.respond = func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Vary", "X-Lang")
		if r.Header.Get("X-Lang") == "short" {
			w.Header().Set("Cache-Control", "max-age=5")
		}
		fmt.Fprintf(w, "%s %d", r.Header.Get("X-Lang"), n)
	}
	p := policy(config.RouteCache{TTL: config.Duration(time.Minute)})
	e.expect(e.get(p, "/", "X-Lang", "long"), "MISS", "long 1", 1)
	e.expect(e.get(p, "/", "X-Lang", "short"), "MISS", "short 2", 2)
	e.clock.Add(10 * time.Second)
	e.expect(e.get(p, "/", "X-Lang", "long"), "HIT", "long 1", 2)
	e.expect(e.get(p, "/", "X-Lang", "short"), "MISS", "short 3", 3)
}

// A leader whose handler panics (a proxy aborting a broken response)
// still releases its waiters, who then fetch for themselves.
func TestLeaderPanicReleasesWaiters(t *testing.T) {
	e := newEnv(t, Options{})
	entered, release := make(chan struct{}), make(chan struct{})
	e.up.respond = func(w http.ResponseWriter, _ *http.Request, n int64) {
		if n == 1 {
			close(entered)
			<-release
			panic(http.ErrAbortHandler)
		}
		_, _ = io.WriteString(w, "ok")
	}
	followed := make(chan struct{})
	e.cache.onFollow = func() { close(followed) }
	p := policy(config.RouteCache{})
	panicked := make(chan any)
	go func() {
		defer func() { panicked <- recover() }()
		e.get(p, "/")
	}()
	<-entered
	done := make(chan result)
	go func() { done <- e.get(p, "/") }()
	<-followed
	close(release)
	if v := <-panicked; v != http.ErrAbortHandler {
		t.Fatalf("leader recovered %v, want the handler's panic passed on", v)
	}
	e.expect(<-done, "MISS", "ok", 2)
	e.expect(e.get(p, "/"), "MISS", "ok", 3) // nothing was stored
}

// Trailers the upstream sends reach the client on a cached route.
func TestTrailersPassThrough(t *testing.T) {
	e := newEnv(t, Options{})
	e.up.respond = func(w http.ResponseWriter, _ *http.Request, _ int64) {
		w.Header().Set("Trailer", "X-Checksum")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.cache.Serve(w, r, policy(config.RouteCache{}), "", e.up)
	}))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/t")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
		t.Errorf("trailer X-Checksum = %q, want abc (trailers %v)", got, resp.Trailer)
	}
}
