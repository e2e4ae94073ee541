package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// Deltas.
//
// A data plane that is current (the control plane still remembers the
// changes since its applied revision, in the same epoch) is sent only the
// objects created, changed or deleted since then: a Delta. The whole
// configuration at 100,000 routes is tens of megabytes of JSON to encode,
// send, decode and compile per write; a delta is a few objects.
//
// A delta names its Base revision and carries the Digest of the whole
// configuration it produces. The Digest is a multiset hash: the sum, modulo
// 2^256, of SHA-256(kind, 0, JSON of the object) over every object and the
// global section, so that it moves with each changed object without hashing
// the rest again (Digest.Advance). A data plane applies the delta to its
// applied configuration, advances its digest and compares: a mismatch means
// the base was not what the control plane thought, and the data plane asks
// for the full snapshot instead. The full snapshot (with its checksum over
// the exact bytes sent) stays the fallback for a new node, a node too far
// behind, and an epoch change.

// ErrDigest means a delta did not produce the configuration it describes.
var ErrDigest = errors.New("delta digest mismatch")

// Delta is the change from revision Base to Revision: the created or
// changed objects whole, and the names of the deleted ones.
type Delta struct {
	Base      int64     `json:"base"`
	Revision  int64     `json:"revision"`
	Epoch     Epoch     `json:"epoch,omitzero"`
	Digest    string    `json:"digest"`
	CreatedAt time.Time `json:"created_at"`

	Services     []config.Service     `json:"services,omitempty"`
	Routes       []*config.Route      `json:"routes,omitempty"`
	Consumers    []config.Consumer    `json:"consumers,omitempty"`
	Issuers      []config.Issuer      `json:"issuers,omitempty"`
	Certificates []config.Certificate `json:"certificates,omitempty"`
	// Global is the new global section, nil when it did not change.
	Global  *config.Global `json:"global,omitempty"`
	Deleted Deleted        `json:"deleted,omitzero"`
}

// Deleted names the objects a delta removes.
type Deleted struct {
	Services     []string `json:"services,omitempty"`
	Routes       []string `json:"routes,omitempty"`
	Consumers    []string `json:"consumers,omitempty"`
	Issuers      []string `json:"issuers,omitempty"`
	Certificates []string `json:"certificates,omitempty"`
}

// Touched names, per kind, the objects that differ between two
// configurations (created, changed or deleted), and whether the global
// section does.
type Touched struct {
	Services, Routes, Consumers, Issuers, Certificates map[string]struct{}
	Global                                             bool
}

// Change says how a configuration came from an earlier one: it is Base
// with the objects Touched names created, changed or deleted, and nothing
// else (what Delta.Apply returns). A data plane given one compiles only the
// touched objects; a Change that does not describe its configuration (a
// name missing) makes it compile the whole.
type Change struct {
	Base    *Snapshot
	Touched *Touched
}

// Len is the number of objects touched (the global section counts one).
func (t *Touched) Len() int {
	n := len(t.Services) + len(t.Routes) + len(t.Consumers) + len(t.Issuers) + len(t.Certificates)
	if t.Global {
		n++
	}
	return n
}

// Merge adds the names of o to t.
func (t *Touched) Merge(o *Touched) {
	for _, m := range []*map[string]struct{}{&t.Services, &t.Routes, &t.Consumers, &t.Issuers, &t.Certificates} {
		if *m == nil {
			*m = map[string]struct{}{}
		}
	}
	maps.Copy(t.Services, o.Services)
	maps.Copy(t.Routes, o.Routes)
	maps.Copy(t.Consumers, o.Consumers)
	maps.Copy(t.Issuers, o.Issuers)
	maps.Copy(t.Certificates, o.Certificates)
	t.Global = t.Global || o.Global
}

