package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// boltLockTimeout bounds the wait for bbolt's exclusive file lock: a second
// control plane on the same file should fail with a clear error, not hang.
const boltLockTimeout = 2 * time.Second

// Layout of the bbolt file: one key per object, so that a commit writes
// what changed (State.Touched) instead of the whole configuration, which at
// 100,000 routes is tens of megabytes of JSON encoded and written per admin
// write.
//
//	meta/revision   8-byte big-endian revision
//	meta/epoch      the epoch id
//	meta/epoch_prev the epoch it replaced (snapshot.Epoch.Prev)
//	meta/layout     "objects": this layout
//	meta/config     JSON of the configuration without its object lists
//	                (the global section, and any field a later version adds)
//	meta/tokens     JSON of the admin API tokens (State.Tokens), written
//	                only when they change; absent while there are none
//	services/<name>, routes/<name>, consumers/<name>, issuers/<name>
//	                JSON of one object; bbolt keeps keys in byte order,
//	                which is the name order of the canonical configuration
//	audit/<rev>     8-byte big-endian revision -> JSON AuditEntry
//
// Files written before this layout hold the whole State as JSON in
// meta/state; opening one converts it in one transaction.
var (
	bucketMeta  = []byte("meta")
	bucketAudit = []byte("audit")
	// keyRevision duplicates State.Revision as 8 big-endian bytes so that a
	// commit's compare-and-swap need not read the state.
	keyRevision = []byte("revision")
	// keyEpoch duplicates State.Epoch.ID for the same reason.
	keyEpoch     = []byte("epoch")
	keyEpochPrev = []byte("epoch_prev")
	keyLayout    = []byte("layout")
	keyConfig    = []byte("config")
	keyTokens    = []byte("tokens")
	// keyState is the whole State of the old layout.
	keyState = []byte("state")

	layoutObjects = []byte("objects")
)

// boltKinds are the object collections, each in its own bucket.
var boltKinds = []boltKind{
	kindOf([]byte("services"), func(c *config.Config) *[]config.Service { return &c.Services },
		func(s *config.Service) string { return s.Name }, func(t *snapshot.Touched) map[string]struct{} { return t.Services }),
	kindOf([]byte("routes"), func(c *config.Config) *[]*config.Route { return &c.Routes },
		func(r **config.Route) string { return (*r).Name }, func(t *snapshot.Touched) map[string]struct{} { return t.Routes }),
	kindOf([]byte("consumers"), func(c *config.Config) *[]config.Consumer { return &c.Consumers },
		func(c *config.Consumer) string { return c.Name }, func(t *snapshot.Touched) map[string]struct{} { return t.Consumers }),
	kindOf([]byte("issuers"), func(c *config.Config) *[]config.Issuer { return &c.Issuers },
		func(i *config.Issuer) string { return i.Name }, func(t *snapshot.Touched) map[string]struct{} { return t.Issuers }),
	addedLater(kindOf([]byte("certificates"), func(c *config.Config) *[]config.Certificate { return &c.Certificates },
		func(c *config.Certificate) string { return c.Name }, func(t *snapshot.Touched) map[string]struct{} { return t.Certificates })),
}

// addedLater marks a kind that files of the objects layout may not have
// yet (written before the kind existed): its bucket is created on open.
func addedLater(k boltKind) boltKind {
	k.addedLater = true
	return k
}

// boltKind stores and loads one collection.
type boltKind struct {
	bucket     []byte
	addedLater bool
	// put writes the objects of cfg named in only (deleting those cfg
	// does not have), or, with only nil, every object.
	put  func(b *bbolt.Bucket, cfg *config.Config, only map[string]struct{}, all bool) error
	load func(b *bbolt.Bucket, cfg *config.Config) error
	// touched picks this kind's names out of a Touched.
	touched func(t *snapshot.Touched) map[string]struct{}
}

