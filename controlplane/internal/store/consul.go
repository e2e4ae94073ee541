package store

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Consul KV layout under the store's prefix:
//
//	head                         {"revision":N,"chunks":K,"sha256":"…","id":"…"}
//	state/<rev>/<id>/<chunk>     gzip of the State JSON, in chunks
//	audit/<rev>                  AuditEntry JSON
//
// Revisions are 20-digit and chunk indexes 6-digit zero-padded decimals, so
// that key order is numeric order. A state of 10,000 routes is several MB,
// beyond Consul's 512 KB value and 64-operation transaction limits, so it is
// written in chunks first, where nobody looks for it, and head is the commit
// point: one transaction compare-and-swaps head and adds the audit entry.
//
// id is random per commit attempt. Two writers racing for the same revision
// both write chunks before either learns that it lost; without id they would
// overwrite each other's chunks, and the loser's cleanup would delete the
// winner's.
const (
	consulChunkSize = 256 << 10
	// consulTxnOps is Consul's limit on operations in a transaction (64
	// before 1.14 raised it to 128).
	consulTxnOps = 64
	// consulKeepStates is how many revisions keep their chunks: readers that
	// fetched an older head just before a commit still find theirs.
	consulKeepStates = 3
	// consulLoadAttempts bounds Load's retries when commits keep removing the
	// chunks of the head it just read.
	consulLoadAttempts = 5
	consulWaitTime     = 30 * time.Second
	consulBackoffMin   = 100 * time.Millisecond
	consulBackoffMax   = 5 * time.Second
)

// Consul is a Store in Consul KV, shared by several control-plane replicas.
type Consul struct {
	addr, prefix string
	kv           *api.KV
	txn          *api.Txn
	client       *api.Client // for leases (secrets.go)
	transport    *http.Transport

	// life ends on Close, cancelling calls in flight, blocking queries
	// included.
	life  context.Context
	close context.CancelFunc
}

var _ Store = (*Consul)(nil)

type consulHead struct {
	Revision int64  `json:"revision"`
	Chunks   int    `json:"chunks"`
	SHA256   string `json:"sha256"` // of the uncompressed JSON
	ID       string `json:"id"`
	// Epoch duplicates State.Epoch.ID so that a commit checks it without
	// reading the state.
	Epoch string `json:"epoch,omitempty"`
}

// parseConsulSpec splits "consul://host:port/kv/prefix" into the agent
// address and the KV prefix without its surrounding slashes.
func parseConsulSpec(spec string) (addr, prefix string, err error) {
	const form = "want consul://<host:port>/<kv-prefix>"
	u, err := url.Parse(spec)
	if err != nil {
		return "", "", fmt.Errorf("store %q: %s: %w", spec, form, err)
	}
	if u.Scheme != "consul" || u.Opaque != "" {
		return "", "", fmt.Errorf("store %q: %s", spec, form)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		// Redacted: a password in the spec must not end up in logs.
		return "", "", fmt.Errorf("store %q: %s (no user, query or fragment; the token comes from CONSUL_HTTP_TOKEN)", u.Redacted(), form)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return "", "", fmt.Errorf("store %q: %s: agent address must be host:port", spec, form)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("store %q: %s: bad port %q", spec, form, port)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix == "" {
		return "", "", fmt.Errorf("store %q: %s: the KV prefix is empty", spec, form)
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", "", fmt.Errorf("store %q: KV prefix %q has an empty, . or .. segment", spec, prefix)
		}
	}
	return u.Host, prefix, nil
}

// OpenConsul opens the store named by spec, "consul://<host:port>/<kv-prefix>".
// The rest of the client configuration (token, TLS, scheme) comes from the
// usual CONSUL_HTTP_* environment variables. It fails if the agent cannot be
// reached or the head record there is unreadable.
func OpenConsul(ctx context.Context, spec string) (*Consul, error) {
	addr, prefix, err := parseConsulSpec(spec)
	if err != nil {
		return nil, err
	}
	cfg := api.DefaultConfig()
	cfg.Address = addr
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("store %q: consul client: %w", spec, err)
	}
	life, cancel := context.WithCancel(context.Background())
	s := &Consul{
		addr: addr, prefix: prefix,
		kv: client.KV(), txn: client.Txn(), client: client, transport: cfg.Transport,
		life: life, close: cancel,
	}
	if _, _, err := s.readHead(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("store %q: %w", spec, err)
	}
	return s, nil
}

// Prefix returns the KV prefix the store lives under.
func (s *Consul) Prefix() string { return s.prefix }

// Where implements the interface Describe looks for.
func (s *Consul) Where() string { return "consul://" + s.addr + "/" + s.prefix }

