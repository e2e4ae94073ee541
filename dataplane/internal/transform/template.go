package transform

import (
	"fmt"
	"strings"

	"github.com/portico-gw/portico/shared/config"
)

// Params resolves a template's {name} placeholders for one request
// (*stage.Request does, from the route match).
type Params interface {
	Param(name string) string
}

// Template is a compiled value template: literal text and {name}
// placeholders, split once at compile time so that expanding it per request
// is a single pass with no parsing. Rewrites, header and query edits, and
// aggregation's backend paths are templates.
type Template struct {
	parts []config.TemplatePart
}

// CompileTemplate compiles a template the configuration already validated.
func CompileTemplate(s string) Template {
	parts, err := config.ParseTemplate(s)
	if err != nil { // validation refuses this; keep the text as it is
		parts = []config.TemplatePart{{Lit: s}}
	}
	return Template{parts: parts}
}

// Static reports a template without placeholders, and its text.
func (t *Template) Static() (string, bool) {
	switch {
	case len(t.parts) == 0:
		return "", true
	case len(t.parts) == 1 && t.parts[0].Param == "":
		return t.parts[0].Lit, true
	}
	return "", false
}

// IsStatic reports a template without placeholders.
func (t *Template) IsStatic() bool {
	_, ok := t.Static()
	return ok
}

// Expand writes the template with each placeholder replaced by
// esc(p.Param(name)) (esc nil: as it is).
func (t *Template) Expand(p Params, esc func(string) string) string {
	if s, ok := t.Static(); ok {
		return s
	}
	var b strings.Builder
	for _, part := range t.parts {
		if part.Param == "" {
			b.WriteString(part.Lit)
			continue
		}
		v := p.Param(part.Param)
		if esc != nil {
			v = esc(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// String shows the template's parts, for golden files.
func (t Template) String() string { return fmt.Sprintf("%+v", t.parts) }
