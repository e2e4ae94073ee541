package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// deadURL is a loopback address where nothing listens.
func deadURL(t *testing.T) string { return "http://" + testutil.RefusedAddr(t) }

// counting is an upstream that counts requests and answers with status().
type counting struct {
	srv    *httptest.Server
	hits   atomic.Int64
	status atomic.Int64
	bodies chan string
}

func newCounting(t *testing.T, name string) *counting {
	t.Helper()
	c := &counting{bodies: make(chan string, 100)}
	c.status.Store(200)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			if len(b) > 0 {
				c.bodies <- string(b)
			}
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(int(c.status.Load()))
		fmt.Fprint(w, name)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func gateway(t *testing.T, svc config.Service) string {
	t.Helper()
	svc.Name = "s"
	_, gw := newGateway(t, &config.Config{
		Services: []config.Service{svc},
		Routes:   []*config.Route{{Name: "r", Paths: []string{"/*"}, Service: "s"}},
	})
	return gw
}

func targets(urls ...string) []config.Target {
	var ts []config.Target
	for _, u := range urls {
		ts = append(ts, config.Target{URL: u})
	}
	return ts
}

// A dead instance costs no failed request: idempotent requests and requests
// whose connection was never established go to another instance, and after
// a few failures the dead one is ejected.
func TestRetryAroundDeadInstance(t *testing.T) {
	live := newCounting(t, "live")
	gw := gateway(t, config.Service{Targets: targets(deadURL(t), live.srv.URL)})
	for i := range 100 {
		if code, _, body := do(t, "GET", gw+"/x", nil); code != 200 || body != "live" {
			t.Fatalf("GET %d = %d %q, want 200 from the live instance", i, code, body)
		}
	}
	// A POST has a body; it is retried only because the dead instance
	// refused the connection, and the body arrives whole.
	for i := range 10 {
		payload := fmt.Sprintf("payload-%d-%s", i, strings.Repeat("x", 1000))
		if code, _, _ := do(t, "POST", gw+"/x", strings.NewReader(payload)); code != 200 {
			t.Fatalf("POST %d = %d, want 200", i, code)
		}
		if got := <-live.bodies; got != payload {
			t.Fatalf("POST body arrived as %d bytes, want %d", len(got), len(payload))
		}
	}
}

// Statuses listed in on_statuses are retried for idempotent requests only.
func TestRetryOnStatus(t *testing.T) {
	bad, good := newCounting(t, "bad"), newCounting(t, "good")
	bad.status.Store(503)
	gw := gateway(t, config.Service{
		Targets:          targets(bad.srv.URL, good.srv.URL),
		Retries:          &config.Retries{OnStatuses: []int{503}, MinPerSecond: 1000},
		OutlierDetection: &config.OutlierDetection{Disabled: true},
		CircuitBreaker:   &config.CircuitBreaker{Disabled: true},
	})
	for range 20 {
		if code, _, body := do(t, "GET", gw+"/", nil); code != 200 || body != "good" {
			t.Fatalf("GET = %d %q, want the retry to reach good", code, body)
		}
	}
	posts503 := 0
	for range 20 {
		code, _, _ := do(t, "POST", gw+"/", strings.NewReader("x"))
		if code == 503 {
			posts503++
		}
	}
	if posts503 != 10 {
		t.Fatalf("%d of 20 POSTs answered 503, want exactly the 10 sent to bad (never retried)", posts503)
	}
}

// Retries disabled: attempts 1.
func TestRetriesOff(t *testing.T) {
	live := newCounting(t, "live")
	gw := gateway(t, config.Service{
		Targets:          targets(deadURL(t), live.srv.URL),
		Retries:          &config.Retries{Attempts: 1},
		OutlierDetection: &config.OutlierDetection{Disabled: true},
		CircuitBreaker:   &config.CircuitBreaker{Disabled: true},
	})
	codes := map[int]int{}
	for range 10 {
		code, _, _ := do(t, "GET", gw+"/", nil)
		codes[code]++
	}
	if codes[502] != 5 || codes[200] != 5 {
		t.Fatalf("codes = %v, want 5×200 and 5×502", codes)
	}
}

// A slow instance costs one attempt timeout, then the request goes elsewhere.
func TestAttemptTimeoutRetries(t *testing.T) {
	var slowHits atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slowHits.Add(1)
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	fast := newCounting(t, "fast")
	gw := gateway(t, config.Service{
		Targets:          targets(slow.URL, fast.srv.URL),
		Timeout:          config.Duration(100 * time.Millisecond),
		OutlierDetection: &config.OutlierDetection{Disabled: true},
	})
	for range 6 {
		if code, _, body := do(t, "GET", gw+"/", nil); code != 200 || body != "fast" {
			t.Fatalf("GET = %d %q, want the retry after the attempt timeout to reach fast", code, body)
		}
	}
	if slowHits.Load() == 0 {
		t.Fatal("the slow instance was never tried")
	}
	// A POST is not retried after a timeout: it may have been processed.
	codes := map[int]int{}
	for range 4 {
		code, _, _ := do(t, "POST", gw+"/", strings.NewReader("x"))
		codes[code]++
	}
	if codes[504] != 2 || codes[200] != 2 {
		t.Fatalf("POST codes = %v, want 2×504 (slow, not retried) and 2×200", codes)
	}
}

// Consecutive 5xx eject an instance; after the ejection it is put back.
func TestOutlierEjection(t *testing.T) {
	flaky, steady := newCounting(t, "flaky"), newCounting(t, "steady")
	flaky.status.Store(500)
	gw := gateway(t, config.Service{
		Targets:          targets(flaky.srv.URL, steady.srv.URL),
		Retries:          &config.Retries{Attempts: 1},
		OutlierDetection: &config.OutlierDetection{ConsecutiveFailures: 3, BaseEjection: config.Duration(300 * time.Millisecond)},
		CircuitBreaker:   &config.CircuitBreaker{Disabled: true},
	})
	for range 6 {
		do(t, "GET", gw+"/", nil)
	}
	if got := flaky.hits.Load(); got != 3 {
		t.Fatalf("flaky got %d requests before ejection, want 3", got)
	}
	before := flaky.hits.Load()
	for range 20 {
		if code, _, body := do(t, "GET", gw+"/", nil); code != 200 || body != "steady" {
			t.Fatalf("while flaky is ejected: %d %q", code, body)
		}
	}
	if flaky.hits.Load() != before {
		t.Fatal("an ejected instance received traffic")
	}
	flaky.status.Store(200)
	testutil.Eventually(t, 5*time.Second, func() bool {
		do(t, "GET", gw+"/", nil)
		return flaky.hits.Load() > before
	}, "flaky put back after its ejection")
}

// The breaker opens after enough failures and then answers 503 at once,
// without sending anything upstream.
func TestCircuitBreaker(t *testing.T) {
	down := newCounting(t, "down")
	down.status.Store(500)
	gw := gateway(t, config.Service{
		Targets:          targets(down.srv.URL),
		Retries:          &config.Retries{Attempts: 1},
		OutlierDetection: &config.OutlierDetection{Disabled: true},
		CircuitBreaker:   &config.CircuitBreaker{MinRequests: 5, FailureRatio: 0.5, OpenTimeout: config.Duration(time.Minute)},
	})
	for range 5 {
		if code, _, _ := do(t, "GET", gw+"/", nil); code != 500 {
			t.Fatalf("before the breaker opens: %d, want the upstream's 500", code)
		}
	}
	hits := down.hits.Load()
	code, h, body := do(t, "GET", gw+"/", nil)
	if code != 503 || !strings.Contains(body, "circuit-open") || h.Get("Retry-After") == "" {
		t.Fatalf("open breaker: %d %q", code, body)
	}
	if down.hits.Load() != hits {
		t.Fatal("an open breaker let a request through")
	}
}

// Active health checks take a failing static target out and bring it back.
func TestActiveHealthCheck(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	var hits atomic.Int64
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if !healthy.Load() {
				w.WriteHeader(503)
			}
			return
		}
		hits.Add(1)
		fmt.Fprint(w, "a")
	}))
	t.Cleanup(a.Close)
	b := newCounting(t, "b")
	gw := gateway(t, config.Service{
		Targets: targets(a.URL, b.srv.URL),
		HealthCheck: &config.HealthCheck{Path: "/healthz", Interval: config.Duration(100 * time.Millisecond),
			HealthyThreshold: 1, UnhealthyThreshold: 1},
	})
	healthy.Store(false)
	testutil.Eventually(t, 5*time.Second, func() bool {
		before := hits.Load()
		for range 4 {
			do(t, "GET", gw+"/", nil)
		}
		return hits.Load() == before
	}, "unhealthy instance a taken out of rotation")
	healthy.Store(true)
	testutil.Eventually(t, 5*time.Second, func() bool {
		before := hits.Load()
		for range 4 {
			do(t, "GET", gw+"/", nil)
		}
		return hits.Load() > before
	}, "instance a back after passing its check")
}

