// Package tickets keeps the cluster's TLS session-ticket keys, so that a
// client resumes its TLS session on any data plane, not only on the one
// that issued its ticket (a load balancer moves clients between nodes).
//
// Rules:
//
//   - Keys are 32 bytes from crypto/rand, made by the control plane only.
//     They live in the store's secrets (store.Secrets, both backends),
//     never in a revision: not in a snapshot body, a data plane's state
//     dir, the audit log, the export or any admin answer. Data planes get
//     them in a header of every sync answer (apiv1.HeaderTicketKeys) and
//     hold them in memory only.
//   - One key encrypts new tickets at a time, for Policy.Rotation (6 h by
//     default); then the next one takes over. Each key is made one
//     rotation before it starts encrypting and shipped meanwhile as a key
//     that only decrypts, so every data plane already holds it when the
//     first tickets under it are issued, whichever data plane is first to
//     switch (they switch within one long-poll wait of each other).
//   - A key that stopped encrypting still decrypts for Policy.Keep (24 h
//     by default): a ticket resumes for at least Keep and at most
//     Keep + Rotation after it was issued; older tickets cost a full
//     handshake. Then the key is deleted from the store. Keeping keys is
//     what tickets trade against forward secrecy (docs/SECURITY.md).
//   - Which key encrypts is decided by the control plane's clock when it
//     answers (Order); a data plane's clock plays no part. A clock that
//     went back never makes keys: the newest key not in the future
//     encrypts, or the oldest one when all are.
//   - A control plane that was down longer than a rotation makes a fresh
//     encrypting key at once rather than encrypting with a stale one.
//   - Plan and Order are pure functions of the stored keys and the time
//     (the tests inject both); Keeper runs them, one control plane at a
//     time changing the store (the store's lease "tls-session-tickets"),
//     every replica reading it.
package tickets

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
)

// Defaults of Policy (the control plane's --tls-ticket-rotation and
// --tls-ticket-keep).
const (
	DefaultRotation = 6 * time.Hour
	DefaultKeep     = 24 * time.Hour
	// MinRotation is the shortest rotation accepted (tests use seconds;
	// production hours).
	MinRotation = time.Second
	// MaxKeep is crypto/tls's own ticket lifetime: a server refuses older
	// tickets whatever keys it holds, so keeping keys longer is useless.
	MaxKeep = 7 * 24 * time.Hour
)

// Policy says how often keys change and how long old ones are kept.
type Policy struct {
	// Rotation is how long one key encrypts new tickets.
	Rotation time.Duration
	// Keep is how long a key still decrypts after it stopped encrypting.
	Keep time.Duration
}

// Validate checks p; the error names the flags.
func (p Policy) Validate() error {
	switch {
	case p.Rotation < MinRotation:
		return fmt.Errorf("--tls-ticket-rotation: at least %s", MinRotation)
	case p.Keep < 0 || p.Keep > MaxKeep:
		return fmt.Errorf("--tls-ticket-keep: between 0 and %s (crypto/tls refuses older tickets anyway)", MaxKeep)
	case p.maxKeys() > apiv1.MaxTicketKeys:
		return fmt.Errorf("--tls-ticket-keep / --tls-ticket-rotation: at most %d keys at once (keep %s at a rotation of %s needs %d)",
			apiv1.MaxTicketKeys, p.Keep, p.Rotation, p.maxKeys())
	}
	return nil
}

// maxKeys is the most keys Plan keeps: the next one, the encrypting one,
// and those retired within Keep.
func (p Policy) maxKeys() int {
	return 2 + int((p.Keep+p.Rotation-1)/p.Rotation)
}

// Key is one stored key.
type Key struct {
	Key Bytes `json:"key"`
	// Active is when it starts encrypting.
	Active time.Time `json:"active"`
}

// Bytes is a key's secret, base64 in the stored JSON.
type Bytes [apiv1.TicketKeyBytes]byte

