package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portico-gw/portico/shared/basicauth"
	"github.com/portico-gw/portico/shared/config"
)

// Basic auth (RFC 7617): a consumer's username and password, checked
// against the bcrypt hash the snapshot carries. bcrypt is slow on purpose
// (about 50-80 ms of a core at cost 10), which makes every check a way to
// spend the gateway's CPU. The rules that keep that bounded:
//
//   - Successes are remembered (BasicChecker's cache), so a client sending
//     the same credentials again costs a keyed hash and a map lookup. The
//     cache is keyed by HMAC-SHA256 of the username and password under a
//     random key of the process: the password is never kept, and neither
//     is anything an attacker could test guesses against offline. An entry
//     holds the bcrypt hash it was verified against and is used only while
//     the consumer's credential still has that hash, so a changed password
//     or a deleted credential stops remembered successes at once. Entries
//     last BasicCacheTTL at most. The cache is bounded in bytes (each entry
//     charged basicEntryBytes; two generations per shard, the older dropped
//     whole), and only successes enter it: a client without a valid
//     password cannot push anyone's entry out.
//   - Slow checks run at most MaxConcurrent at once (default half the
//     cores, at least one); up to MaxWaiting more wait for a slot (as long
//     as their request lasts), and beyond that a request is answered 503
//     at once (ErrBusy) instead of queueing CPU work without end. A flood
//     of wrong passwords can therefore take at most MaxConcurrent cores,
//     and clients whose credentials are remembered never wait for a slot.
//   - An unknown username costs the same check (against a hash of a random
//     password at basicauth.Cost), so timing does not tell which usernames
//     exist. A username that cannot exist (config.BasicUsernameProblem) or
//     a password longer than bcrypt's 72 bytes is refused without a check.
//   - Comparisons of secrets are constant-time: bcrypt's own, and the
//     remembered hash against the current one. Cache lookups compare HMAC
//     digests under a key the client does not know, so their timing tells
//     nothing about stored credentials.
//   - The Authorization header is read only when it is at most
//     MaxBasicHeaderBytes; the credentials never reach logs or errors, and
//     the header is removed from the request to the service.

// Limits and defaults of basic auth at the gateway.
const (
	MaxBasicHeaderBytes    = 1 << 10
	DefaultBasicCacheBytes = 4 << 20
	BasicCacheTTL          = 5 * time.Minute
	// basicEntryBytes is what one remembered credential is charged: the
	// 32-byte digest, the 60-byte hash it refers to, the string header and
	// expiry, and the map's own overhead per entry (measured by
	// TestBasicCacheEntrySize).
	basicEntryBytes = 192
	basicShards     = 16
)

// ErrInvalidPassword: no consumer has this username and password.
var ErrInvalidPassword = errors.New("auth: invalid username or password")

// ErrBusy: too many password checks are running and waiting already.
var ErrBusy = errors.New("auth: too many password checks in progress")

// BasicOptions configure a BasicChecker; zero values take the defaults.
type BasicOptions struct {
	CacheBytes    int64
	MaxConcurrent int
	MaxWaiting    int
	Now           func() time.Time
}

// BasicChecker checks passwords against bcrypt hashes, remembers the
// successes and bounds the concurrent checks. One serves the whole process
// (DefaultBasicChecker), across configuration changes: its entries are
// checked against the credential in force, so they need no flush.
type BasicChecker struct {
	key        [32]byte
	slots      chan struct{}
	waiting    atomic.Int64
	maxWaiting int64
	now        func() time.Time
	dummy      []byte
	perShard   int // entries per shard generation
	shards     [basicShards]basicShard
	hmacs      sync.Pool
	checks     atomic.Uint64
}

type basicEntry struct {
	hash  string // the bcrypt hash the password was verified against
	until int64  // unix nanoseconds
}

type basicShard struct {
	mu       sync.Mutex
	cur, old map[[32]byte]basicEntry
}

// NewBasicChecker returns a checker with its own random key.
func NewBasicChecker(o BasicOptions) *BasicChecker {
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultBasicCacheBytes
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if o.MaxWaiting <= 0 {
		o.MaxWaiting = 16 * o.MaxConcurrent
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &BasicChecker{
		slots: make(chan struct{}, o.MaxConcurrent), maxWaiting: int64(o.MaxWaiting), now: o.Now,
		perShard: max(1, int(o.CacheBytes/basicEntryBytes/basicShards/2)),
	}
	if _, err := rand.Read(b.key[:]); err != nil {
		panic("auth: no randomness for the basic-auth cache key: " + err.Error())
	}
	var pw [24]byte
	_, _ = rand.Read(pw[:])
	dummy, err := bcrypt.GenerateFromPassword(pw[:], basicauth.Cost)
	if err != nil {
		panic("auth: " + err.Error())
	}
	b.dummy = dummy
	b.hmacs.New = func() any { return hmac.New(sha256.New, b.key[:]) }
	return b
}

// DefaultBasicChecker is the process's checker, made on first use.
var DefaultBasicChecker = sync.OnceValue(func() *BasicChecker { return NewBasicChecker(BasicOptions{}) })

// Checks counts the bcrypt comparisons run so far (for tests and
// benchmarks: how many requests the cache did not answer).
func (b *BasicChecker) Checks() uint64 { return b.checks.Load() }

// CacheEntries counts the remembered credentials.
func (b *BasicChecker) CacheEntries() int {
	n := 0
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		n += len(s.cur) + len(s.old)
		s.mu.Unlock()
	}
	return n
}

