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
	"sync"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// boltLockTimeout bounds the wait for bbolt's exclusive file lock: a second
// control plane on the same file should fail with a clear error, not hang.
const boltLockTimeout = 2 * time.Second

// Layout of the bbolt file.
var (
	bucketMeta  = []byte("meta")
	bucketAudit = []byte("audit") // 8-byte big-endian revision -> JSON AuditEntry
	keyState    = []byte("state") // JSON State
	// keyRevision duplicates State.Revision as 8 big-endian bytes so that a
	// commit's compare-and-swap need not decode a multi-megabyte state.
	keyRevision = []byte("revision")
	// keyEpoch duplicates State.Epoch.ID for the same reason.
	keyEpoch = []byte("epoch")
)

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
		if (rev == 0) != (meta.Get(keyState) == nil) {
			return fmt.Errorf("damaged file: revision %d but state present=%t", rev, meta.Get(keyState) != nil)
		}
		if k, _ := audit.Cursor().Last(); k != nil && binary.BigEndian.Uint64(k) != uint64(rev) {
			return fmt.Errorf("damaged file: last audit entry %x but revision %d", k, rev)
		}
		return nil
	})
	return rev, err
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
	var raw []byte
	err := b.view(func(tx *bbolt.Tx) error {
		// Copied so that decoding happens outside the transaction: a long
		// read transaction holds off the remapping a growing file needs.
		raw = bytes.Clone(tx.Bucket(bucketMeta).Get(keyState))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	if raw == nil {
		return emptyState(), nil
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("load state from %s: %w", b.path, err)
	}
	fillEmpty(&s)
	return &s, nil
}

// Commit implements Store.
func (b *Bolt) Commit(ctx context.Context, next *State, entry AuditEntry) error {
	if err := checkCommit(next, entry); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Encoded before the write transaction, which excludes other writers.
	state, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("commit %d: encode state: %w", next.Revision, err)
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
		if err := checkEpoch(cur, string(meta.Get(keyEpoch)), next.Epoch); err != nil {
			return err
		}
		if err := meta.Put(keyEpoch, []byte(next.Epoch.ID)); err != nil {
			return err
		}
		if err := meta.Put(keyState, state); err != nil {
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
