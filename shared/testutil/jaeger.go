package testutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DefaultJaegerVersion is the Jaeger version scripts/ensure-jaeger.sh builds.
const DefaultJaegerVersion = "v1.76.0"

// jaegerReadyTimeout bounds the wait for the query API and the OTLP receiver.
// Jaeger starts in well under a second on an idle machine; the margin is for
// a shared 2-core box running race-enabled test binaries beside it.
const jaegerReadyTimeout = 60 * time.Second

// JaegerBinary returns the path of the Jaeger binary used by tests:
// $JAEGER_BIN if set, else the binary scripts/ensure-jaeger.sh caches in
// ${PORTICO_CACHE:-$HOME/.cache/portico}/jaeger-${JAEGER_VERSION:-v1.76.0}.
// The lookup mirrors the script so that both always agree.
func JaegerBinary() (string, error) {
	return cachedBinary("jaeger", "JAEGER_BIN", "JAEGER_VERSION", "jaeger", DefaultJaegerVersion,
		"run scripts/ensure-jaeger.sh (or make test) to build it, or point JAEGER_BIN at a jaeger binary")
}

// Jaeger is a Jaeger v2 all-in-one (an OpenTelemetry collector with Jaeger's
// storage and query extensions) on loopback ports, keeping traces in memory,
// for tests that check what a real trace backend receives.
type Jaeger struct {
	// OTLPHTTP is the OTLP/HTTP receiver, "127.0.0.1:PORT"; an exporter's
	// endpoint is "http://" + OTLPHTTP.
	OTLPHTTP string
	// OTLPGRPC is the OTLP/gRPC receiver, "127.0.0.1:PORT".
	OTLPGRPC string
	// QueryURL is the query HTTP API and UI, "http://127.0.0.1:PORT".
	QueryURL string
	// LogPath is Jaeger's output.
	LogPath string

	bin    string
	dir    string
	client *http.Client
	proc   process
}

type jaegerPorts struct {
	otlpGRPC, otlpHTTP, queryHTTP, queryGRPC int
}

// StartJaeger starts a fresh Jaeger, waits until its query API answers and
// its OTLP/HTTP receiver accepts connections, and kills it when the test
// ends. A missing binary fails the test: tests that need a trace backend
// must not pass silently without one.
//
// Jaeger inherits the test process's environment; its own tracing is
// switched off in the config, so OTEL_* variables set by the test do not
// make it export spans anywhere.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	bin, err := JaegerBinary()
	if err != nil {
		t.Fatal(err)
	}
	j := &Jaeger{bin: bin, dir: t.TempDir(), client: &http.Client{Timeout: 5 * time.Second}}
	j.LogPath = filepath.Join(j.dir, "jaeger.log")
	t.Cleanup(func() {
		if err := j.proc.kill(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("tail of jaeger log %s:\n%s", j.LogPath, tail(j.LogPath, 40))
		}
	})
	if err := j.startFresh(); err != nil {
		t.Fatal(err)
	}
	return j
}

// startFresh picks ports and starts. A port found free can be taken before
// Jaeger binds it, and the collector exits when a listener fails, so a start
// that dies early is retried on new ports.
func (j *Jaeger) startFresh() error {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var ps jaegerPorts
		if ps, err = pickJaegerPorts(); err != nil {
			return err
		}
		j.OTLPGRPC = "127.0.0.1:" + strconv.Itoa(ps.otlpGRPC)
		j.OTLPHTTP = "127.0.0.1:" + strconv.Itoa(ps.otlpHTTP)
		j.QueryURL = "http://127.0.0.1:" + strconv.Itoa(ps.queryHTTP)
		cfg := filepath.Join(j.dir, "config-"+strconv.Itoa(attempt)+".yaml")
		if err = os.WriteFile(cfg, []byte(jaegerConfig(ps)), 0o600); err != nil {
			return fmt.Errorf("jaeger: %w", err)
		}
		j.proc.name, j.proc.bin, j.proc.logPath = "jaeger on "+j.QueryURL, j.bin, j.LogPath
		err = j.proc.start([]string{"--config", cfg}, j.ready, jaegerReadyTimeout)
		if err == nil || !errors.Is(err, errExited) {
			return err // alive but not ready: new ports would not help
		}
	}
	return err
}

func pickJaegerPorts() (jaegerPorts, error) {
	var ps [4]int
	for i := range ps {
		p, err := freePort()
		if err != nil {
			return jaegerPorts{}, fmt.Errorf("jaeger: %w", err)
		}
		ps[i] = p
	}
	return jaegerPorts{otlpGRPC: ps[0], otlpHTTP: ps[1], queryHTTP: ps[2], queryGRPC: ps[3]}, nil
}

// jaegerConfig is a minimal all-in-one configuration. Every listener is on
// an explicit loopback port, so that parallel test binaries never collide:
//   - only the otlp receiver (the stock all-in-one also opens Jaeger and
//     Zipkin receivers on fixed ports);
//   - no healthcheck, expvar, zpages, pprof or remote_sampling extensions,
//     which all listen on fixed ports by default;
//   - the collector's own metrics off (their Prometheus reader defaults to
//     :8888) and its own traces off;
//   - jaeger_query's self-tracing off: it exports through an OTLP/gRPC
//     client that honours OTEL_EXPORTER_OTLP_ENDPOINT, which tests set, so
//     Jaeger would trace its own queries into whatever the test points at;
//   - no batch processor, so that an exported span is queryable at once.
func jaegerConfig(p jaegerPorts) string {
	return fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    traces:
      level: none
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, p.queryHTTP, p.queryGRPC, p.otlpGRPC, p.otlpHTTP)
}

