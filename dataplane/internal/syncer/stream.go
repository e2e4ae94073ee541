package syncer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/portico-gw/portico/shared/snapshot"
)

// The state file after a delta. The state dir keeps whole snapshots, so a
// delta's result is sealed again, and at 100,000 routes json.Marshal of the
// configuration (plus the copy snapshot.Encode makes of it) is tens of
// megabytes built in one piece by the one goroutine, right after the swap,
// while requests want the same cores. writeSealed writes the same bytes
// object by object instead: the configuration exactly as json.Marshal
// would encode it (so the checksum is the control plane's for the same
// configuration), hashed as it goes, yielding the processor every
// yieldEvery objects.

// yieldEvery is how many objects are encoded between two runtime.Gosched.
const yieldEvery = 256

// placeholders are the collections of config.Config as they encode when
// nil, in the skeleton the objects are spliced into.
var placeholders = []string{`"services":null`, `"routes":null`, `"consumers":null`, `"issuers":null`}

// writeSealed writes snap in the form snapshot.Decode reads and returns its
// checksum.
func writeSealed(w io.Writer, snap *snapshot.Snapshot) (string, error) {
	cfg := snap.Config
	cfg.Services, cfg.Routes, cfg.Consumers, cfg.Issuers = nil, nil, nil, nil
	skel, err := json.Marshal(&cfg)
	if err != nil {
		return "", fmt.Errorf("seal snapshot %d: %w", snap.Revision, err)
	}
	for _, p := range placeholders {
		if bytes.Count(skel, []byte(p)) != 1 {
			return "", errors.New("seal snapshot: unexpected configuration encoding")
		}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	head := struct {
		Revision  int64          `json:"revision"`
		Epoch     snapshot.Epoch `json:"epoch,omitzero"`
		CreatedAt time.Time      `json:"created_at"`
	}{snap.Revision, snap.Epoch, snap.CreatedAt.UTC()}
	hb, err := json.Marshal(head)
	if err != nil {
		return "", fmt.Errorf("seal snapshot %d: %w", snap.Revision, err)
	}
	bw.Write(hb[:len(hb)-1])
	bw.WriteString(`,"config":`)
	h := sha256.New()
	cw := io.MultiWriter(bw, h)
	n := 0
	list := func(items int, item func(i int) any) error {
		if items < 0 {
			_, err := io.WriteString(cw, "null")
			return err
		}
		io.WriteString(cw, "[")
		for i := range items {
			if i > 0 {
				io.WriteString(cw, ",")
			}
			b, err := json.Marshal(item(i))
			if err != nil {
				return err
			}
			cw.Write(b)
			if n++; n%yieldEvery == 0 {
				runtime.Gosched()
			}
		}
		_, err := io.WriteString(cw, "]")
		return err
	}
	c := &snap.Config
	lists := []func() error{
		func() error { return list(length(c.Services), func(i int) any { return &c.Services[i] }) },
		func() error { return list(length(c.Routes), func(i int) any { return c.Routes[i] }) },
		func() error { return list(length(c.Consumers), func(i int) any { return &c.Consumers[i] }) },
		func() error { return list(length(c.Issuers), func(i int) any { return &c.Issuers[i] }) },
	}
	rest := skel
	for k, p := range placeholders {
		i := bytes.Index(rest, []byte(p))
		if i < 0 {
			return "", errors.New("seal snapshot: unexpected configuration encoding")
		}
		cw.Write(rest[:i+len(p)-len("null")])
		if err := lists[k](); err != nil {
			return "", fmt.Errorf("seal snapshot %d: %w", snap.Revision, err)
		}
		rest = rest[i+len(p):]
	}
	cw.Write(rest)
	sum := "sha256:" + hex.EncodeToString(h.Sum(nil))
	bw.WriteString(`,"checksum":"` + sum + `"}`)
	if err := bw.Flush(); err != nil {
		return "", fmt.Errorf("seal snapshot %d: %w", snap.Revision, err)
	}
	return sum, nil
}

// length is len(s), or -1 for a nil slice (which encodes as null).
func length[T any](s []T) int {
	if s == nil {
		return -1
	}
	return len(s)
}
