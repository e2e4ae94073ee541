package apiv1

import (
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestRejectedHeaderBounds: however many objects a data plane rejects and
// however long their reasons, its report fits 8 KiB encoded and round-trips
// with bounded fields; garbage is an error.
func TestRejectedHeaderBounds(t *testing.T) {
	var many []config.Rejected
	for i := range 100 {
		many = append(many, config.NewRejected(config.KindRoute, strings.Repeat("r", 200)+string(rune('a'+i%26)), strings.Repeat("x\n\u00e9", 400)))
	}
	tests := []struct {
		name    string
		list    []config.Rejected
		wantMin int
	}{
		{"none", nil, 0},
		{"one", many[:1], 1},
		{"many, long", many, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := EncodeRejected(tt.list)
			if len(v) > maxRejectedEncoded {
				t.Fatalf("encoded %d bytes, more than %d", len(v), maxRejectedEncoded)
			}
			got, err := DecodeRejected(v)
			if err != nil || len(got) < tt.wantMin || len(got) > config.MaxRejectedObjects {
				t.Fatalf("decoded %d entries, %v", len(got), err)
			}
			for _, r := range got {
				if len(r.Reason) > config.MaxRejectedReason+len("…") || len(r.Name) > config.MaxNameLen {
					t.Fatalf("unbounded entry: %d/%d bytes", len(r.Name), len(r.Reason))
				}
			}
		})
	}
	for _, bad := range []string{"%%%", "bm90IGpzb24", strings.Repeat("A", maxRejectedHeader*2)} {
		if _, err := DecodeRejected(bad); err == nil {
			t.Errorf("DecodeRejected(%.20q…) accepted", bad)
		}
	}
}
