package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/portico-gw/portico/shared/config"
)

// A configuration file is YAML (or JSON, which is YAML) in the shape of
// GET /v1/config's "config": top-level services, routes, consumers, issuers,
// certificates and global. -f names a file or a directory; a directory's
// *.yaml, *.yml and *.json files are read in name order, and every file may
// hold several documents (---). The documents are merged: lists are
// concatenated in order, the global section may appear once. ${NAME} in a
// string value is replaced by the environment variable NAME ($${NAME} keeps
// it literally), after parsing, so a value never changes the YAML around it
// and line numbers stay those of the file.

// Pos is where a value came from.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Source is a loaded configuration: the merged document as JSON and, for
// every field path in it ("routes[3].paths[0]"), the file and line it came
// from.
type Source struct {
	JSON  []byte
	lines map[string]Pos
	files []string
}

// collections are the top-level lists, in the order the merged document
// lists them.
var collections = []string{"services", "routes", "consumers", "issuers", "certificates"}

// errFile is a problem in the files themselves (not in the configuration).
type errFile struct{ msg string }

func (e *errFile) Error() string { return e.msg }

func fileErrorf(p Pos, format string, args ...any) error {
	return &errFile{msg: p.String() + ": " + fmt.Sprintf(format, args...)}
}

// Load reads path (a file, a directory, or "-" for standard input).
func Load(path string, stdin io.Reader, getenv func(string) (string, bool)) (*Source, error) {
	files, err := listFiles(path)
	if err != nil {
		return nil, err
	}
	m := &merger{lists: map[string][]item{}, getenv: getenv}
	for _, f := range files {
		var data []byte
		if f == "-" {
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		if err := m.file(displayName(f), data); err != nil {
			return nil, err
		}
	}
	return m.source(files)
}

func displayName(f string) string {
	if f == "-" {
		return "<stdin>"
	}
	return f
}

func listFiles(path string) ([]string, error) {
	if path == "-" {
		return []string{"-"}, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") && !strings.HasPrefix(e.Name(), ".") {
			files = append(files, filepath.Join(path, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no .yaml, .yml or .json files", path)
	}
	return files, nil // os.ReadDir sorts by name
}

// item is one value of the merged document with the file it came from.
type item struct {
	file string
	node *yaml.Node
	line int // of its key, for the global section
}

type merger struct {
	lists  map[string][]item
	global *item
	getenv func(string) (string, bool)
}

func (m *merger) file(name string, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &errFile{msg: name + ": " + strings.TrimPrefix(err.Error(), "yaml: ")}
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := resolve(doc.Content[0])
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			continue // an empty document
		}
		if root.Kind != yaml.MappingNode {
			return fileErrorf(Pos{name, root.Line}, "a document must be a mapping of services, routes, consumers, issuers, certificates and global")
		}
		for i := 0; i+1 < len(root.Content); i += 2 {
			k, v := root.Content[i], resolve(root.Content[i+1])
			switch key := k.Value; {
			case key == "global":
				if m.global != nil {
					return fileErrorf(Pos{name, k.Line}, "global appears a second time (first in %s:%d)", m.global.file, m.global.line)
				}
				m.global = &item{name, v, k.Line}
			case slices.Contains(collections, key):
				if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
					continue
				}
				if v.Kind != yaml.SequenceNode {
					return fileErrorf(Pos{name, v.Line}, "%s must be a list", key)
				}
				for _, e := range v.Content {
					m.lists[key] = append(m.lists[key], item{file: name, node: e})
				}
			default:
				return fileErrorf(Pos{name, k.Line}, "unknown top-level field %q (want %s or global)", key, strings.Join(collections, ", "))
			}
		}
	}
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// source writes the merged document as JSON, recording where each path
// came from.
func (m *merger) source(files []string) (*Source, error) {
	s := &Source{lines: map[string]Pos{}, files: files}
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	for _, key := range collections {
		items := m.lists[key]
		if len(items) == 0 {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&buf, "%q:[", key)
		for i, it := range items {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := m.write(&buf, s, it.file, fmt.Sprintf("%s[%d]", key, i), it.node, 0); err != nil {
				return nil, err
			}
		}
		buf.WriteByte(']')
	}
	if m.global != nil {
		if !first {
			buf.WriteByte(',')
		}
		buf.WriteString(`"global":`)
		if err := m.write(&buf, s, m.global.file, "global", m.global.node, 0); err != nil {
			return nil, err
		}
	}
	buf.WriteByte('}')
	s.JSON = buf.Bytes()
	return s, nil
}

// maxDepth bounds nesting (and alias loops).
const maxDepth = 64

func (m *merger) write(buf *bytes.Buffer, s *Source, file, path string, n *yaml.Node, depth int) error {
	n = resolve(n)
	pos := Pos{file, n.Line}
	if depth > maxDepth {
		return fileErrorf(pos, "%s: nested too deeply", path)
	}
	s.lines[path] = pos
	switch n.Kind {
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolve(n.Content[i])
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				return fileErrorf(Pos{file, k.Line}, "%s: keys must be plain strings", path)
			}
			if i > 0 {
				buf.WriteByte(',')
			}
			kb, _ := json.Marshal(k.Value)
			buf.Write(kb)
			buf.WriteByte(':')
			child := k.Value
			if path != "" {
				child = path + "." + k.Value
			}
			s.lines[child] = Pos{file, k.Line}
			if err := m.write(buf, s, file, child, n.Content[i+1], depth+1); err != nil {
				return err
			}
			s.lines[child] = Pos{file, k.Line} // the key's line, not its value's
		}
		buf.WriteByte('}')
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, e := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := m.write(buf, s, file, fmt.Sprintf("%s[%d]", path, i), e, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case yaml.ScalarNode:
		return m.scalar(buf, pos, path, n)
	default:
		return fileErrorf(pos, "%s: unsupported YAML", path)
	}
	return nil
}

