package auth_test

import (
	"context"
	"testing"

	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/shared/basicauth"
	"github.com/portico-gw/portico/shared/config"
)

// BenchmarkVerifyBasic: a remembered credential (every request after a
// client's first) against a full bcrypt check at the control plane's cost
// (a client's first request, or any wrong password).
func BenchmarkVerifyBasic(b *testing.B) {
	const pw = "a long enough password"
	h, err := basicauth.Hash(pw)
	if err != nil {
		b.Fatal(err)
	}
	consumers := []config.Consumer{{Name: "alice", BasicAuth: []config.BasicCredential{{ID: "basic-1", Username: "alice", Hash: h}}}}
	ctx := context.Background()
	b.Run("remembered", func(b *testing.B) {
		v := auth.NewVerifier(nil, consumers, auth.WithBasicChecker(auth.NewBasicChecker(auth.BasicOptions{})))
		if _, err := v.VerifyBasic(ctx, "alice", pw); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.VerifyBasic(ctx, "alice", pw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bcrypt", func(b *testing.B) {
		v := auth.NewVerifier(nil, consumers, auth.WithBasicChecker(auth.NewBasicChecker(auth.BasicOptions{})))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.VerifyBasic(ctx, "alice", "the wrong password"); err == nil {
				b.Fatal("accepted")
			}
		}
	})
}