// A service whose every instance is gone answers 503 at once.
func TestNoInstances(t *testing.T) {
	gw := gateway(t, config.Service{Consul: &config.ConsulSource{Service: "nobody"}})
	code, _, body := do(t, "GET", gw+"/", nil)
	if code != 503 || !strings.Contains(body, "no-healthy-upstream") {
		t.Fatalf("no instances: %d %q, want 503 problem", code, body)
	}
}

// Under concurrent load with one instance dying midway, no client request
// fails.
func TestInstanceDiesUnderLoad(t *testing.T) {
	a, b := newCounting(t, "a"), newCounting(t, "b")
	gw := gateway(t, config.Service{Targets: targets(a.srv.URL, b.srv.URL)})
	stop, _ := testutil.Load(8, testutil.HTTPStatus(http.DefaultClient, gw+"/", 200))
	testutil.Eventually(t, 5*time.Second, func() bool { return a.hits.Load() > 50 }, "load flowing")
	a.srv.CloseClientConnections()
	a.srv.Close()
	after := b.hits.Load()
	testutil.Eventually(t, 10*time.Second, func() bool { return b.hits.Load() > after+200 }, "load continuing on b")
	if res := stop(); res.Failed != 0 {
		t.Fatalf("%d of %d client requests failed while an instance died; first: %v", res.Failed, res.Total, res.FirstError)
	}
}

// TestAbortedBodyIsAccounted: a client that hangs up in the middle of a
// streamed body makes ReverseProxy abort with a panic; the request must
// still leave the in-flight gauge and give the breaker its verdict, or a
// half-open breaker would keep its trial slot for good.
func TestAbortedBodyIsAccounted(t *testing.T) {
	sent := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first chunk"))
		w.(http.Flusher).Flush()
		close(sent)
		<-r.Context().Done()
	}))
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}},
			CircuitBreaker: &config.CircuitBreaker{FailureRatio: 0.5, MinRequests: 1, HalfOpenRequests: 1}}},
		Routes: []*config.Route{{Name: "stream", Paths: []string{"/stream"}, Service: "s"}},
	}
	reg := prometheus.NewRegistry()
	h := NewHandler(Options{Log: discardLog(), Metrics: NewMetrics(reg)})
	applyCfg(t, h, 1, cfg)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	<-sent
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // hang up mid-body
	testutil.Eventually(t, 5*time.Second, func() bool {
		return promtestutil.ToFloat64(h.metrics.inFlight) == 0
	}, "the aborted request leaving the in-flight gauge")
}
