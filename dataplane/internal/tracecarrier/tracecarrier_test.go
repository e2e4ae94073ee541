package tracecarrier

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Header must read and write exactly what propagation.HeaderCarrier does:
// the same headers out of the same context, the same context out of the
// same headers.
func TestSameAsHeaderCarrier(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   http.Header
	}{
		{"none", http.Header{}},
		{"traceparent", http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}},
		{"not sampled with state", http.Header{
			"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"},
			"Tracestate":  {"vendor=opaque,other=x"},
		}},
		{"baggage in two fields", http.Header{
			"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			"Baggage":     {"user=alice", "tier=gold"},
		}},
		{"malformed traceparent", http.Header{"Traceparent": {"00-zz-00f067aa0ba902b7-01"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := prop.Extract(context.Background(), propagation.HeaderCarrier(tc.in))
			got := prop.Extract(context.Background(), Header(tc.in))
			if w, g := trace.SpanContextFromContext(want), trace.SpanContextFromContext(got); !w.Equal(g) {
				t.Errorf("span context %v, want %v", g, w)
			}
			if w, g := baggage.FromContext(want), baggage.FromContext(got); !sameBaggage(w, g) {
				t.Errorf("baggage %q, want %q", g, w)
			}
			wantOut, gotOut := http.Header{"Other": {"kept"}}, http.Header{"Other": {"kept"}}
			prop.Inject(want, propagation.HeaderCarrier(wantOut))
			prop.Inject(got, Header(gotOut))
			if w, g := wantOut, gotOut; len(w) != len(g) {
				t.Fatalf("injected %v, want %v", g, w)
			}
			for k, w := range wantOut {
				g := gotOut[k]
				if k == "Baggage" && len(g) == 1 && len(w) == 1 {
					// Members in map order: compare them as a set.
					wb, err1 := baggage.Parse(w[0])
					gb, err2 := baggage.Parse(g[0])
					if err1 != nil || err2 != nil || !sameBaggage(wb, gb) {
						t.Errorf("%s: %q, want %q", k, g, w)
					}
					continue
				}
				if len(g) != len(w) || (len(w) > 0 && g[0] != w[0]) {
					t.Errorf("%s: %q, want %q", k, g, w)
				}
			}
		})
	}
}

func sameBaggage(a, b baggage.Baggage) bool {
	if a.Len() != b.Len() {
		return false
	}
	for _, m := range a.Members() {
		if b.Member(m.Key()).Value() != m.Value() {
			return false
		}
	}
	return true
}

func TestOtherNamesCanonical(t *testing.T) {
	h := http.Header{}
	Header(h).Set("x-b3-traceid", "abc")
	if got := h.Get("X-B3-Traceid"); got != "abc" {
		t.Errorf("Get after Set = %q; header %v", got, h)
	}
	if got := Header(h).Get("X-B3-TRACEID"); got != "abc" {
		t.Errorf("Get of another case = %q", got)
	}
	if got := Header(h).Keys(); len(got) != 1 || got[0] != "X-B3-Traceid" {
		t.Errorf("Keys = %v", got)
	}
}

// The point of the package: extracting from a request without trace
// context and injecting a context cost nothing but the injected value.
func BenchmarkExtractInject(b *testing.B) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2},
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	for _, c := range []struct {
		name    string
		carrier func(http.Header) propagation.TextMapCarrier
	}{
		{"HeaderCarrier", func(h http.Header) propagation.TextMapCarrier { return propagation.HeaderCarrier(h) }},
		{"tracecarrier", func(h http.Header) propagation.TextMapCarrier { return Header(h) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			in, out := http.Header{"Accept": {"*/*"}}, http.Header{}
			b.ReportAllocs()
			for b.Loop() {
				prop.Extract(context.Background(), c.carrier(in))
				prop.Inject(ctx, c.carrier(out))
			}
		})
	}
}
