package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/controlplane/internal/store/storetest"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// TestBoltFileWithoutCertificatesBucket: a file of the objects layout
// written before the certificates kind existed opens (the bucket is
// created), and certificates are then stored and loaded like any kind.
func TestBoltFileWithoutCertificatesBucket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pre-certs.db")
	ctx := context.Background()
	s := openBolt(t, path)
	first := &store.State{Revision: 1, Epoch: snapshot.Epoch{ID: "e"}, Config: storetest.LargeConfig(3)}
	if err := s.Commit(ctx, first, store.AuditEntry{Revision: 1, Action: "import"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte("certificates")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s = openBolt(t, path)
	next := &store.State{Revision: 2, Epoch: first.Epoch, Config: *first.Config.Clone()}
	next.Config.Certificates = []config.Certificate{{Name: "api", Cert: "c", Key: "k", SNIs: []string{"a.example.com"}, Meta: config.Meta{Version: 1, Revision: 2}}}
	touched := snapshot.Changes(&first.Config, &next.Config)
	next.Touched = &touched
	if err := s.Commit(ctx, next, store.AuditEntry{Revision: 2, Action: "create"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openBolt(t, path)
	defer s.Close()
	got, err := s.Load(ctx)
	if err != nil || len(got.Config.Certificates) != 1 || got.Config.Certificates[0].Key != "k" {
		t.Fatalf("certificates after reopen: %+v, %v", got.Config.Certificates, err)
	}
}
