package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// RouteBody edits JSON bodies: the request's before it is sent on, the
// answer's before the client (and the cache) gets it. Edits apply in
// order.
type RouteBody struct {
	Request  []BodyEdit `json:"request,omitempty"`
	Response []BodyEdit `json:"response,omitempty"`
	// XML: the service speaks plain XML (not SOAP). A JSON request body
	// ({"order":{...}}: one member, the root element) is sent as XML, and
	// an XML answer comes back as JSON of the same form; the edits apply
	// to the JSON side.
	XML bool `json:"xml,omitempty"`
}

// BodyEdit is one edit of a JSON body, by JSON pointer (RFC 6901):
//
//	{"op":"set","path":"/meta/source","value":"gateway"}  add or replace (missing objects on the way are created)
//	{"op":"remove","path":"/internal"}
//	{"op":"move","path":"/user/id","to":"/user_id"}
//	{"op":"rename","path":"/usr","to":"user"}              the member keeps its place in its object
//
// An edit whose path is absent does nothing (as a header edit of an
// absent header).
type BodyEdit struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	To    string          `json:"to,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
}

// Body edit operations.
const (
	BodySet    = "set"
	BodyRemove = "remove"
	BodyMove   = "move"
	BodyRename = "rename"
)

// ParsePointer splits a JSON pointer (RFC 6901) into its reference tokens,
// unescaped. The data plane compiles edits with it; validation refuses
// what it refuses.
func ParsePointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if !strings.HasPrefix(p, "/") {
		return nil, errors.New("a JSON pointer starts with '/'")
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		for j := 0; j < len(s); j++ {
			if s[j] == '~' && (j+1 == len(s) || (s[j+1] != '0' && s[j+1] != '1')) {
				return nil, fmt.Errorf("%q: '~' must be followed by 0 or 1", p)
			}
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

// validateBody checks a route's body edits.
func (r *Route) validateBody(l *errorList, p string) {
	if r.Body == nil {
		return
	}
	for _, side := range []struct {
		name  string
		edits []BodyEdit
	}{{"request", r.Body.Request}, {"response", r.Body.Response}} {
		fp := join(p, "body."+side.name)
		if len(side.edits) > MaxEdits {
			l.add(fp, "at most %d edits", MaxEdits)
			continue
		}
		for i, e := range side.edits {
			validateBodyEdit(l, fmt.Sprintf("%s[%d]", fp, i), &e)
		}
	}
}

func validateBodyEdit(l *errorList, fp string, e *BodyEdit) {
	path, err := ParsePointer(e.Path)
	switch {
	case err != nil:
		l.add(fp+".path", "%v", err)
		return
	case len(path) == 0:
		l.add(fp+".path", "must point into the body, not be the whole body (\"\")")
		return
	}
	switch e.Op {
	case BodySet:
		if len(e.Value) == 0 {
			l.add(fp+".value", "is required for set (null is a value: write null)")
		} else if !json.Valid(e.Value) {
			l.add(fp+".value", "is not valid JSON")
		}
		if e.To != "" {
			l.add(fp+".to", "only applies to move and rename")
		}
	case BodyRemove:
		if e.To != "" || len(e.Value) > 0 {
			l.add(fp, "remove takes only a path")
		}
	case BodyMove:
		to, err := ParsePointer(e.To)
		switch {
		case err != nil:
			l.add(fp+".to", "%v", err)
		case len(to) == 0:
			l.add(fp+".to", "is required: the pointer to move to")
		case e.To == e.Path || strings.HasPrefix(e.To, e.Path+"/"):
			l.add(fp+".to", "cannot be the path or inside it")
		}
		if len(e.Value) > 0 {
			l.add(fp+".value", "only applies to set")
		}
	case BodyRename:
		if e.To == "" {
			l.add(fp+".to", "is required: the member's new name")
		}
		if len(e.Value) > 0 {
			l.add(fp+".value", "only applies to set")
		}
	default:
		l.add(fp+".op", "must be set, remove, move or rename")
	}
}
