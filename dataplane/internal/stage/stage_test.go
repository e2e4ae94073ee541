package stage

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/portico-gw/portico/dataplane/internal/router"
)

// step is a stage that notes its turn and answers or hands on.
type step struct {
	name   string
	answer bool
	log    *[]string
}

func (s *step) Serve(req *Request) {
	*s.log = append(*s.log, s.name)
	if s.answer {
		req.W.WriteHeader(http.StatusTeapot)
		return
	}
	req.Next()
	*s.log = append(*s.log, "/"+s.name)
}

func (s *step) Describe() any { return s.name }

// outStep is a step with an Outbound hook.
type outStep struct{ step }

func (s *outStep) Outbound(_ *Request, out *http.Request) {
	out.Header.Set("X-Order", out.Header.Get("X-Order")+s.name)
}

type idWriter struct{}

func (idWriter) WriteIdentity(req *Request, h http.Header) {
	h.Set(HeaderConsumer, req.Identity.Consumer)
	h.Set("X-Order", h.Get("X-Order")+"id")
}

func TestChainRunsInOrder(t *testing.T) {
	var log []string
	a, b := &step{name: "a", log: &log}, &step{name: "b", log: &log}
	end := &step{name: "end", answer: true, log: &log}
	var nilStage Stage
	tests := []struct {
		name   string
		chain  *Chain
		want   []string
		status int
	}{
		{"stages wrap the rest", NewChain(a, nilStage, b, end), []string{"a", "b", "end", "/b", "/a"}, http.StatusTeapot},
		{"an answer ends the chain", NewChain(end, a), []string{"end"}, http.StatusTeapot},
		{"no terminal stage", NewChain(a), []string{"a", "/a"}, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log = nil
			w := httptest.NewRecorder()
			req := &Request{W: w, R: httptest.NewRequest(http.MethodGet, "/x", nil)}
			req.Run(tt.chain)
			if !slices.Equal(log, tt.want) || w.Code != tt.status {
				t.Fatalf("ran %v, answered %d; want %v, %d", log, w.Code, tt.want, tt.status)
			}
		})
	}
	if got := len(NewChain(a, nilStage, nil, b).Stages()); got != 2 {
		t.Errorf("NewChain kept %d stages of 2 and two nils", got)
	}
	if s, ok := Find[*step](NewChain(a, b)); !ok || s != a {
		t.Errorf("Find = %v, %v; want the first *step", s, ok)
	}
	if _, ok := Find[*outStep](nil); ok {
		t.Error("Find found a stage in a nil chain")
	}
	if First(nil, b, a) != b || First(nil, nil) != nil {
		t.Error("First does not return the first non-nil stage")
	}
}

// TestOutboundOrder: Outbound hooks run innermost stage first, and the
// identity is written last, after the client's copies are removed.
func TestOutboundOrder(t *testing.T) {
	var log []string
	outer, inner := &outStep{step{name: "outer", log: &log}}, &outStep{step{name: "inner", log: &log}}
	req := &Request{chain: NewChain(outer, inner)}
	req.Authenticated(&Identity{Consumer: "alice"}, idWriter{})
	out := httptest.NewRequest(http.MethodGet, "/", nil)
	out.Header.Set(HeaderAuthMethod, "forged")
	req.Outbound(out)
	if got := out.Header.Get("X-Order"); got != "innerouterid" {
		t.Errorf("hooks ran as %q, want innerouterid", got)
	}
	if out.Header.Get(HeaderConsumer) != "alice" || out.Header.Get(HeaderAuthMethod) != "" {
		t.Errorf("identity headers: %v", out.Header)
	}
	if req.Outcome.Consumer != "alice" {
		t.Errorf("outcome consumer %q", req.Outcome.Consumer)
	}

	// Without an auth stage, WriteIdentity only removes.
	h := http.Header{HeaderConsumer: {"mallory"}, HeaderConsumerGroups: {"admin"}}
	(&Request{}).WriteIdentity(h)
	if len(h) != 0 {
		t.Errorf("client identity headers kept: %v", h)
	}
}

func TestParam(t *testing.T) {
	rt, err := router.Compile([]router.Rule{{Paths: []string{"/users/{id}/files/*"}}})
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{Path: "/users/7/files/a/b.txt"}
	if !rt.Match("h", "GET", req.Path, &req.Match) {
		t.Fatal("no match")
	}
	for name, want := range map[string]string{"id": "7", "*": "a/b.txt", "other": ""} {
		if got := req.Param(name); got != want {
			t.Errorf("Param(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestServeHTTP: a stage that wraps the rest of the chain as an
// http.Handler hands it its own writer and request, and gets them back.
func TestServeHTTP(t *testing.T) {
	var log []string
	var seen string
	end := &step{name: "end", answer: true, log: &log}
	w0 := httptest.NewRecorder()
	r0 := httptest.NewRequest(http.MethodGet, "/outer", nil)
	req := &Request{W: w0, R: r0, chain: NewChain(end)}
	w1 := httptest.NewRecorder()
	req.ServeHTTP(w1, httptest.NewRequest(http.MethodGet, "/inner", nil))
	seen = strings.Join(log, ",")
	if w1.Code != http.StatusTeapot || w0.Code != http.StatusOK || seen != "end" {
		t.Fatalf("inner %d outer %d ran %s", w1.Code, w0.Code, seen)
	}
	if req.W != w0 || req.R != r0 {
		t.Error("ServeHTTP did not restore the request's writer and request")
	}
}
