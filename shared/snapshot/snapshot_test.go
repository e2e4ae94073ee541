package snapshot

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portico-gw/portico/shared/config"
)

func sample() *config.Config {
	return &config.Config{
		Services:  []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://127.0.0.1:1", Weight: 2}}}},
		Routes:    []*config.Route{{Name: "r", Paths: []string{"/a/*"}, Service: "s", Timeout: config.Duration(time.Second)}},
		Consumers: []config.Consumer{},
	}
}

func TestRoundTrip(t *testing.T) {
	s, raw, err := Encode(7, sample(), time.Unix(100, 0))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
}

func TestDecodeRefusesDamage(t *testing.T) {
	_, raw, err := Encode(3, sample(), time.Unix(100, 0))
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(raw, []byte(`"weight":2`), []byte(`"weight":3`), 1)
	if _, err := Decode(tampered); !errors.Is(err, ErrChecksum) {
		t.Fatalf("tampered config: err = %v, want ErrChecksum", err)
	}
	for n := 0; n < len(raw); n += len(raw)/17 + 1 {
		if _, err := Decode(raw[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	if _, err := Decode([]byte(`{"revision":0,"checksum":"","config":{}}`)); err == nil {
		t.Fatal("revision 0 accepted")
	}
}

func FuzzSnapshotDecode(f *testing.F) {
	_, raw, _ := Encode(1, sample(), time.Unix(0, 0))
	f.Add(raw)
	f.Add([]byte(`{"revision":1,"checksum":"sha256:00","config":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(data)
		if err != nil {
			return
		}
		// Anything accepted must re-encode to a snapshot that decodes equal.
		_, again, err := Encode(s.Revision, &s.Config, s.CreatedAt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatalf("re-encoded snapshot refused: %v", err)
		}
	})
}

func TestEpochSupersedes(t *testing.T) {
	a := Epoch{ID: "A"}
	b := Epoch{ID: "B", Prev: "A"}
	for _, tc := range []struct {
		name       string
		rev        int64
		ep         Epoch
		applied    Epoch
		appliedRev int64
		want       bool
	}{
		{"higher revision", 6, a, a, 5, true},
		{"same revision", 5, a, a, 5, false},
		{"lower revision", 4, a, a, 5, false},
		{"new epoch, lower revision", 1, b, a, 5, true},
		{"back to the epoch left", 9, a, b, 1, false},
		{"a third epoch", 1, Epoch{ID: "C", Prev: "B"}, a, 5, true},
		{"nothing applied yet", 1, a, Epoch{}, 0, true},
		{"store older than epochs", 6, Epoch{}, a, 5, true},
		{"store older than epochs, lower", 4, Epoch{}, a, 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.ep.Supersedes(tc.rev, tc.applied, tc.appliedRev); got != tc.want {
				t.Errorf("%+v@%d supersedes %+v@%d = %v, want %v", tc.ep, tc.rev, tc.applied, tc.appliedRev, got, tc.want)
			}
		})
	}
}