// Changes lists what differs between old and next, two configurations of
// one history in canonical (sorted) order. An object counts as unchanged
// when its name and its metadata (version and revision) are the same: the
// control plane moves both on every write of an object, so comparing them
// costs a few string compares per object instead of a deep comparison.
// Routes, held by pointer, that both configurations share (the same
// pointer: one write to the next shares all it did not touch) are passed
// over without reading them: at 100,000 routes, reading each route's name
// and metadata was a cache miss per route per write.
func Changes(old, next *config.Config) Touched {
	t := Touched{
		Services: diffNames(old.Services, next.Services, nil, func(s *config.Service) (string, *config.Meta) { return s.Name, &s.Meta }),
		Routes: diffNames(old.Routes, next.Routes, func(a, b **config.Route) bool { return *a == *b },
			func(r **config.Route) (string, *config.Meta) { return (*r).Name, &(*r).Meta }),
		Consumers:    diffNames(old.Consumers, next.Consumers, nil, func(c *config.Consumer) (string, *config.Meta) { return c.Name, &c.Meta }),
		Issuers:      diffNames(old.Issuers, next.Issuers, nil, func(i *config.Issuer) (string, *config.Meta) { return i.Name, &i.Meta }),
		Certificates: diffNames(old.Certificates, next.Certificates, nil, func(c *config.Certificate) (string, *config.Meta) { return c.Name, &c.Meta }),
		Global:       !reflect.DeepEqual(old.Global, next.Global),
	}
	return t
}

// diffNames merges two name-sorted lists. Objects without metadata (a
// version of 0) are compared whole. same, when not nil, says two elements
// are the same object (unchanged), without reading it.
func diffNames[T any](a, b []T, same func(*T, *T) bool, key func(*T) (string, *config.Meta)) map[string]struct{} {
	out := map[string]struct{}{}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		if same != nil && i < len(a) && j < len(b) && same(&a[i], &b[j]) {
			i++
			j++
			continue
		}
		switch {
		case j == len(b):
			n, _ := key(&a[i])
			out[n] = struct{}{}
			i++
		case i == len(a):
			n, _ := key(&b[j])
			out[n] = struct{}{}
			j++
		default:
			na, ma := key(&a[i])
			nb, mb := key(&b[j])
			switch c := strings.Compare(na, nb); {
			case c < 0:
				out[na] = struct{}{}
				i++
			case c > 0:
				out[nb] = struct{}{}
				j++
			default:
				if ma.Version != mb.Version || ma.Revision != mb.Revision || ma.Version == 0 && !reflect.DeepEqual(a[i], b[j]) {
					out[na] = struct{}{}
				}
				i++
				j++
			}
		}
	}
	return out
}

// NewDelta builds the delta from base to rev, where cur is the
// configuration at rev and touched what changed since base.
func NewDelta(base, rev int64, ep Epoch, cur *config.Config, touched *Touched, digest Digest, now time.Time) *Delta {
	d := &Delta{Base: base, Revision: rev, Epoch: ep, Digest: digest.String(), CreatedAt: now.UTC()}
	d.Services, d.Deleted.Services = pick(touched.Services, cur.Service)
	d.Routes, d.Deleted.Routes = pick(touched.Routes, func(n string) (**config.Route, bool) { r, ok := cur.Route(n); return &r, ok })
	d.Consumers, d.Deleted.Consumers = pick(touched.Consumers, cur.Consumer)
	d.Issuers, d.Deleted.Issuers = pick(touched.Issuers, cur.Issuer)
	d.Certificates, d.Deleted.Certificates = pick(touched.Certificates, cur.Certificate)
	if touched.Global {
		g := cur.Global
		d.Global = &g
	}
	return d
}

func pick[T any](names map[string]struct{}, get func(string) (*T, bool)) (upserts []T, deleted []string) {
	for _, n := range slices.Sorted(maps.Keys(names)) {
		if o, ok := get(n); ok {
			upserts = append(upserts, *o)
		} else {
			deleted = append(deleted, n)
		}
	}
	return upserts, deleted
}

// EncodeDelta returns the wire form of d.
func EncodeDelta(d *Delta) ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode delta %d..%d: %w", d.Base, d.Revision, err)
	}
	return b, nil
}

