package ui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestFilesAndHeaders serves every embedded file with its type and the
// security headers, and nothing else.
func TestFilesAndHeaders(t *testing.T) {
	srv := httptest.NewServer(Handler("/ui/"))
	defer srv.Close()
	cases := []struct {
		path, status, ctype string
	}{
		{"/ui/", "200", "text/html; charset=utf-8"},
		{"/ui/index.html", "200", "text/html; charset=utf-8"},
		{"/ui/app.js", "200", "text/javascript; charset=utf-8"},
		{"/ui/style.css", "200", "text/css; charset=utf-8"},
		{"/ui/favicon.svg", "200", "image/svg+xml"},
		{"/ui/missing.js", "404", ""},
		{"/ui/../go.mod", "404", ""},
		{"/ui/assets/app.js", "404", ""},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+c.path, nil)
			req.URL.Path = c.path // keep dot segments as sent
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Status[:3]; got != c.status {
				t.Fatalf("status %s, want %s", resp.Status, c.status)
			}
			if c.ctype != "" && resp.Header.Get("Content-Type") != c.ctype {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), c.ctype)
			}
			for k, want := range map[string]string{
				"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
				"Referrer-Policy": "no-referrer", "Cross-Origin-Opener-Policy": "same-origin",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	resp, err := http.Post(srv.URL+"/ui/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST = %d, want 405", resp.StatusCode)
	}
	// Revalidation by ETag.
	resp, _ = http.Get(srv.URL + "/ui/app.js")
	resp.Body.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/ui/app.js", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("revalidation = %d %q, want 304 no-cache", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
}

// TestNoInlineCodeOrRemoteLoads keeps the files within what the CSP allows
// (no inline script, style or event handler, nothing loaded from another
// origin), and the UI free of APIs that turn strings into markup or code:
// text reaches the page through textContent only.
func TestNoInlineCodeOrRemoteLoads(t *testing.T) {
	bad := []struct {
		re   *regexp.Regexp
		what string
	}{
		{regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), "inline script"},
		{regexp.MustCompile(`<style`), "style element"},
		{regexp.MustCompile(`\sstyle=`), "style attribute"},
		{regexp.MustCompile(`\son[a-z]+=`), "inline event handler"},
		{regexp.MustCompile(`(?i)(src|href)=["']?(https?:)?//`), "remote resource"},
		{regexp.MustCompile(`(?i)@import|url\(\s*["']?(https?:)?//`), "remote CSS"},
		{regexp.MustCompile(`\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval|new Function)\b`), "string to markup or code"},
		{regexp.MustCompile(`\b(localStorage|document\.cookie)\b`), "token storage other than sessionStorage"},
		{regexp.MustCompile(`(?i)(fetch|import)\s*\(?\s*["'\x60](https?:)?//`), "request to another origin"},
	}
	n := 0
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := assets.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		body, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		n++
		for _, b := range bad {
			if loc := b.re.FindIndex(body); loc != nil {
				t.Errorf("%s: %s: %q", p, b.what, body[loc[0]:min(loc[1]+20, len(body))])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Fatalf("walked %d files", n)
	}
}
