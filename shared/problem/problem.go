// Package problem writes and reads RFC 9457 problem details
// (application/problem+json), the one error format of every Portico HTTP API:
// the admin API, the sync API and errors the data plane itself answers.
package problem

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/portico-gw/portico/shared/config"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// Problem is an RFC 9457 problem details object. Errors is an extension
// member listing the fields that failed validation.
type Problem struct {
	Type     string              `json:"type"`
	Title    string              `json:"title"`
	Status   int                 `json:"status"`
	Detail   string              `json:"detail,omitempty"`
	Instance string              `json:"instance,omitempty"`
	Errors   []config.FieldError `json:"errors,omitempty"`
	// Extensions are further members (RFC 9457 §3.2), written after the
	// standard ones; names that collide with those are ignored.
	Extensions map[string]any `json:"-"`
}

// MarshalJSON writes the standard members, then the extensions in name
// order.
func (p *Problem) MarshalJSON() ([]byte, error) {
	type plain Problem
	body, err := json.Marshal((*plain)(p))
	if err != nil || len(p.Extensions) == 0 {
		return body, err
	}
	body = body[:len(body)-1]
	for _, k := range slices.Sorted(maps.Keys(p.Extensions)) {
		switch k {
		case "type", "title", "status", "detail", "instance", "errors":
			continue
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		vb, err := json.Marshal(p.Extensions[k])
		if err != nil {
			return nil, fmt.Errorf("problem extension %s: %w", k, err)
		}
		body = append(append(append(append(body, ','), kb...), ':'), vb...)
	}
	return append(body, '}'), nil
}

// Error makes a Problem usable as a Go error on the client side.
func (p *Problem) Error() string {
	s := strconv.Itoa(p.Status) + " " + p.Title
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	for _, f := range p.Errors {
		s += "; " + f.Error()
	}
	return s
}

// New builds a problem whose type is a stable URN derived from slug, so that
// clients can branch on it without parsing titles.
func New(status int, slug, detail string) *Problem {
	return &Problem{Type: TypeURI(slug), Title: http.StatusText(status), Status: status, Detail: detail}
}

// Newf is New with a formatted detail.
func Newf(status int, slug, format string, args ...any) *Problem {
	return New(status, slug, fmt.Sprintf(format, args...))
}

// TypeURI returns the type URI of a problem slug.
func TypeURI(slug string) string { return "urn:portico:problem:" + slug }

// Write sends p as the response. Problems are never cached.
func Write(w http.ResponseWriter, p *Problem) {
	body, err := json.Marshal(p)
	if err != nil {
		// Only an extension that cannot be encoded fails here.
		body = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}
