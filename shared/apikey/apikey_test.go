package apikey

import (
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	k1, id1, h1, err := New()
	if err != nil {
		t.Fatal(err)
	}
	k2, id2, h2, _ := New()
	if k1 == k2 || id1 == id2 || h1 == h2 {
		t.Fatal("two keys are not distinct")
	}
	if Hash(k1) != h1 || !strings.HasPrefix(h1, "sha256:") || len(h1) != 71 {
		t.Fatalf("hash %q", h1)
	}
	if strings.Contains(h1, k1) || !LooksLikeKey(k1) || Prefix(k1) != k1[:7] {
		t.Fatalf("key %q prefix %q", k1, Prefix(k1))
	}
}