// Addr returns the Consul agent address.
func (s *Consul) Addr() string { return s.addr }

func (s *Consul) headKey() string { return s.prefix + "/head" }

func (s *Consul) stateRoot() string { return s.prefix + "/state/" }

func (s *Consul) stateRevDir(rev int64) string {
	return fmt.Sprintf("%s%020d/", s.stateRoot(), rev)
}

func (s *Consul) stateDir(h *consulHead) string {
	return s.stateRevDir(h.Revision) + h.ID + "/"
}

func (s *Consul) auditRoot() string { return s.prefix + "/audit/" }

func (s *Consul) auditKey(rev int64) string {
	return fmt.Sprintf("%s%020d", s.auditRoot(), rev)
}

// begin ties a call to the caller's ctx and to the store's life.
func (s *Consul) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.life.Err() != nil {
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.life, cancel)
	return ctx, func() { stop(); cancel() }, nil
}

// cause reports why a call in ctx failed with err: the store closing or ctx
// ending explain a transport error better than the transport does.
func (s *Consul) cause(ctx context.Context, err error) error {
	if s.life.Err() != nil {
		return ErrClosed
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (s *Consul) q(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{}).WithContext(ctx)
}

func (s *Consul) w(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

// readHead returns the head record (nil for a new store) and the index to
// compare-and-swap it against (0 when absent, meaning "create").
func (s *Consul) readHead(ctx context.Context) (*consulHead, uint64, error) {
	pair, _, err := s.kv.Get(s.headKey(), s.q(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", s.headKey(), s.cause(ctx, err))
	}
	h, err := s.decodeHead(pair)
	if err != nil {
		return nil, 0, err
	}
	if h == nil {
		return nil, 0, nil
	}
	return h, pair.ModifyIndex, nil
}

func (s *Consul) decodeHead(pair *api.KVPair) (*consulHead, error) {
	if pair == nil {
		return nil, nil
	}
	var h consulHead
	if err := json.Unmarshal(pair.Value, &h); err != nil {
		return nil, fmt.Errorf("decode %s: %w", pair.Key, err)
	}
	if h.Revision < 1 || h.Chunks < 1 || h.ID == "" || len(h.SHA256) != 2*sha256.Size {
		return nil, fmt.Errorf("decode %s: incomplete head record %s", pair.Key, pair.Value)
	}
	return &h, nil
}

// errChunksGone means the chunks of the head just read were deleted: newer
// commits made it old enough to be collected.
var errChunksGone = errors.New("state chunks missing")

// Load implements Store.
func (s *Consul) Load(ctx context.Context) (*State, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	for attempt := 1; ; attempt++ {
		h, _, err := s.readHead(ctx)
		if err != nil {
			return nil, fmt.Errorf("load state: %w", err)
		}
		if h == nil {
			return emptyState(), nil
		}
		st, err := s.loadState(ctx, h)
		if errors.Is(err, errChunksGone) && attempt < consulLoadAttempts {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load state %d: %w", h.Revision, err)
		}
		return st, nil
	}
}

func (s *Consul) loadState(ctx context.Context, h *consulHead) (*State, error) {
	dir := s.stateDir(h)
	pairs, _, err := s.kv.List(dir, s.q(ctx))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, s.cause(ctx, err))
	}
	if len(pairs) != h.Chunks {
		return nil, fmt.Errorf("%w: %s has %d of %d", errChunksGone, dir, len(pairs), h.Chunks)
	}
	var gz bytes.Buffer
	for i, p := range pairs { // List returns keys in order
		if want := fmt.Sprintf("%s%06d", dir, i); p.Key != want {
			return nil, fmt.Errorf("%w: found %s where %s was expected", errChunksGone, p.Key, want)
		}
		gz.Write(p.Value)
	}
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", dir, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", dir, err)
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != h.SHA256 {
		return nil, fmt.Errorf("%s: checksum mismatch with head", dir)
	}
	var st State
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("decode %s: %w", dir, err)
	}
	if st.Revision != h.Revision {
		return nil, fmt.Errorf("%s holds revision %d", dir, st.Revision)
	}
	st.Config.FillEmpty()
	return &st, nil
}

// Commit implements Store.
//
// If Consul fails to answer the final transaction, the outcome is unknown and
// Commit returns an error that is not ErrConflict; Load tells what happened.
func (s *Consul) Commit(ctx context.Context, next *State, entry AuditEntry) error {
	if err := checkCommit(next, entry); err != nil {
		return err
	}
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := s.commit(ctx, next, entry); err != nil {
		return fmt.Errorf("commit %d: %w", next.Revision, err)
	}
	return nil
}

