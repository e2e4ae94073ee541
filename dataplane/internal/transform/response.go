package transform

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// Response is a route's compiled response transformations: header edits
// and CORS on every answer of the route, and CORS preflights answered at
// the gateway. It is the first stage of a chain, so that every answer,
// a refusal of a later stage included, gets them.
type Response struct {
	header *edits
	cors   *cors
}

// CompileResponse compiles r's response header edits and CORS policy (nil
// when it has neither).
func CompileResponse(r *config.Route) stage.Stage {
	t := &Response{header: compileEdits(r.ResponseHeaders, http.CanonicalHeaderKey), cors: compileCORS(r.CORS, r.Methods)}
	if t.header == nil && t.cors == nil {
		return nil
	}
	return t
}

// AnswersPreflight reports whether the route answers CORS preflights (the
// proxy matches a preflight by the method it announces only for such a
// route).
func (t *Response) AnswersPreflight() bool { return t.cors != nil }

// Serve answers a CORS preflight, or arranges for the answer's header to
// be edited whoever writes it.
func (t *Response) Serve(req *stage.Request) {
	if t.cors != nil && IsPreflight(req.R) {
		// The preflight answer is complete as it is: no edits.
		t.cors.preflight(req.W, req.R)
		return
	}
	req.OnResponse(t)
	req.Next()
}

// Respond edits h, the header of the route's answer: the edits, then CORS.
// The gateway owns CORS on such a route, so whatever the service said
// about it is replaced.
func (t *Response) Respond(req *stage.Request, h http.Header) {
	if t.header != nil {
		t.header.applyHeaders(h, req)
	}
	if t.cors != nil {
		t.cors.respond(h, req.R.Header.Get("Origin"))
	}
}

// Describe renders the edits and the CORS policy, for golden files.
func (t *Response) Describe() any {
	return struct {
		Headers any `json:"headers,omitempty"`
		CORS    any `json:"cors,omitempty"`
	}{t.header.describe(), t.cors.describe()}
}

// cors is a route's compiled CORS policy.
type cors struct {
	any         bool // "*"
	exact       map[string]bool
	suffixes    []suffix // "https://*.example.com"
	credentials bool
	methods     string
	headers     string // "" means echo what the preflight asks for
	expose      string
	maxAge      string
}

type suffix struct{ scheme, suffix string }

func compileCORS(c *config.CORS, routeMethods []string) *cors {
	if c == nil {
		return nil
	}
	out := &cors{exact: map[string]bool{}, credentials: c.AllowCredentials}
	for _, o := range c.AllowOrigins {
		switch {
		case o == "*":
			out.any = true
		case strings.Contains(o, "://*."):
			scheme, rest, _ := strings.Cut(o, "://*")
			out.suffixes = append(out.suffixes, suffix{scheme + "://", strings.ToLower(rest)})
		default:
			out.exact[strings.ToLower(o)] = true
		}
	}
	methods := c.AllowMethods
	if len(methods) == 0 {
		methods = routeMethods
	}
	if len(methods) == 0 {
		methods = []string{http.MethodGet, http.MethodHead, http.MethodPost}
	}
	out.methods = strings.Join(methods, ", ")
	if !slices.Contains(c.AllowHeaders, "*") {
		out.headers = strings.Join(c.AllowHeaders, ", ")
	}
	out.expose = strings.Join(c.ExposeHeaders, ", ")
	age := c.MaxAge.Std()
	if age == 0 {
		age = config.DefaultCORSMaxAge
	}
	out.maxAge = strconv.Itoa(int(age.Seconds()))
	return out
}

func (c *cors) allows(origin string) bool {
	if origin == "" {
		return false
	}
	if c.any {
		return true
	}
	o := strings.ToLower(origin)
	if c.exact[o] {
		return true
	}
	for _, s := range c.suffixes {
		host, ok := strings.CutPrefix(o, s.scheme)
		if ok && strings.HasSuffix(host, s.suffix) && len(host) > len(s.suffix) && !strings.ContainsAny(host, "/?#@") {
			return true
		}
	}
	return false
}

// IsPreflight reports a CORS preflight request (Fetch standard §3.2.2).
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// preflight answers a CORS preflight at the gateway: the service never
// sees it.
func (c *cors) preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	origin := r.Header.Get("Origin")
	if !c.allows(origin) {
		stage.WriteProblem(w, r, http.StatusForbidden, "cors-origin", "origin "+strconv.Quote(origin)+" is not allowed")
		return
	}
	c.allowOrigin(h, origin)
	h.Set("Access-Control-Allow-Methods", c.methods)
	if c.headers != "" {
		h.Set("Access-Control-Allow-Headers", c.headers)
	} else if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	}
	h.Set("Access-Control-Max-Age", c.maxAge)
	w.WriteHeader(http.StatusNoContent)
}

func (c *cors) allowOrigin(h http.Header, origin string) {
	if c.any && !c.credentials {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if c.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// respond adds the CORS headers to an actual (non-preflight) response.
func (c *cors) respond(h http.Header, origin string) {
	for _, name := range corsHeaders {
		delete(h, name)
	}
	if !c.any || c.credentials {
		h.Add("Vary", "Origin")
	}
	if !c.allows(origin) {
		return
	}
	c.allowOrigin(h, origin)
	if c.expose != "" {
		h.Set("Access-Control-Expose-Headers", c.expose)
	}
}

var corsHeaders = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
	"Access-Control-Expose-Headers", "Access-Control-Allow-Methods",
	"Access-Control-Allow-Headers", "Access-Control-Max-Age",
}

// describe renders the policy as data (nil for none).
func (c *cors) describe() any {
	if c == nil {
		return nil
	}
	exact := make([]string, 0, len(c.exact))
	for o := range c.exact {
		exact = append(exact, o)
	}
	slices.Sort(exact)
	var suffixes []string
	for _, s := range c.suffixes {
		suffixes = append(suffixes, s.scheme+"*"+s.suffix)
	}
	return struct {
		Any         bool     `json:"any_origin,omitempty"`
		Origins     []string `json:"origins,omitempty"`
		Suffixes    []string `json:"origin_suffixes,omitempty"`
		Credentials bool     `json:"credentials,omitempty"`
		Methods     string   `json:"methods"`
		Headers     string   `json:"headers,omitempty"`
		Expose      string   `json:"expose,omitempty"`
		MaxAge      string   `json:"max_age"`
	}{c.any, exact, suffixes, c.credentials, c.methods, c.headers, c.expose, c.maxAge}
}
