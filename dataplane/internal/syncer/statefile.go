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
	tmp, err := writeTemp(dir, write)
	if err != nil {
		return err
	}
	if err := replaceState(dir, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writeTemp writes the content produced by write to a new file in dir and
// syncs it, returning its path.
func writeTemp(dir string, write func(io.Writer) error) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("save state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, stateFileName+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("save state: %w", err)
	}
	if err := write(tmp); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("save state: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("save state: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("save state: %w", err)
	}
	return tmp.Name(), nil
}

// replaceState renames tmp (from writeTemp) over the state file and syncs
// the directory so the rename itself is durable.
func replaceState(dir, tmp string) error {
	if err := os.Rename(tmp, filepath.Join(dir, stateFileName)); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// removeTemps removes temporary files a crash left in dir.
func removeTemps(dir string) {
	tmps, _ := filepath.Glob(filepath.Join(dir, stateFileName+".tmp-*"))
	for _, t := range tmps {
		_ = os.Remove(t)
	}
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