// ready is the query API answering and the OTLP/HTTP receiver accepting
// connections: the collector starts its extensions and receivers in turn,
// so one being up says nothing about the other.
func (j *Jaeger) ready(ctx context.Context) error {
	if _, err := j.get(ctx, "/api/services"); err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", j.OTLPHTTP)
	if err != nil {
		return fmt.Errorf("otlp http receiver: %w", err)
	}
	return conn.Close()
}

// Trace is a trace as Jaeger's query API (/api/traces, the JSON API the UI
// uses) returns it, reduced to what tests check.
type Trace struct {
	TraceID string `json:"traceID"`
	Spans   []Span `json:"spans"`
}

// Span is one span of a Trace. IDs are lowercase hex, trace IDs 32 digits.
type Span struct {
	TraceID       string     `json:"traceID"`
	SpanID        string     `json:"spanID"`
	OperationName string     `json:"operationName"`
	References    []SpanRef  `json:"references"`
	Tags          []KeyValue `json:"tags"`
	// Process is the emitting service; its Tags are the OpenTelemetry
	// resource attributes other than service.name.
	Process Process `json:"process"`
}

// SpanRef links a span to another: RefType "CHILD_OF" names the parent.
type SpanRef struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a span tag or process tag. Value is as JSON decodes it:
// string, bool, float64 (ints too), or a base64 string for bytes.
type KeyValue struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Process is the service a span came from.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Tag returns the value of the span's tag key, if it has one.
func (s Span) Tag(key string) (any, bool) {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// The API keeps each span's process once per trace, in a map keyed by
// processID; Traces resolves it so that callers need not.
type wireSpan struct {
	Span
	ProcessID string `json:"processID"`
}

type wireTrace struct {
	TraceID   string             `json:"traceID"`
	Spans     []wireSpan         `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

type wireResponse struct {
	Data   []wireTrace `json:"data"`
	Errors []struct {
		Code    int    `json:"code"`
		Msg     string `json:"msg"`
		TraceID string `json:"traceID"`
	} `json:"errors"`
}

// traceQueryLimit is passed explicitly: the API's default of 100 could hide
// a test's trace behind older ones from the same service.
const traceQueryLimit = 1000

// Traces returns the traces Jaeger holds for service (at most 1000, within
// the API's default lookback of two days). An unknown service has none.
func (j *Jaeger) Traces(ctx context.Context, service string) ([]Trace, error) {
	q := url.Values{"service": {service}, "limit": {strconv.Itoa(traceQueryLimit)}}
	body, err := j.get(ctx, "/api/traces?"+q.Encode())
	if err != nil {
		return nil, err
	}
	var resp wireResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("jaeger: decode /api/traces: %w", err)
	}
	if len(resp.Errors) > 0 {
		e := resp.Errors[0]
		return nil, fmt.Errorf("jaeger: /api/traces: %d %s (trace %s)", e.Code, e.Msg, e.TraceID)
	}
	traces := make([]Trace, 0, len(resp.Data))
	for _, wt := range resp.Data {
		tr := Trace{TraceID: normTraceID(wt.TraceID), Spans: make([]Span, 0, len(wt.Spans))}
		for _, ws := range wt.Spans {
			s := ws.Span
			s.TraceID = normTraceID(s.TraceID)
			s.SpanID = strings.ToLower(s.SpanID)
			for i := range s.References {
				s.References[i].TraceID = normTraceID(s.References[i].TraceID)
				s.References[i].SpanID = strings.ToLower(s.References[i].SpanID)
			}
			if p, ok := wt.Processes[ws.ProcessID]; ok && s.Process.ServiceName == "" {
				s.Process = p
			}
			tr.Spans = append(tr.Spans, s)
		}
		traces = append(traces, tr)
	}
	return traces, nil
}

// WaitTrace polls Traces(service) until it holds traceID (hex, as
// trace.TraceID.String gives it) and returns that trace, failing the test
// after timeout. The trace is returned as soon as Jaeger has any of its
// spans; a test expecting several should poll again until all are there.
func (j *Jaeger) WaitTrace(t testing.TB, service, traceID string, timeout time.Duration) Trace {
	t.Helper()
	want := normTraceID(traceID)
	var (
		found   Trace
		lastErr error
		seen    []string
	)
	ok := poll(timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		traces, err := j.Traces(ctx, service)
		if err != nil {
			lastErr = err
			return false
		}
		lastErr, seen = nil, seen[:0]
		for _, tr := range traces {
			if tr.TraceID == want {
				found = tr
				return true
			}
			seen = append(seen, tr.TraceID)
		}
		return false
	})
	if !ok {
		if lastErr != nil {
			t.Fatalf("jaeger: trace %s of service %q not found after %v: %v", want, service, timeout, lastErr)
		}
		t.Fatalf("jaeger: trace %s of service %q not found after %v; the service has %d other trace(s): %v",
			want, service, timeout, len(seen), seen)
	}
	return found
}

// normTraceID makes IDs from the API and from OpenTelemetry comparable:
// Jaeger prints 64-bit trace IDs as 16 digits.
func normTraceID(id string) string {
	id = strings.ToLower(id)
	if n := len(id); n < 32 {
		id = strings.Repeat("0", 32-n) + id
	}
	return id
}

func (j *Jaeger) get(ctx context.Context, pathAndQuery string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.QueryURL+pathAndQuery, nil)
	if err != nil {
		return nil, err
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", pathAndQuery, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}
