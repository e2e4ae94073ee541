package router

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestUpdateMatchesReference: a table carried through random sequences of
// Updates (rules removed, added anywhere in the list, moved to other
// paths, hosts and methods) answers every request like the brute-force
// reference on the current rule list, and the table it was updated from
// keeps answering like the reference on the old list.
func TestUpdateMatchesReference(t *testing.T) {
	hosts := []string{"", "a.com", "*.a.com"}
	methods := []string{"", "GET", "POST"}
	segs := []string{"x", "y", "{p}", "z", "{p:[uv]}"}
	conds := []*config.RouteMatch{nil, {Headers: map[string]config.ValueMatch{"X-A": {Exact: "1"}}}, {Query: map[string]config.ValueMatch{"q": {Prefix: "1"}}}}
	inputs := []*Inputs{nil, {Header: http.Header{"X-A": {"1"}}}, {RawQuery: "q=12"}}
	names := 0
	updates := 0
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 3))
		pattern := func() string {
			var b strings.Builder
			for range 1 + rng.IntN(3) {
				b.WriteString("/" + segs[rng.IntN(len(segs))])
			}
			if rng.IntN(4) == 0 {
				b.WriteString("/*")
			}
			return b.String()
		}
		newRule := func() Rule {
			names++
			r := Rule{Paths: []string{pattern()}, Name: fmt.Sprintf("n%05d", names), Match: conds[rng.IntN(len(conds))], Priority: rng.IntN(2)}
			if h := hosts[rng.IntN(len(hosts))]; h != "" {
				r.Hosts = []string{h}
			}
			if m := methods[rng.IntN(len(methods))]; m != "" {
				r.Methods = []string{m}
			}
			return r
		}
		// valid adds rules only where they claim nothing already claimed.
		valid := func(rules []Rule) bool { return refCompileProblem(rules) == "" }
		var rules []Rule
		for len(rules) < 12 {
			if next := append(slices.Clone(rules), newRule()); valid(next) {
				rules = next
			}
		}
		tab := mustCompile(t, rules)
		for step := range 40 {
			// Build the next list: drop some, insert some anywhere.
			kept := make([]int, len(rules))
			removed := map[int]Rule{}
			var next []Rule
			var from []int // next index → old index, -1 for new
			for i, r := range rules {
				if rng.IntN(6) == 0 {
					kept[i] = -1
					removed[i] = r
					continue
				}
				if rng.IntN(8) == 0 {
					nr := newRule()
					next, from = append(next, nr), append(from, -1)
				}
				next, from = append(next, r), append(from, i)
			}
			for rng.IntN(3) == 0 {
				next, from = append(next, newRule()), append(from, -1)
			}
			if !valid(next) {
				continue
			}
			added := map[int]Rule{}
			for ni, oi := range from {
				if oi < 0 {
					added[ni] = next[ni]
				} else {
					kept[oi] = ni
				}
			}
			nt, err := tab.Update(Change{Kept: kept, Removed: removed, Added: added, Len: len(next)})
			if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			for range 60 {
				host := []string{"a.com", "b.a.com", "c.com"}[rng.IntN(3)]
				method := []string{"GET", "POST", "PUT"}[rng.IntN(3)]
				path := strings.NewReplacer("{p}", "v", "{p:[uv]}", "u", "*", "w").Replace(pattern())
				in := inputs[rng.IntN(len(inputs))]
				checkAgainstReference(t, nt, next, host, method, path, in)
				checkAgainstReference(t, tab, rules, host, method, path, in)
			}
			if nt.Len() != len(next) {
				t.Fatalf("Len = %d, want %d", nt.Len(), len(next))
			}
			tab, rules = nt, next
			updates++
		}
	}
	if updates < 200 {
		t.Fatalf("only %d updates applied: the generator rarely makes a valid list", updates)
	}
}

// TestUpdateWideNode: a node with many static children (kids) updated
// again and again records its changes in over and folds them into a copy
// of kids now and then; every table answers like the reference on its own
// rule list, the one it was updated from included.
func TestUpdateWideNode(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 12))
	seg := func() string { return fmt.Sprintf("s%03d", rng.IntN(400)) }
	names := 0
	newRule := func() Rule {
		names++
		p := "/w/" + seg()
		switch rng.IntN(4) {
		case 0:
			p += "/*"
		case 1:
			p += "/x"
		}
		return Rule{Paths: []string{p}, Name: fmt.Sprintf("n%05d", names)}
	}
	var rules []Rule
	for len(rules) < 60 {
		if next := append(slices.Clone(rules), newRule()); refCompileProblem(next) == "" {
			rules = next
		}
	}
	tab := mustCompile(t, rules)
	wide := func(tab *Table) *node { return tab.any.staticChild("w", false) }
	if wide(tab).kids == nil {
		t.Fatal("the wide node has no kids map")
	}
	overlaid, folded := 0, 0
	for step := range 300 {
		kept := make([]int, len(rules))
		removed := map[int]Rule{}
		var next []Rule
		for i, r := range rules {
			if rng.IntN(40) == 0 {
				kept[i], removed[i] = -1, r
				continue
			}
			kept[i] = len(next)
			next = append(next, r)
		}
		added := map[int]Rule{}
		for range 1 + rng.IntN(3) {
			cand := append(slices.Clone(next), newRule())
			if refCompileProblem(cand) == "" {
				added[len(next)] = cand[len(next)]
				next = cand
			}
		}
		nt, err := tab.Update(Change{Kept: kept, Removed: removed, Added: added, Len: len(next)})
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		for range 30 {
			path := "/w/" + seg() + []string{"", "/x", "/y/z"}[rng.IntN(3)]
			checkAgainstReference(t, nt, next, "a.com", "GET", path, nil)
			checkAgainstReference(t, tab, rules, "a.com", "GET", path, nil)
		}
		if w := wide(nt); w.over != nil {
			overlaid++
		} else if w.ownKids {
			folded++
		}
		tab, rules = nt, next
	}
	if overlaid == 0 || folded == 0 {
		t.Fatalf("updates left changes in over %d times and folded them %d times: both should happen", overlaid, folded)
	}
}

// TestUpdateRefusesConflict: an added rule claiming what a kept one claims
// is refused like Compile refuses it.
func TestUpdateRefusesConflict(t *testing.T) {
	tab := mustCompile(t, []Rule{{Paths: []string{"/a"}}, {Paths: []string{"/b"}}})
	_, err := tab.Update(Change{Kept: []int{0, 1}, Added: map[int]Rule{2: {Paths: []string{"/a"}}}, Len: 3})
	if err == nil {
		t.Fatal("a second rule for /a was accepted")
	}
	if _, err := tab.Update(Change{Kept: []int{-1, 0}, Len: 1}); err == nil {
		t.Fatal("a removal without the removed rule was accepted")
	}
}

func BenchmarkUpdateOneAdd(b *testing.B) {
	for _, n := range []int{5000, 100000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			rules := benchRules(n)
			tab := mustCompile(b, rules)
			kept := make([]int, n)
			for i := range kept {
				kept[i] = i
				if i >= n/2 {
					kept[i] = i + 1
				}
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				add := map[int]Rule{n / 2: {Paths: []string{fmt.Sprintf("/added/%d", i)}}}
				if _, err := tab.Update(Change{Kept: kept, Added: add, Len: n + 1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