// CacheCapacity is the most entries the cache holds (its byte bound over
// basicEntryBytes).
func (b *BasicChecker) CacheCapacity() int { return b.perShard * 2 * basicShards }

func (b *BasicChecker) digest(username, password string) [32]byte {
	m := b.hmacs.Get().(hash.Hash)
	m.Reset()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(username)))
	m.Write(n[:])
	m.Write([]byte(username))
	m.Write([]byte(password))
	var d [32]byte
	m.Sum(d[:0])
	b.hmacs.Put(m)
	return d
}

func (b *BasicChecker) remembered(d [32]byte, hash string) bool {
	s := &b.shards[d[0]%basicShards]
	s.mu.Lock()
	e, ok := s.cur[d]
	if !ok {
		if e, ok = s.old[d]; ok {
			s.putLocked(d, e, b.perShard)
		}
	}
	s.mu.Unlock()
	return ok && b.now().UnixNano() < e.until && subtle.ConstantTimeCompare([]byte(e.hash), []byte(hash)) == 1
}

func (b *BasicChecker) remember(d [32]byte, hash string) {
	s := &b.shards[d[0]%basicShards]
	s.mu.Lock()
	s.putLocked(d, basicEntry{hash: hash, until: b.now().Add(BasicCacheTTL).UnixNano()}, b.perShard)
	s.mu.Unlock()
}

func (s *basicShard) putLocked(d [32]byte, e basicEntry, limit int) {
	if s.cur == nil {
		s.cur = make(map[[32]byte]basicEntry)
	}
	if _, ok := s.cur[d]; !ok && len(s.cur) >= limit {
		s.old, s.cur = s.cur, make(map[[32]byte]basicEntry, limit/4)
	}
	s.cur[d] = e
}

// acquire takes a slot for a slow check, waiting (while ctx lasts) only if
// fewer than maxWaiting are waiting already.
func (b *BasicChecker) acquire(ctx context.Context) error {
	select {
	case b.slots <- struct{}{}:
		return nil
	default:
	}
	if b.waiting.Add(1) > b.maxWaiting {
		b.waiting.Add(-1)
		return ErrBusy
	}
	defer b.waiting.Add(-1)
	select {
	case b.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fail(ErrBusy, ctx.Err())
	}
}

// check compares password with hash (the dummy one when hash is "") in a
// slot.
func (b *BasicChecker) check(ctx context.Context, hash, password string) (bool, error) {
	if err := b.acquire(ctx); err != nil {
		return false, err
	}
	defer func() { <-b.slots }()
	b.checks.Add(1)
	h := b.dummy
	if hash != "" {
		h = []byte(hash)
	}
	return bcrypt.CompareHashAndPassword(h, []byte(password)) == nil && hash != "", nil
}

// basicUser is one credential as the verifier indexes it.
type basicUser struct {
	hash string
	id   *Identity // shared by every request it authenticates
}

// indexBasic adds the consumers' credentials to v; a username two consumers
// claim (validation refuses that) authenticates neither.
func (v *Verifier) indexBasic(c *consumer, creds []config.BasicCredential) {
	for _, cred := range creds {
		if _, dup := v.basic[cred.Username]; dup {
			v.basic[cred.Username] = nil
			continue
		}
		v.basic[cred.Username] = &basicUser{hash: cred.Hash,
			id: &Identity{Consumer: c.name, Groups: slices.Clone(c.groups), Method: MethodBasic}}
	}
}

// VerifyBasic checks a username and password.
func (v *Verifier) VerifyBasic(ctx context.Context, username, password string) (*Identity, error) {
	if config.BasicUsernameProblem(username) != "" || len(password) > config.MaxBasicPassword {
		return nil, ErrInvalidPassword
	}
	b := v.basicChecker
	if b == nil {
		b = DefaultBasicChecker()
	}
	u := v.basic[username]
	var d [32]byte
	if u != nil {
		d = b.digest(username, password)
		if b.remembered(d, u.hash) {
			return u.id, nil
		}
	}
	var hash string
	if u != nil {
		hash = u.hash
	}
	ok, err := b.check(ctx, hash, password)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, ErrInvalidPassword
	}
	b.remember(d, u.hash)
	return u.id, nil
}

// basicCredentials reads Basic credentials from an Authorization value
// the way net/http's Request.BasicAuth does (FuzzBasicCredentials holds
// the two together), after the size bound and without building a request.
// basic reports a Basic scheme: credentials were presented, readable or
// not.
func basicCredentials(h string) (username, password string, basic, ok bool) {
	if !basicScheme(h) {
		return "", "", false, false
	}
	if len(h) > MaxBasicHeaderBytes {
		return "", "", true, false
	}
	raw, err := base64.StdEncoding.DecodeString(h[len(basicPrefix):])
	if err != nil {
		return "", "", true, false
	}
	username, password, ok = strings.Cut(string(raw), ":")
	if !ok {
		return "", "", true, false
	}
	return username, password, true, true
}

const basicPrefix = "Basic "

// basicScheme reports whether an Authorization value uses the Basic scheme,
// without decoding it.
func basicScheme(h string) bool {
	return len(h) >= len(basicPrefix) && strings.EqualFold(h[:len(basicPrefix)], basicPrefix)
}
