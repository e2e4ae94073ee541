package bodyschema

import (
	"bytes"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/portico-gw/portico/dataplane/internal/stage"
)

// Response validation is report only: the answer streams to the client
// as the service sends it, a copy of at most MaxResponseBytes is kept, and
// after the exchange the copy is checked on a goroutine of its own (at
// most MaxResponseChecks per route at once; more are dropped, never
// queued). The outcome is counted (Env.ResponseChecked: ok, invalid,
// not_json, too_large, dropped) and an invalid answer is logged with its
// failures' pointers. Answers without a schema for their status, that are
// not JSON (by Content-Type) or are encoded (Content-Encoding) are not
// checked or counted.

// MaxResponseBytes bounds the copy of an answer kept for checking.
const MaxResponseBytes = 1 << 20

// MaxResponseChecks bounds the checks of one route running at once.
const MaxResponseChecks = 4

// responses is the response side of a route's validation.
type responses struct {
	route string
	// pick returns the schema for a status, nil for none.
	pick func(status int) *jsonschema.Schema
	sem  chan struct{}
}

func newResponses(route string, pick func(int) *jsonschema.Schema) *responses {
	return &responses{route: route, pick: pick, sem: make(chan struct{}, MaxResponseChecks)}
}

// serve runs next (the request checks, then the rest of the chain) with
// the answer copied, then checks the answer unless next refused the
// request itself.
func (rs *responses) serve(req *stage.Request, next func(*stage.Request) bool) {
	tw := &teeWriter{w: req.W, rs: rs}
	w0 := req.W
	req.W = tw
	handedOn := next(req)
	req.W = w0
	if !handedOn || tw.schema == nil {
		return
	}
	// The request is done with once this returns (and may be reused):
	// the check keeps only what it needs.
	var checked func(route, outcome, detail string)
	if req.Env != nil {
		checked = req.Env.ResponseChecked
	}
	report := func(outcome, detail string) {
		if checked != nil {
			checked(rs.route, outcome, detail)
		}
	}
	if tw.over {
		report("too_large", "")
		return
	}
	select {
	case rs.sem <- struct{}{}:
	default:
		report("dropped", "")
		return
	}
	body, schema, status := tw.buf.Bytes(), tw.schema, tw.status
	go func() {
		defer func() { <-rs.sem }()
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
		if err != nil {
			report("not_json", "status "+strconv.Itoa(status)+": the answer is not JSON")
			return
		}
		if err := schema.Validate(doc); err != nil {
			var b strings.Builder
			b.WriteString("status " + strconv.Itoa(status) + ":")
			for _, f := range failures(err) {
				b.WriteString(" " + strconv.Quote(f.Pointer) + " " + f.Message + ";")
			}
			report("invalid", b.String())
			return
		}
		report("ok", "")
	}()
}

// teeWriter passes an answer on unchanged and keeps a copy of it when it
// is to be checked.
type teeWriter struct {
	w      http.ResponseWriter
	rs     *responses
	status int
	wrote  bool
	schema *jsonschema.Schema // nil: not checked
	buf    bytes.Buffer
	over   bool
}

func (t *teeWriter) Header() http.Header { return t.w.Header() }

func (t *teeWriter) WriteHeader(code int) {
	if !t.wrote && code >= 200 {
		t.wrote, t.status = true, code
		h := t.w.Header()
		if h.Get("Content-Encoding") == "" && isJSONType(h.Get("Content-Type")) {
			t.schema = t.rs.pick(code)
		}
	}
	t.w.WriteHeader(code)
}

func (t *teeWriter) Write(p []byte) (int, error) {
	if !t.wrote {
		t.WriteHeader(http.StatusOK)
	}
	if t.schema != nil && !t.over {
		if t.buf.Len()+len(p) > MaxResponseBytes {
			t.over = true
			t.buf = bytes.Buffer{}
		} else {
			t.buf.Write(p)
		}
	}
	return t.w.Write(p)
}

// Flush keeps streaming answers streaming.
func (t *teeWriter) Flush() { _ = http.NewResponseController(t.w).Flush() }

// Unwrap lets http.ResponseController reach the connection.
func (t *teeWriter) Unwrap() http.ResponseWriter { return t.w }

func isJSONType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}
