// Package snapshot defines what the control plane ships to data planes: the
// whole configuration at one revision (or, to a data plane that is current,
// a Delta from its revision: delta.go), sealed with a checksum so that a
// truncated or corrupted copy (on the wire or in a data plane's state dir) is
// refused instead of half-applied. It also names the store history (Epoch)
// the revision belongs to, so that a data plane can tell a newer snapshot
// from one of a store that went back in time.
package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// ErrChecksum means the configuration does not match its checksum.
var ErrChecksum = errors.New("snapshot checksum mismatch")

// Snapshot is the whole configuration at one revision.
type Snapshot struct {
	Revision int64 `json:"revision"`
	// Epoch names the store history the revision belongs to (see Epoch).
	Epoch     Epoch         `json:"epoch,omitzero"`
	Checksum  string        `json:"checksum"`
	CreatedAt time.Time     `json:"created_at"`
	Config    config.Config `json:"config"`
}

// Epoch names one history of revisions. Revisions only grow within an epoch;
// when a store is emptied or rolled back and an operator accepts it as it is,
// the control plane starts a new epoch, and a data plane takes a snapshot
// with a lower revision than the one it applied only when it comes in an
// epoch other than the applied one and other than the applied one's
// predecessor (the history it left). An empty ID is a store written before
// epochs existed: revisions alone order it.
type Epoch struct {
	ID string `json:"id,omitempty"`
	// Prev is the epoch this one replaced, "" for the first.
	Prev string `json:"prev,omitempty"`
}

// Supersedes reports whether a snapshot at (rev, e) should replace one
// applied at (appliedRev, applied): a higher revision of the same history,
// or any revision of a newer history the control plane announced.
func (e Epoch) Supersedes(rev int64, applied Epoch, appliedRev int64) bool {
	switch {
	case e.ID == applied.ID || e.ID == "" || applied.ID == "":
		return rev > appliedRev
	case e.ID == applied.Prev:
		return false // the history this data plane already left
	default:
		return true
	}
}

// wire is the encoded form: the config stays raw so the checksum is computed
// over exactly the bytes that were sent.
type wire struct {
	Revision  int64           `json:"revision"`
	Epoch     Epoch           `json:"epoch,omitzero"`
	Checksum  string          `json:"checksum"`
	CreatedAt time.Time       `json:"created_at"`
	Config    json.RawMessage `json:"config"`
}

// Encode seals cfg at rev and returns the snapshot and its encoded bytes.
func Encode(rev int64, cfg *config.Config, now time.Time) (*Snapshot, []byte, error) {
	return EncodeEpoch(rev, Epoch{}, cfg, now)
}

// EncodeEpoch is Encode for a revision of epoch ep.
func EncodeEpoch(rev int64, ep Epoch, cfg *config.Config, now time.Time) (*Snapshot, []byte, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("encode snapshot %d: %w", rev, err)
	}
	w := wire{Revision: rev, Epoch: ep, Checksum: Sum(raw), CreatedAt: now.UTC(), Config: raw}
	data, err := json.Marshal(w)
	if err != nil {
		return nil, nil, fmt.Errorf("encode snapshot %d: %w", rev, err)
	}
	s := &Snapshot{Revision: rev, Epoch: ep, Checksum: w.Checksum, CreatedAt: w.CreatedAt, Config: *cfg}
	return s, data, nil
}

// Decode parses and verifies an encoded snapshot.
func Decode(data []byte) (*Snapshot, error) {
	var w wire
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	if w.Revision <= 0 {
		return nil, fmt.Errorf("decode snapshot: revision %d is not positive", w.Revision)
	}
	if len(w.Config) == 0 {
		return nil, fmt.Errorf("decode snapshot %d: no config", w.Revision)
	}
	if got := Sum(w.Config); got != w.Checksum {
		return nil, fmt.Errorf("decode snapshot %d: %w (have %s, computed %s)", w.Revision, ErrChecksum, w.Checksum, got)
	}
	s := &Snapshot{Revision: w.Revision, Epoch: w.Epoch, Checksum: w.Checksum, CreatedAt: w.CreatedAt}
	if err := config.Decode(w.Config, &s.Config); err != nil {
		return nil, fmt.Errorf("decode snapshot %d config: %w", w.Revision, err)
	}
	return s, nil
}

// Sum is the checksum of an encoded configuration.
func Sum(raw []byte) string {
	h := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(h[:])
}
