package ctl

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateReportsFileLines: validate runs offline (no control plane
// is named) and points every failing field at its file and line, across a
// directory of multi-document files; output compared with golden files.
func TestValidateReportsFileLines(t *testing.T) {
	cases, err := filepath.Glob("testdata/validate/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 5 {
		t.Fatalf("only %d validate cases", len(cases))
	}
	for _, dir := range cases {
		if strings.HasSuffix(dir, ".golden") {
			continue
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			// No PORTICO_URL: nothing may be asked of a control plane.
			r := run(t, []string{"HS_SECRET=an-hmac-secret-of-32-bytes-or-more!"}, "", "validate", "-f", dir)
			golden(t, "validate/"+filepath.Base(dir)+".golden", r.out+r.errOut+exitLine(r.code))
		})
	}
}

func exitLine(code int) string { return "exit " + string(rune('0'+code)) + "\n" }
