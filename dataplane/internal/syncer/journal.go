package syncer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/portico-gw/portico/shared/snapshot"
)

// The state dir after deltas: a journal. Sealing the whole configuration
// again after every delta costs what the delta saved (at 5,000 routes it
// was most of a data plane's CPU per write, and several MB of garbage: a
// GC cycle per write or two). Instead the state dir holds
//
//	snapshot.json        a whole sealed snapshot, as before
//	deltas-<rev>.jsonl   the deltas applied after revision rev, one per
//	                     line, exactly as the control plane sent them
//
// A delta is appended and synced once it is applied: a few hundred bytes.
// When the journal outgrows a quarter of the snapshot (or journalMaxEntries
// deltas), the applied configuration is sealed into snapshot.json by a
// goroutine of its own, off the poll loop, and the journals it covers are
// removed; deltas applied meanwhile go to a new journal named after the
// revision being sealed. A crash at any point leaves a snapshot and the
// journals that lead on from it. At boot the deltas that follow the
// snapshot are composed into one (snapshot.Compose), applied once, and the
// result must have the digest the last delta names; anything that does not
// follow (a torn last line, a gap, a digest that does not match) is left
// out, and the control plane sends what is missing.

const (
	journalPrefix = "deltas-"
	journalSuffix = ".jsonl"
	// journalMaxEntries bounds the deltas replayed at boot.
	journalMaxEntries = 256
	// journalMinBytes: below this a journal is never worth sealing for.
	journalMinBytes = 64 << 10
)

// journal is the state dir's writer. save and appendDelta are called by the
// poll loop only; a sealing goroutine shares the state under mu.
type journal struct {
	dir string
	// maxEntries and minBytes override journalMaxEntries and
	// journalMinBytes when set (tests).
	maxEntries int
	minBytes   int64

	mu sync.Mutex
	// gen counts whole snapshots saved: a seal started before one must not
	// replace it.
	gen uint64
	// f is the journal appended to (nil until the first delta after a
	// whole snapshot or a seal), named after start.
	f       *os.File
	start   int64
	entries int
	bytes   int64
	// snapBytes is the size of snapshot.json as last written.
	snapBytes int64
	sealing   bool
	sealed    sync.WaitGroup
}

func journalName(rev int64) string {
	return fmt.Sprintf("%s%020d%s", journalPrefix, rev, journalSuffix)
}

// journals lists the journal files of dir by the revision they start at.
func journals(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var revs []int64
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), journalPrefix)
		if n, ok2 := strings.CutSuffix(n, journalSuffix); ok && ok2 {
			if rev, err := strconv.ParseInt(n, 10, 64); err == nil {
				revs = append(revs, rev)
			}
		}
	}
	slices.Sort(revs)
	return revs, nil
}

// removeJournals removes the journals starting before rev (all with -1).
func (j *journal) removeJournals(rev int64) {
	revs, _ := journals(j.dir)
	for _, r := range revs {
		if rev < 0 || r < rev {
			_ = os.Remove(filepath.Join(j.dir, journalName(r)))
		}
	}
}

// save writes a whole snapshot as the control plane sent it and starts the
// journal over.
func (j *journal) save(raw []byte, rev int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.gen++
	j.closeLocked()
	if err := saveState(j.dir, raw); err != nil {
		return err
	}
	j.removeJournals(-1)
	j.start, j.snapBytes = rev, int64(len(raw))
	return nil
}

func (j *journal) closeLocked() {
	if j.f != nil {
		_ = j.f.Close()
		j.f = nil
	}
	j.entries, j.bytes = 0, 0
}