func (s *Consul) commit(ctx context.Context, next *State, entry AuditEntry) error {
	// Checked before the expensive encoding and chunk writes; the
	// transaction checks again.
	cur, casIndex, err := s.readHead(ctx)
	if err != nil {
		return err
	}
	if rev := cur.revision(); rev != next.Revision-1 {
		return fmt.Errorf("%w: stored revision is %d", ErrConflict, rev)
	}
	var storedEpoch string
	if cur != nil {
		storedEpoch = cur.Epoch
	}
	// The CAS on head below makes this check atomic with the write.
	if err := checkEpoch(cur.revision(), storedEpoch, next.Epoch); err != nil {
		return err
	}
	h, chunks, err := encodeState(next)
	if err != nil {
		return err
	}
	headJSON, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("encode head: %w", err)
	}
	auditJSON, err := json.Marshal(entry)
	if err != nil {
		return fmt.Errorf("encode audit entry: %w", err)
	}

	dir := s.stateDir(h)
	for i, c := range chunks {
		key := fmt.Sprintf("%s%06d", dir, i)
		if _, err := s.kv.Put(&api.KVPair{Key: key, Value: c}, s.w(ctx)); err != nil {
			s.deleteTree(ctx, dir)
			return fmt.Errorf("write %s: %w", key, s.cause(ctx, err))
		}
	}

	ok, resp, _, err := s.txn.Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.headKey(), Value: headJSON, Index: casIndex}},
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.auditKey(next.Revision), Value: auditJSON}},
	}, s.q(ctx))
	if err != nil {
		// The transaction may have been applied: the chunks must stay.
		return fmt.Errorf("update %s (outcome unknown): %w", s.headKey(), s.cause(ctx, err))
	}
	if !ok {
		// Rolled back, so the chunks are orphans whatever the reason.
		s.deleteTree(ctx, dir)
		return s.txnFailure(ctx, casIndex, resp)
	}
	s.collect(ctx, next.Revision)
	return nil
}

func (h *consulHead) revision() int64 {
	if h == nil {
		return 0
	}
	return h.Revision
}

// txnFailure explains a rolled-back commit. The head moving is a conflict;
// anything else (an ACL denial, say) is reported as Consul put it, rather
// than guessed from the wording of its messages.
func (s *Consul) txnFailure(ctx context.Context, casIndex uint64, resp *api.TxnResponse) error {
	var msgs []string
	if resp != nil {
		for _, e := range resp.Errors {
			msgs = append(msgs, fmt.Sprintf("op %d: %s", e.OpIndex, e.What))
		}
	}
	h, idx, err := s.readHead(ctx)
	if err == nil && idx != casIndex {
		return fmt.Errorf("%w: stored revision is now %d", ErrConflict, h.revision())
	}
	return fmt.Errorf("transaction on %s rolled back: %s", s.headKey(), strings.Join(msgs, "; "))
}

// encodeState returns the head for next (with a fresh id) and the chunks of
// its compressed JSON.
func encodeState(next *State) (*consulHead, [][]byte, error) {
	raw, err := json.Marshal(next)
	if err != nil {
		return nil, nil, fmt.Errorf("encode state: %w", err)
	}
	var gz bytes.Buffer
	// BestSpeed: a commit of a 10,000-route state compresses megabytes, and
	// the ratio on JSON this repetitive is nearly as good as the default's.
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed) // valid level: no error
	zw.Write(raw)                                     // into a bytes.Buffer: cannot fail
	if err := zw.Close(); err != nil {
		return nil, nil, fmt.Errorf("compress state: %w", err)
	}
	var chunks [][]byte
	for b := gz.Bytes(); len(b) > 0; {
		n := min(len(b), consulChunkSize)
		chunks = append(chunks, b[:n])
		b = b[n:]
	}
	sum := sha256.Sum256(raw)
	return &consulHead{
		Revision: next.Revision,
		Chunks:   len(chunks),
		SHA256:   hex.EncodeToString(sum[:]),
		ID:       rand.Text()[:16],
		Epoch:    next.Epoch.ID,
	}, chunks, nil
}

// deleteTree removes orphan chunks, best effort: an orphan is garbage, never
// visible, and collect removes it later with its revision.
func (s *Consul) deleteTree(ctx context.Context, dir string) {
	// Still run when the commit failed because ctx ended.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = s.kv.DeleteTree(dir, s.w(ctx))
}

