package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/config"
)

// Kind describes one collection of objects so that create, replace, delete
// and the conditional-request rules are written once for all of them.
type Kind[T any] struct {
	Kind  config.Kind
	items collection[T]
	obj   func(*T) config.Object
	// check validates the object against the rest of the configuration,
	// with field paths relative to the object.
	check func(cfg *config.Config, obj *T) error
	// deleteCheck refuses deletes that would break references.
	deleteCheck func(cfg *config.Config, name string) error
	// keep copies fields a PUT may not change from the stored object.
	keep    func(existing, obj *T)
	setName func(obj *T, name string)
}

// The kinds of objects the catalog manages.
var (
	Services = &Kind[config.Service]{
		Kind:        config.KindService,
		items:       values(func(c *config.Config) *[]config.Service { return &c.Services }),
		obj:         func(s *config.Service) config.Object { return s },
		setName:     func(s *config.Service, n string) { s.Name = n },
		deleteCheck: func(c *config.Config, name string) error { return c.CheckServiceDelete(name) },
		// A write may leave tls.client_key out (GET never shows it): the
		// stored key is kept when it matches tls.client_cert.
		keep:  func(existing, obj *config.Service) { config.ServiceKeepsKey(existing, obj) },
		check: func(c *config.Config, s *config.Service) error { return c.CheckService(s) },
	}
	Routes = &Kind[config.Route]{
		Kind:    config.KindRoute,
		items:   pointers(func(c *config.Config) *[]*config.Route { return &c.Routes }),
		obj:     func(r *config.Route) config.Object { return r },
		setName: func(r *config.Route, n string) { r.Name = n },
		// Put runs the same two checks through the catalog's index of
		// path shapes (shapeIndex.checkRoute).
		check: func(c *config.Config, r *config.Route) error {
			return errors.Join(c.CheckRoute(r), c.CheckRouteAuth(r))
		},
	}
	Consumers = &Kind[config.Consumer]{
		Kind:    config.KindConsumer,
		items:   values(func(c *config.Config) *[]config.Consumer { return &c.Consumers }),
		obj:     func(cs *config.Consumer) config.Object { return cs },
		setName: func(cs *config.Consumer, n string) { cs.Name = n },
		check:   func(c *config.Config, cs *config.Consumer) error { return c.CheckConsumer(cs) },
		// API keys and basic-auth credentials are created and revoked
		// through their own endpoints; replacing a consumer must not drop
		// or forge them.
		keep: func(existing, obj *config.Consumer) {
			obj.APIKeys, obj.BasicAuth = existing.APIKeys, existing.BasicAuth
		},
	}
	Issuers = &Kind[config.Issuer]{
		Kind:    config.KindIssuer,
		items:   values(func(c *config.Config) *[]config.Issuer { return &c.Issuers }),
		obj:     func(is *config.Issuer) config.Object { return is },
		setName: func(is *config.Issuer, n string) { is.Name = n },
		check: func(c *config.Config, is *config.Issuer) error {
			return errors.Join(c.CheckIssuer(is), config.CheckIssuerSecrets(is))
		},
		deleteCheck: func(c *config.Config, name string) error { return c.CheckIssuerDelete(name) },
		// A write may leave the client secrets and the session key out
		// (GET never shows them): the stored ones are kept, and a new
		// oidc block gets a generated session key (config/oauth.go).
		keep: func(existing, obj *config.Issuer) { config.IssuerKeepsSecrets(existing, obj) },
	}
	Certificates = &Kind[config.Certificate]{
		Kind:    config.KindCertificate,
		items:   values(func(c *config.Config) *[]config.Certificate { return &c.Certificates }),
		obj:     func(x *config.Certificate) config.Object { return x },
		setName: func(x *config.Certificate, n string) { x.Name = n },
		// A write may leave the key out (GET never shows it): the stored
		// key is kept when it matches the certificate.
		keep: func(existing, obj *config.Certificate) { config.CertificateKeepsKey(existing, obj) },
		// Expiry is checked at write time only (see config.CertificateExpiry).
		check: func(c *config.Config, x *config.Certificate) error {
			if err := c.CheckCertificate(x); err != nil {
				return err
			}
			_, err := config.CertificateExpiry(x, time.Now())
			return err
		},
	}
)

// Precondition carries the conditional-request headers of a write.
type Precondition struct {
	// IfMatch lists acceptable current versions; empty means no condition.
	IfMatch []int64
	// IfMatchAny is "If-Match: *": the object must exist.
	IfMatchAny bool
	// IfNoneMatchAny is "If-None-Match: *": the object must not exist.
	IfNoneMatchAny bool
}

