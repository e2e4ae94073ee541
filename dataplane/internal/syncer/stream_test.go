package syncer

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// TestWriteSealedIsEncode: the state file written object by object decodes
// as a snapshot and has the checksum snapshot.EncodeEpoch gives the same
// configuration (the control plane's), with nil, empty and full
// collections, with and without an epoch.
func TestWriteSealedIsEncode(t *testing.T) {
	full := &config.Config{Global: config.Global{RateLimit: &config.RateLimit{Limit: 5, Window: config.Duration(time.Second)}}}
	for i := range 600 {
		full.Routes = append(full.Routes, &config.Route{Name: fmt.Sprintf("r%03d", i), Paths: []string{fmt.Sprintf("/r%d/<&>", i)}, Service: "s",
			Meta: config.Meta{Version: 1, Revision: int64(i + 1), UpdatedAt: time.Unix(int64(i), 5).UTC()}})
	}
	full.Services = []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://h:1"}}}}
	full.Consumers = []config.Consumer{}
	cases := []struct {
		name  string
		cfg   *config.Config
		epoch snapshot.Epoch
	}{
		{"empty", &config.Config{}, snapshot.Epoch{}},
		{"full", full, snapshot.Epoch{ID: "E1", Prev: "E0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at := time.Unix(1700000000, 123).UTC()
			want, _, err := snapshot.EncodeEpoch(42, tc.epoch, tc.cfg, at)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			sum, err := writeSealed(&buf, &snapshot.Snapshot{Revision: 42, Epoch: tc.epoch, CreatedAt: at, Config: *tc.cfg})
			if err != nil {
				t.Fatal(err)
			}
			got, err := snapshot.Decode(buf.Bytes())
			if err != nil {
				t.Fatalf("%v\n%s", err, buf.Bytes()[:min(buf.Len(), 300)])
			}
			if sum != want.Checksum || got.Checksum != want.Checksum || got.Revision != 42 || got.Epoch != tc.epoch || !got.CreatedAt.Equal(at) {
				t.Fatalf("sealed %s (decoded %+v), EncodeEpoch says %s", sum, got.Checksum, want.Checksum)
			}
		})
	}
}
