// Package snapshot defines what the control plane ships to data planes: the
// whole configuration at one revision, sealed with a checksum so that a
// truncated or corrupted copy (on the wire or in a data plane's state dir) is
// refused instead of half-applied.
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
	Revision  int64         `json:"revision"`
	Checksum  string        `json:"checksum"`
	CreatedAt time.Time     `json:"created_at"`
	Config    config.Config `json:"config"`
}

// wire is the encoded form: the config stays raw so the checksum is computed
// over exactly the bytes that were sent.
type wire struct {
	Revision  int64           `json:"revision"`
	Checksum  string          `json:"checksum"`
	CreatedAt time.Time       `json:"created_at"`
	Config    json.RawMessage `json:"config"`
}

// Encode seals cfg at rev and returns the snapshot and its encoded bytes.
func Encode(rev int64, cfg *config.Config, now time.Time) (*Snapshot, []byte, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("encode snapshot %d: %w", rev, err)
	}
	w := wire{Revision: rev, Checksum: Sum(raw), CreatedAt: now.UTC(), Config: raw}
	data, err := json.Marshal(w)
	if err != nil {
		return nil, nil, fmt.Errorf("encode snapshot %d: %w", rev, err)
	}
	s := &Snapshot{Revision: rev, Checksum: w.Checksum, CreatedAt: w.CreatedAt, Config: *cfg}
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
	s := &Snapshot{Revision: w.Revision, Checksum: w.Checksum, CreatedAt: w.CreatedAt}
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