func kindOf[T any](bucket []byte, items func(*config.Config) *[]T, name func(*T) string, touched func(*snapshot.Touched) map[string]struct{}) boltKind {
	return boltKind{
		bucket:  bucket,
		touched: touched,
		put: func(b *bbolt.Bucket, cfg *config.Config, only map[string]struct{}, all bool) error {
			list := *items(cfg)
			putOne := func(o *T) error {
				v, err := json.Marshal(o)
				if err != nil {
					return fmt.Errorf("encode %s %q: %w", bucket, name(o), err)
				}
				return b.Put([]byte(name(o)), v)
			}
			if all {
				for i := range list {
					if err := putOne(&list[i]); err != nil {
						return err
					}
				}
				return nil
			}
			for n := range only {
				i, ok := slices.BinarySearchFunc(list, n, func(o T, n string) int { return strings.Compare(name(&o), n) })
				var err error
				if ok {
					err = putOne(&list[i])
				} else {
					err = b.Delete([]byte(n))
				}
				if err != nil {
					return err
				}
			}
			return nil
		},
		load: func(b *bbolt.Bucket, cfg *config.Config) error {
			var list []T
			err := b.ForEach(func(k, v []byte) error {
				var o T
				if err := json.Unmarshal(v, &o); err != nil {
					return fmt.Errorf("decode %s %q: %w", bucket, k, err)
				}
				list = append(list, o)
				return nil
			})
			*items(cfg) = list
			return err
		},
	}
}

