package router

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/portico-gw/portico/shared/config"
)

// Update. Compiling 100,000 rules takes a few hundred milliseconds; a new
// revision usually adds, removes or moves one. Update builds the table for
// the new rule list from t by path copying: the nodes on the paths of the
// rules that changed are copied and edited, every other node is shared with
// t, which is left as it is (tables are immutable; t may be serving).
//
// Rules inside a table have internal ids that never change while the rule
// stays; Match translates them to the rule's index in the current list
// through ext, so a rule inserted in the middle of the list (routes are in
// name order) renumbers the list without touching the trie.

// ErrUpdate means Update could not apply the change as described (a rule
// to remove is not where its patterns say); compile from scratch instead.
var ErrUpdate = errors.New("router: update does not match the table")

// Change describes the new rule list relative to the one t was built from:
// Kept[i] is the new index of t's rule i, or -1 when that rule is removed
// (a rule whose matching part changed is removed and added); Removed holds
// the removed rules as they were (their patterns locate them); Added the new
// rules by new index. Len is the length of the new list.
type Change struct {
	Kept    []int
	Removed map[int]Rule
	Added   map[int]Rule
	Len     int
}

// Update returns the table for the rule list c describes. An error means a
// new rule is invalid or claims what another claims (as Compile would say,
// with the rule's new index), or ErrUpdate.
func (t *Table) Update(c Change) (*Table, error) {
	if len(c.Kept) != t.rules {
		return nil, fmt.Errorf("%w: %d rules kept or removed, the table has %d", ErrUpdate, len(c.Kept), t.rules)
	}
	ids := t.extOrIdentity()
	nt := &Table{
		rules:   c.Len,
		exact:   maps.Clone(t.exact),
		wild:    maps.Clone(t.wild),
		wildLen: t.wildLen,
		any:     t.any,
		ext:     make([]int32, len(ids), len(ids)+len(c.Added)),
		free:    slices.Clone(t.free),
	}
	u := &updater{owned: map[*node]bool{}, ownedLeaves: map[*leaf]bool{}}
	for id, e := range ids {
		switch {
		case e < 0:
			nt.ext[id] = -1
		case c.Kept[e] >= 0:
			nt.ext[id] = int32(c.Kept[e])
		default:
			r, ok := c.Removed[int(e)]
			if !ok {
				return nil, fmt.Errorf("%w: rule %d is removed without its patterns", ErrUpdate, e)
			}
			if err := nt.remove(u, int32(id), &r); err != nil {
				return nil, err
			}
			nt.ext[id] = -1
			nt.free = append(nt.free, int32(id))
		}
	}
	for _, ni := range slices.Sorted(maps.Keys(c.Added)) {
		r := c.Added[ni]
		var id int32
		if n := len(nt.free); n > 0 {
			id, nt.free = nt.free[n-1], nt.free[:n-1]
			nt.ext[id] = int32(ni)
		} else {
			id = int32(len(nt.ext))
			nt.ext = append(nt.ext, int32(ni))
		}
		if err := nt.addOwned(u, id, ni, &r); err != nil {
			return nil, err
		}
	}
	return nt, nil
}

// extOrIdentity returns t's id → index map (the identity for a table
// fresh from Compile).
func (t *Table) extOrIdentity() []int32 {
	if t.ext != nil {
		return t.ext
	}
	ext := make([]int32, t.rules)
	for i := range ext {
		ext[i] = int32(i)
	}
	return ext
}

// updater tracks the nodes and leaves copied by one Update: those belong to
// the new table and may be edited in place.
type updater struct {
	owned       map[*node]bool
	ownedLeaves map[*leaf]bool
}

func (u *updater) node(n *node) *node {
	if n == nil {
		n = &node{}
	} else if u.owned[n] {
		return n
	} else {
		c := *n
		c.edges = slices.Clone(n.edges)
		// kids are shared with n, which keeps reading them: the copy
		// records its changes in over (setKid).
		c.over, c.ownKids = maps.Clone(n.over), false
		c.constrained = slices.Clone(n.constrained)
		n = &c
	}
	u.owned[n] = true
	return n
}

func (u *updater) leaf(l *leaf) *leaf {
	if l == nil {
		l = &leaf{}
	} else if u.ownedLeaves[l] {
		return l
	} else {
		c := *l
		c.methods = slices.Clone(l.methods)
		c.any = slices.Clone(l.any)
		l = &c
	}
	u.ownedLeaves[l] = true
	return l
}

