package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --token-file reads the sync token from a mounted secret; a value and a
// file together are refused.
func TestTokenFile(t *testing.T) {
	t.Setenv("PORTICO_DATAPLANE_TOKEN", "")
	t.Setenv("PORTICO_DATAPLANE_TOKEN_FILE", "")
	file := filepath.Join(t.TempDir(), "dataplane-token")
	if err := os.WriteFile(file, []byte("d-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := parseFlags([]string{"--token-file", file})
	if err != nil || *f.token != "d-token" {
		t.Fatalf("--token-file: token %q, %v", *f.token, err)
	}
	t.Setenv("PORTICO_DATAPLANE_TOKEN_FILE", file)
	if f, err = parseFlags(nil); err != nil || *f.token != "d-token" {
		t.Fatalf("PORTICO_DATAPLANE_TOKEN_FILE: token %q, %v", *f.token, err)
	}
	if _, err := parseFlags([]string{"--token", "x"}); err == nil || !strings.Contains(err.Error(), "--token and --token-file") {
		t.Fatalf("--token with PORTICO_DATAPLANE_TOKEN_FILE: %v", err)
	}
}

// --http3-advertise-port: 0 (the listener's port) by default, a port with
// --http3, refused out of range or without --http3.
func TestHTTP3AdvertisePortFlag(t *testing.T) {
	t.Setenv("PORTICO_HTTP3_ADVERTISE_PORT", "")
	t.Setenv("PORTICO_HTTP3", "")
	cases := []struct {
		args []string
		want int64
		err  string
	}{
		{args: nil, want: 0},
		{args: []string{"--http3", "--http3-advertise-port", "443"}, want: 443},
		{args: []string{"--http3", "--http3-advertise-port", "65536"}, err: "not a port"},
		{args: []string{"--http3", "--http3-advertise-port", "-1"}, err: "not a port"},
		{args: []string{"--http3-advertise-port", "443"}, err: "needs --http3"},
	}
	for _, tc := range cases {
		f, err := parseFlags(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || *f.http3Port != tc.want {
			t.Errorf("%v: %d %v, want %d", tc.args, *f.http3Port, err, tc.want)
		}
	}
	t.Setenv("PORTICO_HTTP3", "true")
	t.Setenv("PORTICO_HTTP3_ADVERTISE_PORT", "8443")
	if f, err := parseFlags(nil); err != nil || *f.http3Port != 8443 {
		t.Errorf("from the environment: %v", err)
	}
}