// DecodeDelta parses an encoded delta strictly.
func DecodeDelta(data []byte) (*Delta, error) {
	var d Delta
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decode delta: %w", err)
	}
	if d.Base <= 0 || d.Revision <= d.Base {
		return nil, fmt.Errorf("decode delta: revisions %d..%d are not increasing", d.Base, d.Revision)
	}
	if _, err := ParseDigest(d.Digest); err != nil {
		return nil, fmt.Errorf("decode delta %d..%d: %w", d.Base, d.Revision, err)
	}
	if slices.Contains(d.Routes, nil) {
		return nil, fmt.Errorf("decode delta %d..%d: a route is null", d.Base, d.Revision)
	}
	return &d, nil
}

// Apply returns the configuration d produces from base (which it leaves
// as it is: unchanged kinds share base's slices, changed ones are new) and
// the names it touched. Deleting a name base does not have, or an object
// list out of order, means the wrong base: an error.
func (d *Delta) Apply(base *config.Config) (*config.Config, *Touched, error) {
	out := &config.Config{Global: base.Global}
	t := &Touched{}
	var err error
	if out.Services, t.Services, err = merge(base.Services, d.Services, d.Deleted.Services, func(s *config.Service) string { return s.Name }); err != nil {
		return nil, nil, fmt.Errorf("delta %d..%d services: %w", d.Base, d.Revision, err)
	}
	if out.Routes, t.Routes, err = merge(base.Routes, d.Routes, d.Deleted.Routes, func(r **config.Route) string { return (*r).Name }); err != nil {
		return nil, nil, fmt.Errorf("delta %d..%d routes: %w", d.Base, d.Revision, err)
	}
	if out.Consumers, t.Consumers, err = merge(base.Consumers, d.Consumers, d.Deleted.Consumers, func(c *config.Consumer) string { return c.Name }); err != nil {
		return nil, nil, fmt.Errorf("delta %d..%d consumers: %w", d.Base, d.Revision, err)
	}
	if out.Issuers, t.Issuers, err = merge(base.Issuers, d.Issuers, d.Deleted.Issuers, func(i *config.Issuer) string { return i.Name }); err != nil {
		return nil, nil, fmt.Errorf("delta %d..%d issuers: %w", d.Base, d.Revision, err)
	}
	if out.Certificates, t.Certificates, err = merge(base.Certificates, d.Certificates, d.Deleted.Certificates, func(c *config.Certificate) string { return c.Name }); err != nil {
		return nil, nil, fmt.Errorf("delta %d..%d certificates: %w", d.Base, d.Revision, err)
	}
	if d.Global != nil {
		out.Global, t.Global = *d.Global, true
	}
	return out, t, nil
}

// merge applies upserts and deletions to a name-sorted list, keeping it
// sorted. With nothing to do it returns base itself. The unchanged runs
// between two edits are found by binary search and copied whole: at
// 100,000 routes, comparing and appending object by object took tens of
// milliseconds per delta.
func merge[T any](base, upserts []T, deleted []string, name func(*T) string) ([]T, map[string]struct{}, error) {
	touched := make(map[string]struct{}, len(upserts)+len(deleted))
	if len(upserts) == 0 && len(deleted) == 0 {
		return base, touched, nil
	}
	for i := range upserts {
		n := name(&upserts[i])
		if i > 0 && name(&upserts[i-1]) >= n {
			return nil, nil, fmt.Errorf("objects not in name order at %q", n)
		}
		touched[n] = struct{}{}
	}
	gone := slices.Sorted(slices.Values(deleted))
	for k, n := range gone {
		if _, dup := touched[n]; dup {
			return nil, nil, fmt.Errorf("%q is both changed and deleted", n)
		}
		if k > 0 && gone[k-1] == n {
			return nil, nil, fmt.Errorf("%q is deleted twice", n)
		}
		touched[n] = struct{}{}
	}
	out := make([]T, 0, len(base)+len(upserts)-len(gone))
	i, u, g := 0, 0, 0 // next of base, upserts, gone
	for u < len(upserts) || g < len(gone) {
		var n string
		del := u == len(upserts) || g < len(gone) && gone[g] < name(&upserts[u])
		if del {
			n = gone[g]
		} else {
			n = name(&upserts[u])
		}
		k := i + sort.Search(len(base)-i, func(x int) bool { return name(&base[i+x]) >= n })
		out = append(out, base[i:k]...)
		exists := k < len(base) && name(&base[k]) == n
		if exists {
			k++
		}
		if del {
			if !exists {
				return nil, nil, fmt.Errorf("deletes %q, which the base does not have", n)
			}
			g++
		} else {
			out = append(out, upserts[u])
			u++
		}
		i = k
	}
	return append(out, base[i:]...), touched, nil
}