// collect deletes the chunks of revisions older than the last
// consulKeepStates, including orphans of commits that lost or crashed.
// Best effort: a failure leaves garbage for the next commit to collect.
func (s *Consul) collect(ctx context.Context, committed int64) {
	dirs, _, err := s.kv.Keys(s.stateRoot(), "/", s.q(ctx))
	if err != nil {
		return
	}
	for _, d := range dirs {
		rev, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(d, s.stateRoot()), "/"), 10, 64)
		if err != nil || rev > committed-consulKeepStates {
			continue
		}
		if _, err := s.kv.DeleteTree(s.stateRevDir(rev), s.w(ctx)); err != nil {
			return
		}
	}
}

// WaitRevision implements Store. It long-polls head with Consul blocking
// queries, so it sees commits by every replica.
func (s *Consul) WaitRevision(ctx context.Context, after int64) (int64, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	var index uint64 // 0: answer at once
	backoff := consulBackoffMin
	for {
		opts := &api.QueryOptions{WaitIndex: index, WaitTime: consulWaitTime}
		pair, meta, err := s.kv.Get(s.headKey(), opts.WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return 0, s.cause(ctx, err)
			}
			// Consul down or electing a leader: retry, but do not spin.
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return 0, s.cause(ctx, ctx.Err())
			}
			backoff = min(backoff*2, consulBackoffMax)
			index = 0 // the agent may have restarted with other indexes
			continue
		}
		backoff = consulBackoffMin
		h, err := s.decodeHead(pair)
		if err != nil {
			return 0, fmt.Errorf("wait for revision > %d: %w", after, err)
		}
		if rev := h.revision(); rev > after {
			return rev, nil
		}
		// Consul's advice for blocking queries: an index that goes backwards
		// (a restored snapshot) restarts the watch, and 0 must never be used
		// to block or the query returns at once, forever.
		if meta.LastIndex < index {
			index = 0
		} else {
			index = max(meta.LastIndex, 1)
		}
	}
}

// Audit implements Store.
func (s *Consul) Audit(ctx context.Context, after int64, limit int) ([]AuditEntry, error) {
	if err := checkAudit(limit); err != nil {
		return nil, err
	}
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	after = max(after, 0)
	out, err := s.audit(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit after %d: %w", after, err)
	}
	return out, nil
}

// audit reads entries after..after+limit directly: the head transaction
// writes entry N with revision N, so entries 1..head all exist and their keys
// are known. Only if some are missing (deleted by hand, or by a future
// retention policy) does it list the keys.
func (s *Consul) audit(ctx context.Context, after int64, limit int) ([]AuditEntry, error) {
	h, _, err := s.readHead(ctx)
	if err != nil {
		return nil, err
	}
	head := h.revision()
	if after >= head {
		return nil, nil
	}
	n := int(min(head-after, int64(limit)))
	keys := make([]string, n)
	for i := range keys {
		keys[i] = s.auditKey(after + 1 + int64(i))
	}
	out, err := s.getAudit(ctx, keys)
	if !errors.Is(err, errMissingKey) {
		return out, err
	}
	all, _, err := s.kv.Keys(s.auditRoot(), "", s.q(ctx))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", s.auditRoot(), s.cause(ctx, err))
	}
	keys = keys[:0]
	from := s.auditKey(after + 1)
	for _, k := range all { // sorted, and zero padding makes that numeric
		if k >= from && len(keys) < limit {
			keys = append(keys, k)
		}
	}
	return s.getAudit(ctx, keys)
}

var errMissingKey = errors.New("key missing")

// getAudit reads keys in transactions of consulTxnOps reads each.
func (s *Consul) getAudit(ctx context.Context, keys []string) ([]AuditEntry, error) {
	out := make([]AuditEntry, 0, len(keys))
	for len(keys) > 0 {
		batch := keys[:min(len(keys), consulTxnOps)]
		keys = keys[len(batch):]
		ops := make(api.TxnOps, len(batch))
		for i, k := range batch {
			ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGet, Key: k}}
		}
		ok, resp, _, err := s.txn.Txn(ops, s.q(ctx))
		if err != nil {
			return nil, fmt.Errorf("read %s…: %w", batch[0], s.cause(ctx, err))
		}
		if !ok {
			// A get of an absent key is what rolls back a read-only
			// transaction.
			return nil, fmt.Errorf("read %s…: %w", batch[0], errMissingKey)
		}
		for _, r := range resp.Results {
			if r.KV == nil {
				return nil, fmt.Errorf("read %s…: %w", batch[0], errMissingKey)
			}
			var e AuditEntry
			if err := json.Unmarshal(r.KV.Value, &e); err != nil {
				return nil, fmt.Errorf("decode %s: %w", r.KV.Key, err)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// Close implements Store. It is idempotent; calls in flight end with
// ErrClosed.
func (s *Consul) Close() error {
	s.close()
	s.transport.CloseIdleConnections()
	return nil
}