func (p Precondition) check(kind config.Kind, name string, existing *config.Meta) error {
	switch {
	case existing == nil && (p.IfMatchAny || len(p.IfMatch) > 0):
		return fmt.Errorf("%w: %s %q does not exist", ErrPrecondition, kind, name)
	case existing != nil && p.IfNoneMatchAny:
		return fmt.Errorf("%w: %s %q already exists (version %d)", ErrPrecondition, kind, name, existing.Version)
	case existing != nil && len(p.IfMatch) > 0 && !slices.Contains(p.IfMatch, existing.Version):
		return fmt.Errorf("%w: %s %q is at version %d, not %v", ErrPrecondition, kind, name, existing.Version, p.IfMatch)
	}
	return nil
}

// List returns the objects of kind k in the current revision, by name.
func List[T any](c *Catalog, k *Kind[T]) (items []T, revision int64) {
	st := c.Current().State
	return k.items.all(&st.Config), st.Revision
}

// Get returns one object of kind k.
func Get[T any](c *Catalog, k *Kind[T], name string) (T, error) {
	var zero T
	st := c.Current().State
	if i := k.index(&st.Config, name); i >= 0 {
		return *k.items.at(&st.Config, i), nil
	}
	return zero, fmt.Errorf("%s %q: %w", k.Kind, name, ErrNotFound)
}

// index finds name by binary search: every collection a mutation or a
// reader sees is sorted (normalize runs before each publish), and a
// 10,000-route import looks up every route once.
func (k *Kind[T]) index(cfg *config.Config, name string) int {
	n := k.items.len(cfg)
	i := sort.Search(n, func(i int) bool { return k.obj(k.items.at(cfg, i)).ObjectName() >= name })
	if i < n && k.obj(k.items.at(cfg, i)).ObjectName() == name {
		return i
	}
	return -1
}

// insertion is where name goes in cfg's sorted collection.
func (k *Kind[T]) insertion(cfg *config.Config, name string) int {
	return sort.Search(k.items.len(cfg), func(i int) bool { return k.obj(k.items.at(cfg, i)).ObjectName() >= name })
}

// SetName names obj (a PUT body may leave the name to the URL).
func (k *Kind[T]) SetName(obj *T, name string) { k.setName(obj, name) }

// PutMode says whether a write may replace an existing object.
type PutMode int

const (
	// Upsert creates or replaces (PUT on the object's URL).
	Upsert PutMode = iota
	// CreateOnly refuses an existing name with a conflict (POST on the collection).
	CreateOnly
)

// PutResult is what a write returns to the API.
type PutResult[T any] struct {
	Object  T
	Created bool
	Change  *Change
}

// Put validates obj and stores it under its name.
func Put[T any](ctx context.Context, c *Catalog, k *Kind[T], obj T, mode PutMode, pre Precondition, actor Actor) (*PutResult[T], error) {
	o := k.obj(&obj)
	*o.ObjectMeta() = config.Meta{}
	o.Normalize()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	name := o.ObjectName()
	created := false
	change, st, err := c.apply(ctx, actor, func(cur *store.State, next *config.Config, now time.Time) (store.AuditEntry, bool, error) {
		i := k.index(next, name)
		var existing *config.Meta
		if i >= 0 {
			existing = k.obj(k.items.at(next, i)).ObjectMeta()
		}
		if err := pre.check(k.Kind, name, existing); err != nil {
			return store.AuditEntry{}, false, err
		}
		if existing != nil && mode == CreateOnly {
			return store.AuditEntry{}, false, config.Conflict("name", "%s %q already exists", k.Kind, name)
		}
		if k.keep != nil {
			var zero T
			if existing != nil {
				k.keep(k.items.at(next, i), &obj)
			} else {
				k.keep(&zero, &obj)
			}
		}
		if r, ok := any(&obj).(*config.Route); ok {
			// Routes' check, against the routes that share a path
			// shape with r only (claims.go).
			if err := c.shapes.at(cur).checkRoute(next, r); err != nil {
				return store.AuditEntry{}, false, err
			}
			c.checkedRoute = name // checked against everything else in next
		} else if k.check != nil {
			if err := k.check(next, &obj); err != nil {
				return store.AuditEntry{}, false, err
			}
		}
		if existing != nil && config.SameSpec(k.items.at(next, i), &obj) {
			return store.AuditEntry{}, true, nil
		}
		meta := o.ObjectMeta()
		meta.Revision = cur.Revision + 1
		meta.UpdatedAt = now
		action := "update"
		if existing == nil {
			meta.Version, meta.CreatedAt = 1, now
			// In name order: the canonical sort then finds nothing to move.
			k.items.insert(next, k.insertion(next, name), obj)
			action, created = "create", true
		} else {
			meta.Version, meta.CreatedAt = existing.Version+1, existing.CreatedAt
			k.items.set(next, i, obj)
		}
		return store.AuditEntry{Action: action, Kind: k.Kind, Name: name, Version: meta.Version}, false, nil
	})
	if err != nil {
		return nil, err
	}
	i := k.index(&st.Config, name)
	return &PutResult[T]{Object: *k.items.at(&st.Config, i), Created: created, Change: change}, nil
}

