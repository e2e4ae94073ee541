package router

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// FuzzAmbiguityMatchesConfig checks that the router and the control plane
// hold one rule of route ambiguity (config/ambiguity.go): for rule lists
// whose routes are each valid on their own, Compile refuses exactly when
// config's Validate finds two routes matching the same requests, and it
// refuses the same route and path (the first Validate reports). So what the
// control plane accepts compiles on every data plane, and what it refuses
// as ambiguous a data plane refuses too instead of picking a winner.
func FuzzAmbiguityMatchesConfig(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x05\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a"))
	f.Add([]byte("\x83\x02\x01\x00\x03\x01\x02\x11\x22\x33\x44\x55\x66\x77"))
	f.Add([]byte("\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"))     // two "/" routes, any method, any host
	f.Add([]byte("\x01\x00\x01\x03\x00\x00\x00\x01\x03\x00\x00")) // "/{p0}" twice
	f.Add([]byte("\x40\x03\x02\x01\x00\x02\x01\x03\x09\x08\x07\x06\x05\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &gen{data: data}
		rules := validOnTheirOwn(g.rules())
		cfg := config.Config{Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://127.0.0.1:1"}}}}}
		for i, r := range rules {
			cfg.Routes = append(cfg.Routes, &config.Route{Name: "r" + strconv.Itoa(i), Service: "s",
				Paths: r.Paths, Methods: r.Methods, Hosts: r.Hosts, Match: r.Match, Priority: r.Priority})
		}
		verr := cfg.Validate()
		if verr != nil && !errors.Is(verr, config.ErrConflict) {
			t.Fatalf("the generator made a route invalid on its own: %v", verr)
		}
		_, cerr := Compile(rules)
		if (verr == nil) != (cerr == nil) {
			t.Fatalf("config.Validate: %v\nrouter.Compile: %v\nrules: %#v", verr, cerr, rules)
		}
		if verr == nil {
			return
		}
		var ce *CompileError
		if !errors.As(cerr, &ce) {
			t.Fatalf("Compile error %v is not a CompileError", cerr)
		}
		route, path := firstConflict(t, verr)
		if ce.Rule != route || ce.Path != path {
			t.Fatalf("router refuses rule %d paths[%d], config first refuses routes[%d].paths[%d]\nconfig: %v\nrouter: %v\nrules: %#v",
				ce.Rule, ce.Path, route, path, verr, cerr, rules)
		}
	})
}

// validOnTheirOwn drops what config refuses in one route by itself (a host
// that is not one, a host listed twice, a second path of the same shape), so
// that only ambiguity between routes is left to compare.
func validOnTheirOwn(rules []Rule) []Rule {
	for i := range rules {
		r := &rules[i]
		var hosts []string
		for _, h := range r.Hosts {
			if config.HostProblem(h) == "" && !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
		r.Hosts = hosts
		var paths, shapes []string
		for _, p := range r.Paths {
			if s, err := config.PathShape(p); err == nil && !slices.Contains(shapes, s) {
				paths, shapes = append(paths, p), append(shapes, s)
			}
		}
		r.Paths = paths
	}
	return rules
}

// firstConflict returns the lowest route index, and its lowest path index,
// among the fields of a config conflict.
func firstConflict(t *testing.T, err error) (route, path int) {
	t.Helper()
	route, path = -1, -1
	for _, f := range config.FieldErrors(err) {
		var r, p int
		if _, serr := fmt.Sscanf(f.Field, "routes[%d].paths[%d]", &r, &p); serr != nil || !strings.Contains(f.Message, "same requests") {
			t.Fatalf("conflict %q is not an ambiguity", f)
		}
		if route < 0 || r < route || r == route && p < path {
			route, path = r, p
		}
	}
	if route < 0 {
		t.Fatalf("conflict without fields: %v", err)
	}
	return route, path
}
