// Package extconnect turns on HTTP/2 extended CONNECT (RFC 8441: WebSocket
// over HTTP/2) in net/http's HTTP/2 server, for the whole process, unless
// the operator turned it off with GODEBUG=http2xconnect=0.
//
// Go's HTTP/2 server announces SETTINGS_ENABLE_CONNECT_PROTOCOL only when
// the GODEBUG environment variable holds http2xconnect=1, and it reads the
// variable once, with os.Getenv, in net/http's package initialisation (a
// //go:debug directive does not reach it). So the variable must be set
// before net/http initialises, by Go code of the same program: this
// package's init.
//
// Why its init runs first: since Go 1.21 the specification orders package
// initialisation by import path, the first package (in path order) whose
// imports are all initialised going next. This package imports only "os"
// and "strings", which net/http imports too, so it is ready no later than
// net/http, and its path (github.com/portico-gw/...) sorts before
// "net/http": it is initialised before net/http in every program that
// links it (the data plane's main, a test binary). Tests check that an
// HTTP/2 client sees the setting, here (TestGODEBUG) and from the built
// data plane (e2e TestWebSocketOverHTTP2), so a toolchain that ordered
// otherwise would fail them.
//
// The data plane's main imports it (the default an operator gets: browsers
// then open WebSockets over their HTTP/2 connection, as with nginx and
// Envoy); tests that need extended CONNECT import it too. Nothing else may
// be imported here: it must stay a leaf of "os" and "strings".
package extconnect

import (
	"os"
	"strings"
)

// setting is the GODEBUG entry net/http looks for.
const setting = "http2xconnect"

func init() {
	if v, ok := merged(os.Getenv("GODEBUG")); ok {
		// Setenv cannot fail for this name and a value without NUL bytes.
		_ = os.Setenv("GODEBUG", v)
	}
}

// merged returns the GODEBUG value with http2xconnect=1 added, and false
// when it already says something about http2xconnect: the operator's
// choice, on or off, stands.
func merged(godebug string) (string, bool) {
	if strings.Contains(godebug, setting+"=") {
		return godebug, false
	}
	if godebug == "" {
		return setting + "=1", true
	}
	return godebug + "," + setting + "=1", true
}

// Enabled reports whether this process's HTTP/2 server offers extended
// CONNECT, by the test net/http applied at its initialisation (a substring
// of GODEBUG).
func Enabled() bool {
	return strings.Contains(os.Getenv("GODEBUG"), setting+"=1")
}