// Delete removes the named object.
func Delete[T any](ctx context.Context, c *Catalog, k *Kind[T], name string, pre Precondition, actor Actor) (*Change, error) {
	change, _, err := c.apply(ctx, actor, func(_ *store.State, next *config.Config, _ time.Time) (store.AuditEntry, bool, error) {
		i := k.index(next, name)
		if i < 0 {
			return store.AuditEntry{}, false, fmt.Errorf("%s %q: %w", k.Kind, name, ErrNotFound)
		}
		existing := k.obj(k.items.at(next, i)).ObjectMeta()
		if err := pre.check(k.Kind, name, existing); err != nil {
			return store.AuditEntry{}, false, err
		}
		if k.deleteCheck != nil {
			if err := k.deleteCheck(next, name); err != nil {
				return store.AuditEntry{}, false, err
			}
		}
		version := existing.Version
		k.items.remove(next, i)
		return store.AuditEntry{Action: "delete", Kind: k.Kind, Name: name, Version: version}, false, nil
	})
	return change, err
}

// collection is one kind's objects in a configuration: held by value
// (services, consumers, issuers, certificates) or by pointer (routes, of
// which there may be 100,000: a write then copies 8 bytes per route, not
// the ~400 of the route itself). at's object is shared with every revision
// that holds it and must not be modified; set and insert store a copy of
// theirs.
type collection[T any] struct {
	len    func(*config.Config) int
	at     func(cfg *config.Config, i int) *T
	set    func(cfg *config.Config, i int, obj T)
	insert func(cfg *config.Config, i int, obj T)
	remove func(cfg *config.Config, i int)
	// all is the objects by value: the collection itself, or a copy.
	all func(*config.Config) []T
	// clear empties cfg's collection, keeping room for n; take appends the
	// object at i of another configuration's collection (shared, not
	// copied); add appends obj.
	clear func(cfg *config.Config, n int)
	take  func(dst, src *config.Config, i int)
	add   func(cfg *config.Config, obj T)
}

func values[T any](items func(*config.Config) *[]T) collection[T] {
	return collection[T]{
		len:    func(c *config.Config) int { return len(*items(c)) },
		at:     func(c *config.Config, i int) *T { return &(*items(c))[i] },
		set:    func(c *config.Config, i int, obj T) { (*items(c))[i] = obj },
		insert: func(c *config.Config, i int, obj T) { *items(c) = slices.Insert(*items(c), i, obj) },
		remove: func(c *config.Config, i int) { *items(c) = slices.Delete(*items(c), i, i+1) },
		all:    func(c *config.Config) []T { return *items(c) },
		clear:  func(c *config.Config, n int) { *items(c) = make([]T, 0, n) },
		take:   func(dst, src *config.Config, i int) { *items(dst) = append(*items(dst), (*items(src))[i]) },
		add:    func(c *config.Config, obj T) { *items(c) = append(*items(c), obj) },
	}
}

func pointers[T any](items func(*config.Config) *[]*T) collection[T] {
	return collection[T]{
		len:    func(c *config.Config) int { return len(*items(c)) },
		at:     func(c *config.Config, i int) *T { return (*items(c))[i] },
		set:    func(c *config.Config, i int, obj T) { (*items(c))[i] = &obj },
		insert: func(c *config.Config, i int, obj T) { *items(c) = slices.Insert(*items(c), i, &obj) },
		// Delete zeroes the freed slot: the pointer does not keep a
		// deleted route alive.
		remove: func(c *config.Config, i int) { *items(c) = slices.Delete(*items(c), i, i+1) },
		all: func(c *config.Config) []T {
			out := make([]T, len(*items(c)))
			for i, o := range *items(c) {
				out[i] = *o
			}
			return out
		},
		clear: func(c *config.Config, n int) { *items(c) = make([]*T, 0, n) },
		take:  func(dst, src *config.Config, i int) { *items(dst) = append(*items(dst), (*items(src))[i]) },
		add:   func(c *config.Config, obj T) { *items(c) = append(*items(c), &obj) },
	}
}