// Digest is the multiset hash of a whole configuration (see the package
// section on deltas). The zero Digest is that of the empty configuration:
// DigestOf counts the global section as its change from the zero one.
type Digest [4]uint64

const digestPrefix = "adhash-sha256:"

// String renders d as "adhash-sha256:<64 hex digits>".
func (d Digest) String() string {
	var b [32]byte
	for i, w := range d {
		binary.BigEndian.PutUint64(b[(3-i)*8:], w)
	}
	return digestPrefix + hex.EncodeToString(b[:])
}

// ParseDigest parses Digest.String's form.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	h, ok := strings.CutPrefix(s, digestPrefix)
	b, err := hex.DecodeString(h)
	if !ok || err != nil || len(b) != 32 {
		return d, fmt.Errorf("digest %q: want %s and 64 hex digits", s, digestPrefix)
	}
	for i := range d {
		d[i] = binary.BigEndian.Uint64(b[(3-i)*8:])
	}
	return d, nil
}

func (d *Digest) add(h [32]byte) {
	var c uint64
	for i := range d {
		d[i], c = bits.Add64(d[i], binary.BigEndian.Uint64(h[(3-i)*8:]), c)
	}
}

func (d *Digest) sub(h [32]byte) {
	var c uint64
	for i := range d {
		d[i], c = bits.Sub64(d[i], binary.BigEndian.Uint64(h[(3-i)*8:]), c)
	}
}

// objectHash is SHA-256 over the kind, a zero byte and the JSON encoding.
func objectHash(kind string, v any) ([32]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return [32]byte{}, fmt.Errorf("digest %s: %w", kind, err)
	}
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(b)
	var out [32]byte
	h.Sum(out[:0])
	return out, nil
}

// DigestOf hashes every object of cfg.
func DigestOf(cfg *config.Config) (Digest, error) {
	var d Digest
	all := &Touched{Global: true}
	for _, p := range []struct {
		set   *map[string]struct{}
		names func() []string
	}{
		{&all.Services, func() []string { return names(cfg.Services, func(s *config.Service) string { return s.Name }) }},
		{&all.Routes, func() []string { return names(cfg.Routes, func(r **config.Route) string { return (*r).Name }) }},
		{&all.Consumers, func() []string { return names(cfg.Consumers, func(c *config.Consumer) string { return c.Name }) }},
		{&all.Issuers, func() []string { return names(cfg.Issuers, func(i *config.Issuer) string { return i.Name }) }},
		{&all.Certificates, func() []string { return names(cfg.Certificates, func(c *config.Certificate) string { return c.Name }) }},
	} {
		*p.set = map[string]struct{}{}
		for _, n := range p.names() {
			(*p.set)[n] = struct{}{}
		}
	}
	return d.Advance(&config.Config{}, cfg, all)
}

func names[T any](list []T, name func(*T) string) []string {
	out := make([]string, len(list))
	for i := range list {
		out[i] = name(&list[i])
	}
	return out
}

// Advance returns the digest of next given d, the digest of old, and the
// objects touched between them: each touched object of old is taken out,
// each of next put in. Both configurations must be in name order.
func (d Digest) Advance(old, next *config.Config, t *Touched) (Digest, error) {
	steps := []struct {
		kind string
		set  map[string]struct{}
		get  func(c *config.Config, n string) (any, bool)
	}{
		{"service", t.Services, func(c *config.Config, n string) (any, bool) { return c.Service(n) }},
		{"route", t.Routes, func(c *config.Config, n string) (any, bool) { return c.Route(n) }},
		{"consumer", t.Consumers, func(c *config.Config, n string) (any, bool) { return c.Consumer(n) }},
		{"issuer", t.Issuers, func(c *config.Config, n string) (any, bool) { return c.Issuer(n) }},
		{"certificate", t.Certificates, func(c *config.Config, n string) (any, bool) { return c.Certificate(n) }},
	}
	for _, s := range steps {
		for n := range s.set {
			for _, side := range []struct {
				cfg *config.Config
				op  func(*Digest, [32]byte)
			}{{old, (*Digest).sub}, {next, (*Digest).add}} {
				o, ok := s.get(side.cfg, n)
				if !ok {
					continue
				}
				h, err := objectHash(s.kind, o)
				if err != nil {
					return Digest{}, err
				}
				side.op(&d, h)
			}
		}
	}
	if t.Global {
		for _, side := range []struct {
			g  *config.Global
			op func(*Digest, [32]byte)
		}{{&old.Global, (*Digest).sub}, {&next.Global, (*Digest).add}} {
			h, err := objectHash("global", side.g)
			if err != nil {
				return Digest{}, err
			}
			side.op(&d, h)
		}
	}
	return d, nil
}

