package ctl

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The control plane never returns TLS private keys, client keys or SOAP
// passwords. What it does return that is still a secret is written by dump
// as a ${PORTICO_SECRET_...} reference instead, which apply and diff read
// back from the environment: the file can go to git, the value to the CI's
// secret store. --show-secrets writes the values.

// secretFields are member names whose string values are secrets wherever
// they appear ("key" is not among them: rate limits and cache keys use it).
var secretFields = map[string]bool{
	"secret": true, "client_secret": true, "password": true, "session_key": true,
	"client_key": true, "private_key": true,
}

// redact replaces the secrets of an exported configuration with
// environment references and returns the names of the variables, sorted.
func redact(cfg *yaml.Node) []string {
	var vars []string
	ref := func(n *yaml.Node, parts ...string) {
		name := "PORTICO_SECRET_" + envName(strings.Join(parts, "_"))
		vars = append(vars, name)
		*n = *strNode("${" + name + "}")
	}
	// An HMAC issuer's keys are shared secrets; public keys are not.
	for _, is := range items(get(cfg, "issuers")) {
		if !hmacIssuer(is) {
			continue
		}
		for i, k := range items(get(is, "keys")) {
			if !isRef(k.Value) {
				ref(k, "ISSUER", nameOf(is), "KEY", fmt.Sprint(i))
			}
		}
	}
	for _, c := range items(get(cfg, "certificates")) {
		if k := get(c, "key"); k != nil && k.Value != "" && !isRef(k.Value) {
			ref(k, "CERTIFICATE", nameOf(c), "KEY")
		}
	}
	for _, kind := range collections {
		for _, obj := range items(get(cfg, kind)) {
			walkSecrets(obj, []string{strings.TrimSuffix(kind, "s"), nameOf(obj)}, ref)
		}
	}
	if g := get(cfg, "global"); g != nil {
		walkSecrets(g, []string{"GLOBAL"}, ref)
	}
	slices.Sort(vars)
	return slices.Compact(vars)
}

func walkSecrets(n *yaml.Node, path []string, ref func(n *yaml.Node, parts ...string)) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			p := append(slices.Clip(path), k)
			if secretFields[k] && v.Kind == yaml.ScalarNode && v.Tag == "!!str" && v.Value != "" && !isRef(v.Value) {
				ref(v, p...)
				continue
			}
			walkSecrets(v, p, ref)
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			walkSecrets(e, append(slices.Clip(path), fmt.Sprint(i)), ref)
		}
	}
}

func nameOf(obj *yaml.Node) string {
	if n := get(obj, "name"); n != nil {
		return n.Value
	}
	return ""
}

var refOnly = regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*\}$`)

func isRef(s string) bool { return refOnly.MatchString(s) }

func hmacIssuer(is *yaml.Node) bool {
	for _, a := range items(get(is, "algorithms")) {
		if strings.HasPrefix(strings.ToUpper(a.Value), "HS") {
			return true
		}
	}
	return false
}

var nonAlnum = regexp.MustCompile(`[^A-Z0-9]+`)

func envName(s string) string {
	return strings.Trim(nonAlnum.ReplaceAllString(strings.ToUpper(s), "_"), "_")
}
