// Package secretfile keeps secrets in files: the binaries read their tokens
// from one (--admin-token-file, --token-file: a Kubernetes Secret volume, a
// Docker secret, the compose stack's secrets volume) instead of an
// environment variable that `docker inspect` and /proc show, and Ensure makes
// the files a first start needs, once.
//
// Ensure is the compose stack's zero-setup step (`controlplane
// init-secrets`): every secret is a file of its own in one directory, mode
// 0600, owned by the one user that reads it. A file that exists is kept, so
// a restart reuses what the first start made; an environment value (the
// operator's .env) replaces the file's content, so .env still decides; a
// missing one is generated from crypto/rand. A generated secret is printed
// only when the spec says so (the admin token and the demo API key, which
// the operator needs at once), and only on the start that made it: later
// starts print names, never values.
package secretfile

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
)

// maxSize bounds what Read accepts: tokens are short, and a path pointing at
// a large file by mistake should fail, not be held in memory.
const maxSize = 64 << 10

// Read returns the secret in the file at path, without the trailing line
// break editors and `echo` add. An empty file is an error: an empty token
// would be no token.
func Read(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxSize {
		return "", fmt.Errorf("%s: larger than %d bytes, not a secret", path, maxSize)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// Resolve fills *value from file when file is set: the binaries' pairs of
// flags (--admin-token / --admin-token-file). Both set is an error rather
// than a silent choice.
func Resolve(value *string, file, valueFlag, fileFlag string) error {
	if file == "" {
		return nil
	}
	if *value != "" {
		return fmt.Errorf("--%s and --%s are both set; give one", valueFlag, fileFlag)
	}
	v, err := Read(file)
	if err != nil {
		return fmt.Errorf("--%s: %w", fileFlag, err)
	}
	*value = v
	return nil
}

// Kind says how a secret is generated.
type Kind int

const (
	// Token: 32 random bytes in base64url (43 characters), which every
	// consumer of the compose stack's secrets accepts (bearer tokens, the
	// HS256 key, Grafana's password).
	Token Kind = iota
	// APIKey: a Portico consumer API key (pk_...), as POST
	// /v1/consumers/{name}/api-keys makes and imports.
	APIKey
)

// Spec describes one secret file.
type Spec struct {
	// Name is the file's name in the directory.
	Name string
	// Env names the variable whose non-empty value is the secret, replacing
	// the file's content (the operator's .env); empty: none.
	Env  string
	Kind Kind
	// Show prints the secret on the start that generates it.
	Show bool
	// UID and GID own the file; -1 leaves the creator's.
	UID, GID int
}

// ParseSpec reads "NAME[:option]...", options being env=VAR, apikey, show
// and owner=UID:GID (default: owner, "" for the creator's). Names are plain
// file names.
func ParseSpec(s, owner string) (Spec, error) {
	parts := strings.Split(s, ":")
	sp := Spec{Name: parts[0]}
	if !validName(sp.Name) {
		return Spec{}, fmt.Errorf("secret %q: the name must be letters, digits, '-', '_' or '.', not starting with '.'", s)
	}
	for i := 1; i < len(parts); i++ {
		opt, val, _ := strings.Cut(parts[i], "=")
		switch opt {
		case "env":
			if val == "" {
				return Spec{}, fmt.Errorf("secret %s: env= needs a variable name", sp.Name)
			}
			sp.Env = val
		case "apikey":
			sp.Kind = APIKey
		case "show":
			sp.Show = true
		case "owner":
			// "owner=472:0" was split at its colon above.
			if i+1 < len(parts) {
				val += ":" + parts[i+1]
				i++
			}
			owner = val
		default:
			return Spec{}, fmt.Errorf("secret %s: unknown option %q (env=VAR, apikey, show, owner=UID:GID)", sp.Name, parts[i])
		}
	}
	var err error
	if sp.UID, sp.GID, err = parseOwner(owner); err != nil {
		return Spec{}, fmt.Errorf("secret %s: %w", sp.Name, err)
	}
	return sp, nil
}

func validName(n string) bool {
	if n == "" || n[0] == '.' || len(n) > 128 {
		return false
	}
	return strings.Trim(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == ""
}

func parseOwner(s string) (uid, gid int, err error) {
	if s == "" {
		return -1, -1, nil
	}
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("owner %q: want UID:GID in numbers", s)
	}
	return uid, gid, nil
}

// Ensure makes every secret of specs exist in dir, as the package comment
// says, and reports what it did to out (values only for Show secrets it
// generated). Every environment value is checked before any file is
// written, so a bad one changes nothing.
func Ensure(dir string, specs []Spec, getenv func(string) string, out io.Writer) error {
	values := make([]string, len(specs))
	seen := map[string]bool{}
	for i, sp := range specs {
		if seen[sp.Name] {
			return fmt.Errorf("secret %s is listed twice", sp.Name)
		}
		seen[sp.Name] = true
		if sp.Env == "" {
			continue
		}
		v := strings.TrimRight(getenv(sp.Env), "\r\n")
		if v != "" && sp.Kind == APIKey {
			if err := config.ValidateAPIKey(v); err != nil {
				return fmt.Errorf("%s: %w", sp.Env, err)
			}
		}
		values[i] = v
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i, sp := range specs {
		path := filepath.Join(dir, sp.Name)
		v, what := values[i], "set from "+sp.Env
		if v == "" {
			cur, err := Read(path)
			switch {
			case err == nil:
				v, what = cur, "kept"
			case errors.Is(err, os.ErrNotExist):
				if v, err = generate(sp.Kind); err != nil {
					return err
				}
				what = "generated"
			default:
				// Unreadable or empty: regenerating would silently
				// replace a secret something may still use.
				return fmt.Errorf("secret %s: %w (remove the file to generate a new one)", sp.Name, err)
			}
		}
		if err := write(path, v, sp.UID, sp.GID); err != nil {
			return fmt.Errorf("secret %s: %w", sp.Name, err)
		}
		if what == "generated" && sp.Show {
			fmt.Fprintf(out, "init-secrets: %s generated, shown this once (kept in %s): %s\n", sp.Name, path, v)
		} else {
			fmt.Fprintf(out, "init-secrets: %s %s\n", sp.Name, what)
		}
	}
	return nil
}

func generate(k Kind) (string, error) {
	if k == APIKey {
		key, _, _, err := apikey.New()
		return key, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// write puts v in path with mode 0600 and the given owner, unless it is
// already exactly that. A new content goes to a temporary file in the same
// directory, synced and renamed over path: a crash leaves the old secret or
// the new one, never half of one.
func write(path, v string, uid, gid int) error {
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(bytes.TrimRight(cur, "\r\n"), []byte(v)) {
			if err := os.Chmod(path, 0o600); err != nil {
				return err
			}
			return chown(path, uid, gid)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(v + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := chown(tmp.Name(), uid, gid); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func chown(path string, uid, gid int) error {
	if uid < 0 {
		return nil
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %d:%d (init-secrets runs as root to give each file its reader): %w", uid, gid, err)
	}
	return nil
}
