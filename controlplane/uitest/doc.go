// Package uitest drives the admin web UI (controlplane/internal/ui) in a
// real headless Chromium through the DevTools protocol (chromedp), against
// the real controlplane, dataplane and demo-upstream binaries on loopback
// ports: sign-in, editing, validation errors, conflicts, live views.
//
// It holds tests only. It lives in a package of its own so that chromedp
// is a dependency of the tests and never linked into the control plane.
// Chromium comes from scripts/ensure-chromium.sh (make test passes its path
// as CHROMIUM_BIN); a missing Chromium fails the tests.
//
// With PORTICO_UI_SCREENSHOTS=DIR the tests save PNG screenshots of the main
// pages in DIR (make ui-screenshots writes docs/img).
package uitest