// child returns n's (owned) copy of the child for seg, creating it when
// create is set; nil when there is none and create is not.
func (u *updater) child(n *node, seg string, create bool) *node {
	old := n.staticChild(seg, false)
	if old == nil && !create {
		return nil
	}
	c := u.node(old)
	if old == nil {
		// staticChild attaches a fresh node; replace it with ours.
		n.staticChild(seg, true)
	}
	if n.kids != nil {
		n.setKid(seg, c)
	} else {
		for i := range n.edges {
			if n.edges[i].seg == seg {
				n.edges[i].next = c
			}
		}
	}
	return c
}

// groups returns the (owned) roots of the host groups of r.
func (t *Table) ownedRoots(u *updater, r *Rule, create bool) ([]*node, error) {
	var roots []*node
	if len(r.Hosts) == 0 {
		t.any = u.node(t.any)
		return []*node{t.any}, nil
	}
	for _, h := range r.Hosts {
		key, wild, ok := parseHost(h)
		if !ok {
			return nil, fmt.Errorf("host %q is not a lower-case host name or *.wildcard", h)
		}
		m := t.exact
		if wild {
			m = t.wild
		}
		old := m[key]
		if old == nil && !create {
			return nil, fmt.Errorf("%w: no host group %q", ErrUpdate, h)
		}
		n := u.node(old)
		m[key] = n
		if wild {
			t.wildLen[len(key)] = true
		}
		roots = append(roots, n)
	}
	return roots, nil
}

// walk returns the owned leaf for segs under root (nil when absent and not
// create).
func (u *updater) walk(root *node, segs []string, create bool) (*leaf, error) {
	n := root
	for i, s := range segs {
		switch {
		case s == "*" && i == len(segs)-1:
			if n.prefix == nil && !create {
				return nil, nil
			}
			n.prefix = u.leaf(n.prefix)
			return n.prefix, nil
		case s != "" && s[0] == '{':
			if _, src, _ := config.ParamSegment(s); src != "" {
				if !create && !slices.ContainsFunc(n.constrained, func(e constrainedEdge) bool { return e.src == src }) {
					return nil, nil
				}
				c, err := n.constrainedChild(src, u.node)
				if err != nil {
					return nil, err
				}
				n = c
				continue
			}
			if n.param == nil && !create {
				return nil, nil
			}
			n.param = u.node(n.param)
			n = n.param
		default:
			if n = u.child(n, s, create); n == nil {
				return nil, nil
			}
		}
	}
	if n.exact == nil && !create {
		return nil, nil
	}
	n.exact = u.leaf(n.exact)
	return n.exact, nil
}

func (t *Table) remove(u *updater, id int32, r *Rule) error {
	roots, err := t.ownedRoots(u, r, false)
	if err != nil {
		return err
	}
	for _, p := range r.Paths {
		segs := strings.Split(p[1:], "/")
		for _, root := range roots {
			l, _ := u.walk(root, segs, false)
			if l == nil {
				return fmt.Errorf("%w: pattern %q is not in the table", ErrUpdate, p)
			}
			l.any = slices.DeleteFunc(l.any, func(tg *target) bool { return tg.route == int(id) })
			l.methods = slices.DeleteFunc(l.methods, func(mt methodTarget) bool { return mt.t.route == int(id) })
		}
	}
	return nil
}

// addOwned inserts rule r (new index ni, internal id) like Table.add.
func (t *Table) addOwned(u *updater, id int32, ni int, r *Rule) error {
	if len(r.Paths) == 0 {
		return &CompileError{Rule: ni, Path: -1, Err: fmt.Errorf("no paths")}
	}
	for _, m := range r.Methods {
		if !validMethod(m) {
			return &CompileError{Rule: ni, Path: -1, Err: fmt.Errorf("method %q is not an upper-case HTTP method token", m)}
		}
	}
	rk, err := newRank(r)
	if err != nil {
		return &CompileError{Rule: ni, Path: -1, Err: err}
	}
	roots, err := t.ownedRoots(u, r, true)
	if err != nil {
		return &CompileError{Rule: ni, Path: -1, Err: err}
	}
	for pi, p := range r.Paths {
		if _, err := config.PathShape(p); err != nil {
			return &CompileError{Rule: ni, Path: pi, Pattern: p, Err: err}
		}
		tg := &target{route: int(id), path: pi, pattern: p, rank: rk, conds: rk.conds}
		segs := strings.Split(p[1:], "/")
		tg.names = paramNames(segs)
		for _, root := range roots {
			l, err := u.walk(root, segs, true)
			if err == nil {
				err = l.claim(tg, r.Methods)
			}
			if err != nil {
				return &CompileError{Rule: ni, Path: pi, Pattern: p, Err: err}
			}
		}
	}
	return nil
}