func (m *merger) scalar(buf *bytes.Buffer, pos Pos, path string, n *yaml.Node) error {
	switch n.Tag {
	case "!!null":
		buf.WriteString("null")
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return fileErrorf(pos, "%s: %v", path, err)
		}
		buf.WriteString(strconv.FormatBool(b))
	case "!!int", "!!float":
		var f any
		if err := n.Decode(&f); err != nil {
			return fileErrorf(pos, "%s: %v", path, err)
		}
		b, err := json.Marshal(f)
		if err != nil {
			return fileErrorf(pos, "%s: %v", path, err)
		}
		buf.Write(b)
	default: // strings, timestamps and anything else: the text as written
		v, err := m.expand(n.Value)
		if err != nil {
			return fileErrorf(pos, "%s: %v", path, err)
		}
		b, _ := json.Marshal(v)
		buf.Write(b)
	}
	return nil
}

var envRef = regexp.MustCompile(`\$\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$\{[A-Za-z_][A-Za-z0-9_]*\}`)

// expand replaces ${NAME} by the environment variable NAME; an unset one is
// an error (an empty secret is never what was meant).
func (m *merger) expand(v string) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(v, func(ref string) string {
		if strings.HasPrefix(ref, "$$") {
			return ref[1:]
		}
		name := ref[2 : len(ref)-1]
		val, ok := m.getenv(name)
		if !ok {
			missing = append(missing, name)
		}
		return val
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set", strings.Join(missing, ", "))
	}
	return out, nil
}

// Where returns the position of a field path of the merged document: the
// path itself, or its nearest ancestor the files hold (a missing field is
// reported at the object that lacks it).
func (s *Source) Where(path string) (Pos, bool) {
	for p := path; p != ""; p = parentPath(p) {
		if pos, ok := s.lines[p]; ok {
			return pos, true
		}
	}
	return Pos{}, false
}

// parentPath drops the last element of a field path: routes[3].paths[0] →
// routes[3].paths → routes[3] → routes → "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i > 0 {
			return p[:i]
		}
		return ""
	}
	if i := strings.LastIndexAny(p, ".["); i > 0 {
		return p[:i]
	}
	return ""
}

// Decode decodes the merged document strictly into a configuration, as the
// control plane decodes PUT /v1/config. encoding/json names a field that
// fails without the list indexes on its way ("routes.timeout"), so on a
// failure each object is decoded on its own to say which one, and the
// field is looked up among the paths the files hold.
func (s *Source) Decode() (*config.Config, error) {
	var cfg config.Config
	err := config.Decode(s.JSON, &cfg)
	if err == nil {
		return &cfg, nil
	}
	if located := s.locate(); located != nil {
		return nil, located
	}
	return nil, err
}

// decoders decode one object of each collection (and the global section).
var decoders = map[string]func([]byte) error{
	"services":     func(b []byte) error { var v config.Service; return config.Decode(b, &v) },
	"routes":       func(b []byte) error { var v config.Route; return config.Decode(b, &v) },
	"consumers":    func(b []byte) error { var v config.Consumer; return config.Decode(b, &v) },
	"issuers":      func(b []byte) error { var v config.Issuer; return config.Decode(b, &v) },
	"certificates": func(b []byte) error { var v config.Certificate; return config.Decode(b, &v) },
	"global":       func(b []byte) error { var v config.Global; return config.Decode(b, &v) },
}

func (s *Source) locate() error {
	var doc map[string]json.RawMessage
	if json.Unmarshal(s.JSON, &doc) != nil {
		return nil
	}
	out := &config.ValidationError{Kind: config.ErrMalformed}
	check := func(prefix string, raw []byte, decode func([]byte) error) {
		for _, f := range config.FieldErrors(decode(raw)) {
			f.Field = s.resolve(prefix, f.Field)
			out.Fields = append(out.Fields, f)
		}
	}
	for _, key := range collections {
		var list []json.RawMessage
		if json.Unmarshal(doc[key], &list) != nil {
			continue
		}
		for i, raw := range list {
			check(fmt.Sprintf("%s[%d]", key, i), raw, decoders[key])
		}
	}
	if raw, ok := doc["global"]; ok {
		check("global", raw, decoders["global"])
	}
	if len(out.Fields) == 0 {
		return nil
	}
	return out
}

var index = regexp.MustCompile(`\[\d+\]`)

// resolve turns a decoder's field name inside the object at prefix
// ("targets.url", or just "stripprefix" for an unknown field) into the
// first path of the files that it names ("routes[1].targets[0].url").
func (s *Source) resolve(prefix, field string) string {
	if field == "" {
		return prefix
	}
	var best string
	bestLine := 0
	for p, pos := range s.lines {
		rest, ok := strings.CutPrefix(p, prefix+".")
		if !ok {
			continue
		}
		bare := index.ReplaceAllString(rest, "")
		if bare == field || !strings.Contains(field, ".") && strings.HasSuffix(bare, "."+field) {
			if best == "" || pos.Line < bestLine {
				best, bestLine = p, pos.Line
			}
		}
	}
	if best == "" {
		return prefix + "." + field
	}
	return best
}

// Check is porticoctl validate: the control plane's own decoding and
// validation of an import (config.Decode, Normalize, Validate), offline.
func (s *Source) Check() (*config.Config, error) {
	cfg, err := s.Decode()
	if err != nil {
		return nil, err
	}
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}
