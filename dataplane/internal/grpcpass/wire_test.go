package grpcpass

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"
)

func TestTimeoutHeader(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
		err  bool
	}{
		{"", 0, false, false},
		{"100m", 100 * time.Millisecond, true, false},
		{"5S", 5 * time.Second, true, false},
		{"2M", 2 * time.Minute, true, false},
		{"1H", time.Hour, true, false},
		{"7u", 7 * time.Microsecond, true, false},
		{"99999999n", 99999999, true, false},
		{"99999999H", time.Duration(1<<63 - 1), true, false}, // capped, not overflowed
		{"123456789S", 0, false, true},                       // 9 digits
		{"10", 0, false, true},                               // no unit
		{"m", 0, false, true},
		{"-1S", 0, false, true},
		{"1s", 0, false, true}, // units are case-sensitive
	} {
		d, ok, err := parseTimeout(tc.in)
		if (err != nil) != tc.err || ok != tc.ok || (tc.ok && d/time.Hour != tc.want/time.Hour) || (tc.ok && tc.want < time.Hour && d != tc.want) {
			t.Errorf("parseTimeout(%q) = %v %v %v", tc.in, d, ok, err)
		}
	}
	for _, d := range []time.Duration{1, 999, 99999999, 100000000, 1500 * time.Millisecond, 30 * time.Second, 50 * 24 * time.Hour, 8000 * time.Hour} {
		enc := encodeTimeout(d)
		back, ok, err := parseTimeout(enc)
		if err != nil || !ok || len(enc) > 9 {
			t.Fatalf("encodeTimeout(%v) = %q: %v", d, enc, err)
		}
		// Rounded up to the unit, never down (the service must not get
		// less time than the gateway allows), within one unit.
		if back < d || back-d > back/1e7+1 {
			t.Errorf("encodeTimeout(%v) = %q reads back as %v", d, enc, back)
		}
	}
	if got := encodeTimeout(-time.Second); got != "1n" {
		t.Errorf("an expired deadline encodes as %q", got)
	}
}

// frames returns gRPC length-prefixed messages of the given sizes.
func frames(sizes ...int) []byte {
	var b bytes.Buffer
	for _, n := range sizes {
		var hdr [5]byte
		binary.BigEndian.PutUint32(hdr[1:], uint32(n))
		b.Write(hdr[:])
		b.Write(bytes.Repeat([]byte{'m'}, n))
	}
	return b.Bytes()
}

// oneByte reads one byte at a time: message prefixes split across reads.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(1, len(p))]) }

func TestMessageLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sizes   []int
		tooBig  bool
		chunked bool
	}{
		{"under", []int{0, 10, 100}, false, false},
		{"at the limit", []int{100, 100}, false, false},
		{"over", []int{10, 101, 5}, true, false},
		{"under, split reads", []int{3, 100, 0, 7}, false, true},
		{"over, split reads", []int{3, 100, 101}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(frames(tc.sizes...))
			if tc.chunked {
				r = oneByte{r}
			}
			b := &sendBody{r: r, max: 100}
			n, err := io.Copy(io.Discard, b)
			if tc.tooBig {
				if !errors.Is(err, errMessageTooLarge) || !b.tooLarge.Load() {
					t.Fatalf("copied %d: %v, want errMessageTooLarge", n, err)
				}
				return
			}
			if err != nil || n != int64(len(frames(tc.sizes...))) || b.sent.Load() != n {
				t.Fatalf("copied %d (sent %d): %v", n, b.sent.Load(), err)
			}
		})
	}
}
