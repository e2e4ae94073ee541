package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// The dump and the diff work on YAML nodes made from the API's JSON, which
// keep the order of the members as the Go structs write them (name first),
// where a map would sort them.

// jsonToNode parses JSON into an ordered YAML node.
func jsonToNode(data []byte) (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return jsonNode(dec)
}

// get returns the value of key in a mapping node, or nil.
func get(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// drop removes the members of a mapping node whose key del accepts.
func drop(m *yaml.Node, del func(key string, v *yaml.Node) bool) {
	if m == nil || m.Kind != yaml.MappingNode {
		return
	}
	out := m.Content[:0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if !del(m.Content[i].Value, m.Content[i+1]) {
			out = append(out, m.Content[i], m.Content[i+1])
		}
	}
	m.Content = out
}

// items returns the mapping nodes of a sequence node.
func items(seq *yaml.Node) []*yaml.Node {
	if seq == nil || seq.Kind != yaml.SequenceNode {
		return nil
	}
	return seq.Content
}

// byName finds the item of a collection with that name.
func byName(seq *yaml.Node, name string) *yaml.Node {
	for _, it := range items(seq) {
		if n := get(it, "name"); n != nil && n.Value == name {
			return it
		}
	}
	return nil
}

func mapping(pairs ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: pairs}
}

func strNode(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// encodeYAML writes a node as YAML, indented by two.
func encodeYAML(n *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("render YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// encodeJSON writes a node made by jsonToNode back as indented JSON.
func encodeJSON(n *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	if err := nodeJSON(&buf, n); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func nodeJSON(buf *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(strconv.Quote(n.Content[i].Value))
			buf.WriteByte(':')
			if err := nodeJSON(buf, n.Content[i+1]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, e := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := nodeJSON(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			b, _ := json.Marshal(n.Value)
			buf.Write(b)
		default: // numbers, booleans and null as JSON wrote them
			buf.WriteString(n.Value)
		}
	default:
		return fmt.Errorf("render JSON: unexpected node kind %d", n.Kind)
	}
	return nil
}
