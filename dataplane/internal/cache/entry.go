package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"
)

// Entry kinds: a stored response, or the record of a Vary response's header
// names under its primary key.
const (
	kindResponse = 1
	kindVary     = 2
)

// entryMagic and entryVersion start every encoded entry, so that a format
// change (or a foreign value under our prefix) decodes as a miss.
const (
	entryMagic   = 'P'
	entryVersion = 1
)

// entry is what the cache stores.
type entry struct {
	kind     byte
	status   int
	header   http.Header
	body     []byte
	storedAt time.Time
	// upstreamAge is the Age the upstream sent (seconds), added to the time
	// spent here when the entry is served.
	upstreamAge time.Duration
	// lifetime is the freshness lifetime (s-maxage, max-age or the route's
	// TTL); the entry is fresh while its age is below it.
	lifetime time.Duration
	// vary are the canonical header names the response varies on, sorted.
	vary []string
	// shared: the response allowed a shared cache to use it for requests
	// with Authorization (public or s-maxage, RFC 9111 §3.5).
	shared bool
}

// age is the entry's current age.
// public: the stored response says Cache-Control: public.
func (e *entry) public() bool {
	_, ok := cacheControl(e.header)["public"]
	return ok
}

func (e *entry) age(now time.Time) time.Duration {
	return max(now.Sub(e.storedAt), 0) + e.upstreamAge
}

// encode lays the entry out as: magic, version, kind, flags, then varints
// (status, stored-at ns, upstream age ns, lifetime ns), the vary names, the
// headers (name, value count, values) and the body, strings and the body
// length-prefixed.
func (e *entry) encode() []byte {
	n := 64 + len(e.body)
	for k, vs := range e.header {
		n += len(k) + 8
		for _, v := range vs {
			n += len(v) + 4
		}
	}
	b := make([]byte, 0, n)
	var flags byte
	if e.shared {
		flags |= 1
	}
	b = append(b, entryMagic, entryVersion, e.kind, flags)
	b = binary.AppendUvarint(b, uint64(e.status))
	b = binary.AppendVarint(b, e.storedAt.UnixNano())
	b = binary.AppendVarint(b, int64(e.upstreamAge))
	b = binary.AppendVarint(b, int64(e.lifetime))
	b = binary.AppendUvarint(b, uint64(len(e.vary)))
	for _, v := range e.vary {
		b = appendString(b, v)
	}
	names := slices.Sorted(maps.Keys(e.header))
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(e.header[k])))
		for _, v := range e.header[k] {
			b = appendString(b, v)
		}
	}
	return appendString(b, string(e.body))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCorrupt = errors.New("corrupt entry")

// decoder reads an encoded entry; the first error sticks and every read
// after it returns zero values, so that decode checks once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items that take at least one byte each, so that a
// corrupt count cannot make decode allocate more than the input's size.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// decodeEntry parses what encode wrote. Anything else (truncated, foreign or
// from another version) is an error, never a panic. The body aliases b.
func decodeEntry(b []byte) (*entry, error) {
	if len(b) < 4 || b[0] != entryMagic || b[1] != entryVersion || (b[2] != kindResponse && b[2] != kindVary) {
		return nil, fmt.Errorf("decode cache entry: %w", errCorrupt)
	}
	e := &entry{kind: b[2], shared: b[3]&1 != 0}
	d := &decoder{b: b[4:]}
	status := d.uvarint()
	e.storedAt = time.Unix(0, d.varint())
	e.upstreamAge = time.Duration(d.varint())
	e.lifetime = time.Duration(d.varint())
	if n := d.count(); n > 0 {
		e.vary = make([]string, n)
		for i := range e.vary {
			e.vary[i] = string(d.bytes())
		}
	}
	nh := d.count()
	e.header = make(http.Header, nh)
	for range nh {
		k := string(d.bytes())
		vs := make([]string, d.count())
		for i := range vs {
			vs[i] = string(d.bytes())
		}
		e.header[k] = vs
	}
	e.body = d.bytes()
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err == nil && e.kind == kindResponse && (status < 100 || status > 999) {
		d.fail()
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode cache entry: %w", d.err)
	}
	e.status = int(status)
	return e, nil
}