// Bolt is a Store in one bbolt file, for a single control-plane process: the
// file is locked while open.
type Bolt struct {
	path string
	db   *bbolt.DB

	// mu keeps Close from running under an operation: bbolt would wait for
	// the transaction anyway, but the operation must then see ErrClosed, not
	// bbolt's "database not open".
	mu     sync.RWMutex
	closed bool
	done   chan struct{} // closed by Close, to release WaitRevision

	// The latest committed revision and a channel closed (and replaced) on
	// every commit: a broadcast to WaitRevision without polling. Only this
	// process can write the file, so in-process notification is complete.
	revMu   sync.Mutex
	rev     int64
	changed chan struct{}
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens or creates the store file at path, creating its directory
// (0700) and the file (0600) if needed.
func OpenBolt(path string) (_ *Bolt, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	// A damaged file can make bbolt panic or fault while it opens; file lets
	// the recovery release the descriptor (and with it the lock).
	var (
		file *os.File
		db   *bbolt.DB
	)
	defer func() {
		switch {
		case err == nil:
		case db != nil:
			db.Close()
		case file != nil:
			file.Close()
		}
	}()
	defer recoverDamaged(path, &err, debug.SetPanicOnFault(true))

	db, err = bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: boltLockTimeout,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open bolt store %s: store file is locked by another process (is another control plane running on it?): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	rev, err := initBolt(db)
	if err != nil {
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	return &Bolt{path: path, db: db, done: make(chan struct{}), rev: rev, changed: make(chan struct{})}, nil
}

// initBolt creates the buckets of a new file and checks that an existing one
// is consistent enough to use, returning its revision.
func initBolt(db *bbolt.DB) (int64, error) {
	var rev int64
	err := db.Update(func(tx *bbolt.Tx) error {
		// A file cut short (a bad copy, a full disk during a restore) still
		// has valid meta pages; reading pages past its end would fault.
		fi, err := os.Stat(tx.DB().Path())
		if err != nil {
			return err
		}
		if tx.Size() > fi.Size() {
			return fmt.Errorf("damaged file: it is %d bytes but its pages need %d (truncated?)", fi.Size(), tx.Size())
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		audit, err := tx.CreateBucketIfNotExists(bucketAudit)
		if err != nil {
			return err
		}
		rev, err = decodeRevision(meta.Get(keyRevision))
		if err != nil {
			return err
		}
		if err := upgradeLayout(tx, meta); err != nil {
			return err
		}
		if (rev == 0) != (meta.Get(keyConfig) == nil) {
			return fmt.Errorf("damaged file: revision %d but configuration present=%t", rev, meta.Get(keyConfig) != nil)
		}
		if k, _ := audit.Cursor().Last(); k != nil && binary.BigEndian.Uint64(k) != uint64(rev) {
			return fmt.Errorf("damaged file: last audit entry %x but revision %d", k, rev)
		}
		return nil
	})
	return rev, err
}

// upgradeLayout creates the object buckets and converts a file of the old
// layout (the whole State in meta/state), in the transaction that opens it:
// a crash leaves the old layout, to be converted at the next open.
func upgradeLayout(tx *bbolt.Tx, meta *bbolt.Bucket) error {
	if bytes.Equal(meta.Get(keyLayout), layoutObjects) {
		for _, k := range boltKinds {
			if tx.Bucket(k.bucket) != nil {
				continue
			}
			if !k.addedLater {
				return fmt.Errorf("damaged file: bucket %s missing", k.bucket)
			}
			if _, err := tx.CreateBucket(k.bucket); err != nil {
				return err
			}
		}
		return nil
	}
	if l := meta.Get(keyLayout); l != nil {
		return fmt.Errorf("file layout %q is newer than this control plane knows (%q)", l, layoutObjects)
	}
	for _, k := range boltKinds {
		if _, err := tx.CreateBucketIfNotExists(k.bucket); err != nil {
			return err
		}
	}
	if raw := meta.Get(keyState); raw != nil {
		var st State
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("convert the state to one key per object: decode: %w", err)
		}
		st.Config.Sort()
		if err := putConfig(tx, meta, &st.Config, nil); err != nil {
			return fmt.Errorf("convert the state to one key per object: %w", err)
		}
		if err := meta.Put(keyEpochPrev, []byte(st.Epoch.Prev)); err != nil {
			return err
		}
		if err := meta.Delete(keyState); err != nil {
			return err
		}
	}
	return meta.Put(keyLayout, layoutObjects)
}

// putConfig writes cfg: only the objects named in touched, or, when
// touched is nil, every object (the buckets are emptied first).
func putConfig(tx *bbolt.Tx, meta *bbolt.Bucket, cfg *config.Config, touched *snapshot.Touched) error {
	rest := *cfg
	rest.Services, rest.Routes, rest.Consumers, rest.Issuers, rest.Certificates = nil, nil, nil, nil, nil
	raw, err := json.Marshal(&rest)
	if err != nil {
		return fmt.Errorf("encode configuration: %w", err)
	}
	if err := meta.Put(keyConfig, raw); err != nil {
		return err
	}
	for _, k := range boltKinds {
		b := tx.Bucket(k.bucket)
		if touched == nil {
			if err := tx.DeleteBucket(k.bucket); err != nil {
				return err
			}
			if b, err = tx.CreateBucket(k.bucket); err != nil {
				return err
			}
			// Written in key order: full pages, as bbolt fills them
			// for appends.
			b.FillPercent = 1
			err = k.put(b, cfg, nil, true)
		} else {
			err = k.put(b, cfg, k.touched(touched), false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// putTokens writes the tokens when they differ from the stored ones: most
// commits change configuration, not tokens.
func putTokens(meta *bbolt.Bucket, tokens []Token) error {
	if len(tokens) == 0 {
		return meta.Delete(keyTokens)
	}
	raw, err := json.Marshal(tokens)
	if err != nil {
		return fmt.Errorf("encode tokens: %w", err)
	}
	if bytes.Equal(meta.Get(keyTokens), raw) {
		return nil
	}
	return meta.Put(keyTokens, raw)
}

// recoverDamaged turns a panic inside bbolt into an error. bbolt panics on
// pages it cannot make sense of, and with SetPanicOnFault a read past the end
// of a truncated memory-mapped file panics instead of killing the process. It
// is deferred directly so that recover works; oldFault restores the
// goroutine's previous setting.
func recoverDamaged(path string, err *error, oldFault bool) {
	debug.SetPanicOnFault(oldFault)
	if r := recover(); r != nil {
		*err = fmt.Errorf("bolt store %s: damaged file (%v); restore it from a backup", path, r)
	}
}

func encodeRevision(rev int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(rev))
}

func decodeRevision(b []byte) (int64, error) {
	if b == nil {
		return 0, nil
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("damaged file: revision is %d bytes, want 8", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// view and update run fn unless the store is closed, holding off Close
// meanwhile.
func (b *Bolt) view(fn func(*bbolt.Tx) error) (err error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	defer recoverDamaged(b.path, &err, debug.SetPanicOnFault(true))
	return b.db.View(fn)
}

func (b *Bolt) update(fn func(*bbolt.Tx) error) (err error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	defer recoverDamaged(b.path, &err, debug.SetPanicOnFault(true))
	return b.db.Update(fn)
}

// Load implements Store.
func (b *Bolt) Load(ctx context.Context) (*State, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &State{}
	err := b.view(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		var err error
		if s.Revision, err = decodeRevision(meta.Get(keyRevision)); err != nil || s.Revision == 0 {
			return err
		}
		s.Epoch = snapshot.Epoch{ID: string(meta.Get(keyEpoch)), Prev: string(meta.Get(keyEpochPrev))}
		// Decoded inside the transaction: a long read holds off the
		// remapping a growing file needs, but Load runs at start and when
		// another writer is suspected, not per write.
		if err := json.Unmarshal(meta.Get(keyConfig), &s.Config); err != nil {
			return fmt.Errorf("decode configuration: %w", err)
		}
		for _, k := range boltKinds {
			if err := k.load(tx.Bucket(k.bucket), &s.Config); err != nil {
				return err
			}
		}
		if raw := meta.Get(keyTokens); raw != nil {
			if err := json.Unmarshal(raw, &s.Tokens); err != nil {
				return fmt.Errorf("decode tokens: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load state from %s: %w", b.path, err)
	}
	s.Config.FillEmpty()
	return s, nil
}

// Commit implements Store. With next.Touched it writes only the objects
// named there, provided the stored revision is of next's epoch (the caller
// computed next from it); otherwise every object.
func (b *Bolt) Commit(ctx context.Context, next *State, entry AuditEntry) error {
	if err := checkCommit(next, entry); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	audit, err := json.Marshal(entry)
	if err != nil {
		return fmt.Errorf("commit %d: encode audit entry: %w", next.Revision, err)
	}
	err = b.update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		cur, err := decodeRevision(meta.Get(keyRevision))
		if err != nil {
			return err
		}
		if cur != next.Revision-1 {
			return fmt.Errorf("%w: stored revision is %d", ErrConflict, cur)
		}
		storedEpoch := string(meta.Get(keyEpoch))
		if err := checkEpoch(cur, storedEpoch, next.Epoch); err != nil {
			return err
		}
		touched := next.Touched
		if cur == 0 || storedEpoch != next.Epoch.ID {
			// A first revision, or a new epoch: the state it was
			// computed from is not necessarily the stored one.
			touched = nil
		}
		if err := putConfig(tx, meta, &next.Config, touched); err != nil {
			return err
		}
		if err := putTokens(meta, next.Tokens); err != nil {
			return err
		}
		if err := meta.Put(keyEpoch, []byte(next.Epoch.ID)); err != nil {
			return err
		}
		if err := meta.Put(keyEpochPrev, []byte(next.Epoch.Prev)); err != nil {
			return err
		}
		if err := meta.Put(keyRevision, encodeRevision(next.Revision)); err != nil {
			return err
		}
		return tx.Bucket(bucketAudit).Put(encodeRevision(next.Revision), audit)
	})
	if err != nil {
		return fmt.Errorf("commit %d: %w", next.Revision, err)
	}
	b.publish(next.Revision)
	return nil
}

func (b *Bolt) publish(rev int64) {
	b.revMu.Lock()
	defer b.revMu.Unlock()
	if rev > b.rev {
		b.rev = rev
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// WaitRevision implements Store.
func (b *Bolt) WaitRevision(ctx context.Context, after int64) (int64, error) {
	for {
		select {
		case <-b.done:
			return 0, ErrClosed
		default:
		}
		b.revMu.Lock()
		rev, changed := b.rev, b.changed
		b.revMu.Unlock()
		if rev > after {
			return rev, nil
		}
		select {
		case <-changed:
		case <-b.done:
			return 0, ErrClosed
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Audit implements Store.
func (b *Bolt) Audit(ctx context.Context, after int64, limit int) ([]AuditEntry, error) {
	if err := checkAudit(limit); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	after = max(after, 0)
	var out []AuditEntry
	err := b.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Seek(encodeRevision(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("audit entry %x: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read audit after %d: %w", after, err)
	}
	return out, nil
}

// Close implements Store. It is idempotent.
func (b *Bolt) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	close(b.done)
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close bolt store %s: %w", b.path, err)
	}
	return nil
}

// Where implements the interface Describe looks for.
func (b *Bolt) Where() string { return "bolt:" + b.path }

// Path returns the file the store lives in.
func (b *Bolt) Path() string { return b.path }
