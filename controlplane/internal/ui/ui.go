// Package ui serves the admin web UI at /ui/: static files embedded in the
// control-plane binary (hand-written JavaScript modules and CSS, no build
// step, nothing fetched at run time) that talk to the admin API under /v1
// with the token the operator signs in with.
//
// The UI holds an admin credential, so its pages are locked down:
//
//   - A strict Content-Security-Policy: scripts, styles, images and
//     connections only from this origin, no inline script or style, no
//     eval, no plugins, no <base>, forms only to this origin. An injected
//     string therefore cannot run as code, and a script that did run could
//     not send the token anywhere but back to this control plane.
//   - frame-ancestors 'none' and X-Frame-Options: DENY: no clickjacking.
//   - X-Content-Type-Options: nosniff, and a Content-Type for every file.
//   - Referrer-Policy: no-referrer; Cross-Origin-Opener-Policy and
//     Cross-Origin-Resource-Policy: same-origin.
//   - Cache-Control: no-cache, so an upgraded binary's files are used at
//     once (they are revalidated by ETag, a hash of the embedded content).
//
// The token never appears in a URL: the UI keeps it in sessionStorage and
// sends it in the Authorization header (docs/SECURITY.md says why).
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// CSP is the Content-Security-Policy of every UI answer.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// SecurityHeaders sets the headers every UI answer carries, errors included.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
}

// file is one embedded asset, read once at start.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the UI's files under prefix (e.g. "/ui/"). Every path that
// is not a file answers index.html's client-side routes through the hash,
// so unknown paths are plain 404s.
func Handler(prefix string) http.Handler {
	files := map[string]file{}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) { // not left to the host's mime tables
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".html":
			ct = "text/html; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		files[p] = file{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		SecurityHeaders(h)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, prefix)
		if name == "" {
			name = "index.html"
		}
		f, ok := files[name]
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		if r.Header.Get("If-None-Match") == f.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(f.body)
	})
}
