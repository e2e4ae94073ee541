package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/controlplane/internal/store/storetest"
)

func openBolt(t *testing.T, path string) *store.Bolt {
	t.Helper()
	s, err := store.OpenBolt(path)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	return s
}

func TestBolt(t *testing.T) {
	storetest.Run(t,
		func(t *testing.T) store.Store {
			return openBolt(t, filepath.Join(t.TempDir(), "portico.db"))
		},
		storetest.WithReopen(func(t *testing.T, old store.Store) store.Store {
			return openBolt(t, old.(*store.Bolt).Path())
		}),
	)
}

func TestBoltCreatesPrivateFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "var", "lib", "portico", "portico.db")
	s := openBolt(t, path)
	defer s.Close()
	// Configuration can carry credentials: nobody but the owner may read it.
	for _, p := range []string{path, filepath.Dir(path)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s: mode %v, want no group or other access", p, perm)
		}
	}
}

func TestBoltLockedByAnotherOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portico.db")
	first := openBolt(t, path)
	defer first.Close()

	start := time.Now()
	second, err := store.OpenBolt(path)
	if err == nil {
		second.Close()
		t.Fatal("second OpenBolt on an open file succeeded")
	}
	if !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say the file %s is locked", err, path)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("second OpenBolt took %v to fail", d)
	}

	// Once the first closes, the file can be opened again.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	openBolt(t, path).Close()
}

// TestBoltDamagedFile ruins the file of a store holding a few revisions, the
// way a bad disk, copy or restore would.
func TestBoltDamagedFile(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"first page only", func(t *testing.T, path string) { truncate(t, path, 4096) }},
		{"truncated to half", func(t *testing.T, path string) {
			truncate(t, path, fileSize(t, path)/2)
		}},
		{"not a bolt file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("portico config\n", 4096)), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"meta pages zeroed", func(t *testing.T, path string) { overwrite(t, path, 0, 2*4096, 0) }},
		{"data pages garbage", func(t *testing.T, path string) {
			overwrite(t, path, 2*4096, fileSize(t, path)-2*4096, 0xA5)
		}},
		{"data pages garbage, freelist intact", garbleExceptFreelist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "portico.db")
			s := openBolt(t, path)
			populate(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, path)

			// Open or a later call must fail, and none may panic.
			s, err := store.OpenBolt(path)
			if err != nil {
				t.Logf("OpenBolt: %v", err)
				return
			}
			defer s.Close()
			ctx := context.Background()
			_, lerr := s.Load(ctx)
			_, aerr := s.Audit(ctx, 0, 100)
			if lerr == nil && aerr == nil {
				t.Fatal("damaged file opened and read without error")
			}
			t.Logf("Load: %v; Audit: %v", lerr, aerr)
		})
	}
}

// A zero-length file is how a new store starts (bbolt initialises it, and an
// operator may well create it with touch), so it opens as an empty store.
func TestBoltZeroLengthFileIsNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portico.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := openBolt(t, path)
	defer s.Close()
	st, err := s.Load(context.Background())
	if err != nil || st.Revision != 0 {
		t.Fatalf("Load = %+v, %v; want revision 0", st, err)
	}
}

func populate(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	for rev := int64(1); rev <= 3; rev++ {
		next := &store.State{Revision: rev, Config: storetest.LargeConfig(300)}
		if err := s.Commit(ctx, next, store.AuditEntry{Revision: rev, Actor: "test", Action: "import"}); err != nil {
			t.Fatal(err)
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func overwrite(t *testing.T, path string, off, n int64, b byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{b}, int(n)), off); err != nil {
		t.Fatal(err)
	}
}

// garbleExceptFreelist overwrites every page but the meta pages and the
// freelists they name, so that bbolt opens the file and meets the damage only
// when it reads the buckets. It reads bbolt's on-disk format (4 KiB pages, a
// 16-byte page header, the freelist id at offset 32 of the meta).
func garbleExceptFreelist(t *testing.T, path string) {
	t.Helper()
	const page = 4096
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keep := map[uint64]bool{0: true, 1: true}
	for _, m := range []uint64{0, 1} {
		fl := binary.LittleEndian.Uint64(b[m*page+16+32:])
		overflow := uint64(binary.LittleEndian.Uint32(b[fl*page+12:]))
		for p := fl; p <= fl+overflow; p++ {
			keep[p] = true
		}
	}
	for p := uint64(0); p < uint64(len(b))/page; p++ {
		if !keep[p] {
			copy(b[p*page:(p+1)*page], bytes.Repeat([]byte{0xA5}, page))
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
