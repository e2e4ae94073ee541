package syncer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFileName is the applied snapshot inside the state dir.
const stateFileName = "snapshot.json"

// saveState writes raw (an encoded, already verified snapshot) so that a
// crash at any point leaves either the old file or the new one, never a
// torn mix: write a temp file, fsync it, rename over the old one, fsync the
// directory so the rename itself is durable.
func saveState(dir string, raw []byte) error {
	return saveStateWith(dir, func(w io.Writer) error {
		_, err := w.Write(raw)
		return err
	})
}

// saveStateWith is saveState for content produced by write.
func saveStateWith(dir string, write func(io.Writer) error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, stateFileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("save state: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save state: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	final := filepath.Join(dir, stateFileName)
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save state: sync dir %s: %w", dir, err)
	}
	return nil
}

// loadState returns the saved snapshot bytes, or nil if there is none.
func loadState(dir string) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	return raw, nil
}