// MarshalText implements encoding.TextMarshaler.
func (b Bytes) MarshalText() ([]byte, error) {
	return base64.StdEncoding.AppendEncode(nil, b[:]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *Bytes) UnmarshalText(t []byte) error {
	raw, err := base64.StdEncoding.AppendDecode(nil, t)
	if err != nil || len(raw) != len(b) {
		return errors.New("tickets: a stored key is not the base64 of 32 bytes")
	}
	copy(b[:], raw)
	return nil
}

// Set is the stored form (the store's secret SecretName).
type Set struct {
	Keys []Key `json:"keys"` // newest first
}

// SecretName names the keys among the store's secrets.
const SecretName = "tls-session-ticket-keys"

// Encode and decode the stored form.
func (s Set) Encode() ([]byte, error) { return json.Marshal(s) }

// DecodeSet reads the stored form; the error never quotes it.
func DecodeSet(b []byte) (Set, error) {
	var s Set
	if err := json.Unmarshal(b, &s); err != nil {
		return Set{}, errors.New("tickets: the stored ticket keys cannot be read (not the JSON of a key set)")
	}
	sortNewestFirst(s.Keys)
	return s, nil
}

func sortNewestFirst(keys []Key) {
	slices.SortStableFunc(keys, func(a, b Key) int { return b.Active.Compare(a.Active) })
}

// encrypting returns the index of the key that encrypts at now in keys
// (newest first): the newest one not in the future, else the oldest; -1
// for none.
func encrypting(keys []Key, now time.Time) int {
	for i, k := range keys {
		if !k.Active.After(now) {
			return i
		}
	}
	return len(keys) - 1
}

// Plan returns the keys to store at now, and whether they differ from
// keys: a first key, the next key made a rotation ahead, a fresh key when
// the encrypting one outlived its rotation, retired keys past Keep
// deleted. New keys are read from random (crypto/rand.Reader).
func Plan(keys []Key, now time.Time, p Policy, random io.Reader) ([]Key, bool, error) {
	next := slices.Clone(keys)
	sortNewestFirst(next)
	changed := !slices.Equal(next, keys)
	add := func(active time.Time) error {
		var k Key
		if _, err := io.ReadFull(random, k.Key[:]); err != nil {
			return fmt.Errorf("tickets: new key: %w", err)
		}
		k.Active = active.UTC()
		next = slices.Insert(next, 0, k)
		sortNewestFirst(next)
		changed = true
		return nil
	}
	cur := encrypting(next, now)
	// None, or the encrypting one is past its rotation with no successor
	// (the control plane was down): a fresh one encrypts from now.
	if cur < 0 || (!next[cur].Active.After(now) && !now.Before(next[cur].Active.Add(p.Rotation))) {
		if err := add(now); err != nil {
			return nil, false, err
		}
		cur = encrypting(next, now)
	}
	// The next key, one rotation ahead.
	if cur == 0 {
		if err := add(next[0].Active.Add(p.Rotation)); err != nil {
			return nil, false, err
		}
		cur = 1
	}
	// Retired keys: key i stopped encrypting when key i-1 started.
	for i := cur + 1; i < len(next); i++ {
		retired := next[i-1].Active
		if !now.Before(retired.Add(p.Keep)) {
			next, changed = next[:i], true
			break
		}
	}
	if len(next) > apiv1.MaxTicketKeys { // a policy changed to fewer keys
		next, changed = next[:apiv1.MaxTicketKeys], true
	}
	return next, changed, nil
}

// Order returns keys as a data plane installs them at now: the encrypting
// key first, then the others newest first (the next one, not encrypting
// yet, and the retired ones, all decrypting).
func Order(keys []Key, now time.Time) apiv1.TicketKeys {
	sorted := slices.Clone(keys)
	sortNewestFirst(sorted)
	cur := encrypting(sorted, now)
	if cur < 0 {
		return nil
	}
	out := make(apiv1.TicketKeys, 0, len(sorted))
	out = append(out, [apiv1.TicketKeyBytes]byte(sorted[cur].Key))
	for i, k := range sorted {
		if i != cur {
			out = append(out, [apiv1.TicketKeyBytes]byte(k.Key))
		}
	}
	return out
}

// NextChange is the earliest time after now at which Plan or Order would
// answer differently with the same keys: the next key starting to encrypt,
// or a retired key's deletion. Zero for no keys.
func NextChange(keys []Key, now time.Time, p Policy) time.Time {
	sorted := slices.Clone(keys)
	sortNewestFirst(sorted)
	var at []time.Time
	for i, k := range sorted {
		if k.Active.After(now) {
			at = append(at, k.Active)
		}
		if i > 0 && !sorted[i-1].Active.After(now) {
			at = append(at, sorted[i-1].Active.Add(p.Keep))
		}
	}
	if len(sorted) > 0 {
		if a := sorted[encrypting(sorted, now)].Active.Add(p.Rotation); a.After(now) {
			at = append(at, a)
		}
	}
	if len(at) == 0 {
		return time.Time{}
	}
	return slices.MinFunc(at, func(a, b time.Time) int { return cmp.Compare(a.UnixNano(), b.UnixNano()) })
}

// Random is where new keys come from.
var Random io.Reader = rand.Reader
