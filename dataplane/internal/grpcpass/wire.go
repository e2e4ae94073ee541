package grpcpass

import (
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"sync/atomic"
	"time"
)

// What the gateway reads of the gRPC wire format (gRPC over HTTP/2,
// PROTOCOL-HTTP2.md): the grpc-timeout header, and the 5-byte prefix of
// each length-prefixed message, to hold every message to the route's
// max_body_bytes. Messages themselves pass through unread.

// errBadTimeout: a grpc-timeout header that is not 1-8 digits and a unit.
var errBadTimeout = errors.New("grpc-timeout is not 1 to 8 digits followed by H, M, S, m, u or n")

// parseTimeout reads a grpc-timeout value ("100m", "5S"); ok is false
// without one.
func parseTimeout(v string) (d time.Duration, ok bool, err error) {
	if v == "" {
		return 0, false, nil
	}
	if len(v) < 2 || len(v) > 9 {
		return 0, false, errBadTimeout
	}
	n, err := strconv.ParseUint(v[:len(v)-1], 10, 64)
	if err != nil {
		return 0, false, errBadTimeout
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false, errBadTimeout
	}
	// 8 digits of hours do not fit a Duration: such a deadline is
	// "never" for any call the gateway will see.
	if max := uint64(1<<63-1) / uint64(unit); n > max {
		n = max
	}
	return time.Duration(n) * unit, true, nil
}

// encodeTimeout writes d as a grpc-timeout value: the finest unit whose
// count fits the protocol's 8 digits, as grpc-go does.
func encodeTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n" // already due: the service must not start work
	}
	const max = 1e8 - 1
	for _, u := range units {
		// Rounded up: the service never gets less time than the call has.
		n := d / u.d
		if d%u.d != 0 {
			n++
		}
		if n <= max || u.c == 'H' {
			return strconv.FormatInt(int64(min(n, max)), 10) + string(u.c)
		}
	}
	panic("unreachable")
}

var units = []struct {
	d time.Duration
	c byte
}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}, {time.Hour, 'H'}}

// errMessageTooLarge: a message of the client's announced more bytes than
// the route's max_body_bytes.
var errMessageTooLarge = errors.New("a request message exceeds the route's max_body_bytes")

// sendBody lends the client's request stream to the attempts of one call,
// holding each length-prefixed message to max bytes (a stream as a whole
// has no bound: it may last as long as the call). It counts what was read,
// which tells an attempt that sent nothing (and may go elsewhere) from one
// that did, and ignores the transport's Close: net/http closes a request
// body when an attempt fails, and a refused dial must not consume it.
type sendBody struct {
	r   io.Reader
	max int64

	hdr  [5]byte
	hn   int    // bytes of hdr filled
	left uint64 // bytes of the current message still to pass
	// sent and failed are read by the handler while the transport's
	// writer reads the body.
	sent     atomic.Int64
	tooLarge atomic.Bool
	failed   atomic.Bool
}

func (b *sendBody) Read(p []byte) (int, error) {
	if b.tooLarge.Load() {
		return 0, errMessageTooLarge
	}
	n, err := b.r.Read(p)
	for i := 0; i < n; {
		if b.left > 0 {
			k := min(b.left, uint64(n-i))
			b.left -= k
			i += int(k)
			continue
		}
		b.hdr[b.hn] = p[i]
		b.hn++
		i++
		if b.hn == len(b.hdr) {
			b.hn = 0
			b.left = uint64(binary.BigEndian.Uint32(b.hdr[1:]))
			if int64(b.left) > b.max {
				// Nothing of this read goes out: the call ends here.
				b.tooLarge.Store(true)
				return 0, errMessageTooLarge
			}
		}
	}
	b.sent.Add(int64(n))
	if err != nil && err != io.EOF {
		b.failed.Store(true)
	}
	return n, err
}

func (b *sendBody) Close() error { return nil }
