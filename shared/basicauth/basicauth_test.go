package basicauth

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestNewAndHash(t *testing.T) {
	p1, err := NewPassword()
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := NewPassword()
	if p1 == p2 || len(p1) != 32 {
		t.Fatalf("passwords %q %q", p1, p2)
	}
	id1, _ := NewID()
	id2, _ := NewID()
	if id1 == id2 || !strings.HasPrefix(id1, "basic-") || len(id1) != 18 {
		t.Fatalf("ids %q %q", id1, id2)
	}
	h, err := Hash(p1)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, p1) {
		t.Fatal("the hash contains the password")
	}
	if c, err := bcrypt.Cost([]byte(h)); err != nil || c != Cost {
		t.Fatalf("cost %d %v", c, err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte(p1)) != nil || bcrypt.CompareHashAndPassword([]byte(h), []byte(p2)) == nil {
		t.Fatal("the hash does not verify its own password only")
	}
	h2, _ := Hash(p1)
	if h2 == h {
		t.Fatal("two hashes of one password are equal: no salt")
	}
}