// Compose returns one delta equivalent to applying ds in order to base
// (the configuration at ds[0].Base): the last version of each object
// touched, and the deletions of objects base has. Each delta must start
// where the one before ends, in the same epoch. A data plane replaying its
// journal of deltas at boot applies the composition once instead of
// copying the whole configuration per delta.
func Compose(base *config.Config, ds []*Delta) (*Delta, error) {
	if len(ds) == 0 {
		return nil, errors.New("compose: no deltas")
	}
	for i := 1; i < len(ds); i++ {
		if ds[i].Base != ds[i-1].Revision || ds[i].Epoch.ID != ds[i-1].Epoch.ID {
			return nil, fmt.Errorf("compose: delta %d..%d does not follow %d..%d", ds[i].Base, ds[i].Revision, ds[i-1].Base, ds[i-1].Revision)
		}
	}
	last := ds[len(ds)-1]
	out := &Delta{Base: ds[0].Base, Revision: last.Revision, Epoch: last.Epoch, Digest: last.Digest, CreatedAt: last.CreatedAt}
	out.Services, out.Deleted.Services = composeKind(ds, func(d *Delta) ([]config.Service, []string) { return d.Services, d.Deleted.Services },
		func(s *config.Service) string { return s.Name }, func(n string) bool { _, ok := base.Service(n); return ok })
	out.Routes, out.Deleted.Routes = composeKind(ds, func(d *Delta) ([]*config.Route, []string) { return d.Routes, d.Deleted.Routes },
		func(r **config.Route) string { return (*r).Name }, func(n string) bool { _, ok := base.Route(n); return ok })
	out.Consumers, out.Deleted.Consumers = composeKind(ds, func(d *Delta) ([]config.Consumer, []string) { return d.Consumers, d.Deleted.Consumers },
		func(c *config.Consumer) string { return c.Name }, func(n string) bool { _, ok := base.Consumer(n); return ok })
	out.Issuers, out.Deleted.Issuers = composeKind(ds, func(d *Delta) ([]config.Issuer, []string) { return d.Issuers, d.Deleted.Issuers },
		func(i *config.Issuer) string { return i.Name }, func(n string) bool { _, ok := base.Issuer(n); return ok })
	out.Certificates, out.Deleted.Certificates = composeKind(ds, func(d *Delta) ([]config.Certificate, []string) { return d.Certificates, d.Deleted.Certificates },
		func(c *config.Certificate) string { return c.Name }, func(n string) bool { _, ok := base.Certificate(n); return ok })
	for _, d := range ds {
		if d.Global != nil {
			out.Global = d.Global
		}
	}
	return out, nil
}

func composeKind[T any](ds []*Delta, of func(*Delta) ([]T, []string), name func(*T) string, inBase func(string) bool) (upserts []T, deleted []string) {
	last := map[string]*T{} // nil: deleted
	for _, d := range ds {
		ups, dels := of(d)
		for i := range ups {
			last[name(&ups[i])] = &ups[i]
		}
		for _, n := range dels {
			last[n] = nil
		}
	}
	for _, n := range slices.Sorted(maps.Keys(last)) {
		switch o := last[n]; {
		case o != nil:
			upserts = append(upserts, *o)
		case inBase(n):
			deleted = append(deleted, n)
		}
	}
	return upserts, deleted
}
