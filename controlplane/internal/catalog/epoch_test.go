package catalog

import (
	"testing"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/snapshot"
)

// TestWentBack is the rule that tells a store that went back in time from
// one that moved on (the end-to-end cases are in api's TestStoreReset).
func TestWentBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		seen  mark
		store store.State
		want  bool
	}{
		{"same revision", mark{5, "A"}, store.State{Revision: 5, Epoch: snapshot.Epoch{ID: "A"}}, false},
		{"moved on", mark{5, "A"}, store.State{Revision: 9, Epoch: snapshot.Epoch{ID: "A"}}, false},
		{"rolled back", mark{5, "A"}, store.State{Revision: 4, Epoch: snapshot.Epoch{ID: "A"}}, true},
		{"emptied", mark{5, "A"}, store.State{}, true},
		{"re-seeded by someone else", mark{5, "A"}, store.State{Revision: 7, Epoch: snapshot.Epoch{ID: "X"}}, true},
		{"adopted by a replica", mark{5, "A"}, store.State{Revision: 1, Epoch: snapshot.Epoch{ID: "B", Prev: "A"}}, false},
		{"store older than epochs gains one", mark{5, ""}, store.State{Revision: 6, Epoch: snapshot.Epoch{ID: "A"}}, false},
		{"store older than epochs emptied", mark{5, ""}, store.State{}, true},
		{"new store", mark{0, ""}, store.State{}, false},
		{"new store, first write elsewhere", mark{0, ""}, store.State{Revision: 1, Epoch: snapshot.Epoch{ID: "A"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := wentBack(tc.seen, &tc.store); got != tc.want {
				t.Errorf("wentBack(seen %+v, store %d %+v) = %v, want %v", tc.seen, tc.store.Revision, tc.store.Epoch, got, tc.want)
			}
		})
	}
}