// appendDelta records raw, the delta that produced snap (just installed),
// and starts sealing snap when the journal has grown enough.
func (j *journal) appendDelta(raw []byte, snap *snapshot.Snapshot) error {
	line := raw
	if bytes.ContainsAny(raw, "\r\n") {
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		line = buf.Bytes()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		f, err := os.OpenFile(filepath.Join(j.dir, journalName(j.start)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		j.f = f
		if err := syncDir(j.dir); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	if _, err := j.f.Write(append(slices.Clip(line), '\n')); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.entries++
	j.bytes += int64(len(line) + 1)
	maxEntries, minBytes := journalMaxEntries, int64(journalMinBytes)
	if j.maxEntries > 0 {
		maxEntries, minBytes = j.maxEntries, j.minBytes
	}
	if !j.sealing && (j.entries >= maxEntries || j.bytes >= max(minBytes, j.snapBytes/4)) {
		// Deltas after snap go to a journal of their own; the ones
		// before are removed once snap is sealed.
		j.closeLocked()
		j.start = snap.Revision
		j.sealing = true
		j.sealed.Add(1)
		go j.seal(snap, j.gen)
	}
	return nil
}

// seal writes snap as snapshot.json unless a whole snapshot was saved
// since it started (gen moved), then removes the journals it covers.
func (j *journal) seal(snap *snapshot.Snapshot, gen uint64) {
	defer j.sealed.Done()
	var size int64
	tmp, err := writeTemp(j.dir, func(w io.Writer) error {
		cw := &countingWriter{w: w}
		_, err := writeSealed(cw, snap)
		size = cw.n
		return err
	})
	j.mu.Lock()
	defer j.mu.Unlock()
	j.sealing = false
	if err != nil || gen != j.gen {
		if tmp != "" {
			_ = os.Remove(tmp)
		}
		return
	}
	if err := replaceState(j.dir, tmp); err != nil {
		_ = os.Remove(tmp)
		return
	}
	j.removeJournals(snap.Revision)
	j.snapBytes = size
}

// wait waits for a seal in progress (tests, and Close).
func (j *journal) wait() { j.sealed.Wait() }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// replay returns the deltas of the journals in dir that follow snap, in
// order, stopping at the first that does not (a torn last line, a gap), and
// where it stopped: the journal and the offset of the first line not taken
// (nil when it read every journal to its end).
func replay(dir string, snap *snapshot.Snapshot) ([]*snapshot.Delta, *cut, error) {
	revs, err := journals(dir)
	if err != nil {
		return nil, nil, err
	}
	var out []*snapshot.Delta
	rev := snap.Revision
	for _, r := range revs {
		if r > rev {
			return out, &cut{journal: r}, nil // a gap: the deltas between are not here
		}
		stop, err := replayFile(filepath.Join(dir, journalName(r)), snap.Epoch.ID, &rev, &out)
		if err != nil {
			return out, nil, err
		}
		if stop >= 0 {
			return out, &cut{journal: r, offset: stop}, nil
		}
	}
	return out, nil, nil
}

// cut is where replay stopped.
type cut struct {
	journal int64
	offset  int64
}

// replayFile appends to out the deltas of one journal that follow *rev,
// advancing it, and returns the offset of the first line that is not
// whole or does not follow (-1 at the end of the file).
func replayFile(path, epoch string, rev *int64, out *[]*snapshot.Delta) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<30)
	var off int64
	for sc.Scan() {
		line := sc.Bytes()
		d, err := snapshot.DecodeDelta(line)
		switch {
		case err != nil:
			return off, nil // a line cut short by a crash: nothing after it counts
		case d.Revision <= *rev:
			// Covered by the state file already.
		case d.Base != *rev || d.Epoch.ID != epoch:
			return off, nil
		default:
			*out = append(*out, d)
			*rev = d.Revision
		}
		off += int64(len(line)) + 1
	}
	if err := sc.Err(); err != nil {
		return off, nil // an unreadable rest counts as cut short
	}
	return -1, nil
}

// tidy makes the journals hold exactly what boot used: with used false
// (the snapshot alone serves) none; otherwise the journals up to c, the
// one c names cut at its offset (a torn line must not sit before the
// deltas appended from now on), and none after it.
func (j *journal) tidy(used bool, c *cut) {
	if !used {
		j.removeJournals(-1)
		return
	}
	if c == nil {
		return
	}
	revs, _ := journals(j.dir)
	for _, r := range revs {
		path := filepath.Join(j.dir, journalName(r))
		switch {
		case r > c.journal || r == c.journal && c.offset == 0:
			_ = os.Remove(path)
		case r == c.journal:
			_ = os.Truncate(path, c.offset)
		}
	}
}
