package bearer

import "testing"

func TestToken(t *testing.T) {
	for _, tt := range []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"Bearer   abc  ", "abc", true},
		{"Bearer a.b.c", "a.b.c", true},
		{"Bearer ", "", false},
		{"Bearer    ", "", false},
		{"Bearer", "", false},
		{"Bearerabc", "", false},
		{"Basic YWxhZGRpbjpvcGVuc2VzYW1l", "", false},
		{"Token abc", "", false},
		{" Bearer abc", "", false},
		{"", "", false},
	} {
		tok, ok := Token(tt.header)
		if tok != tt.token || ok != tt.ok {
			t.Errorf("Token(%q) = %q, %v; want %q, %v", tt.header, tok, ok, tt.token, tt.ok)
		}
	}
}

// TestRoundTrip: what the client writes is what the servers read.
func TestRoundTrip(t *testing.T) {
	for _, tok := range []string{"abc", "pt_0123456789", "eyJ.eyJ.sig"} {
		if got, ok := Token(Authorization(tok)); !ok || got != tok {
			t.Errorf("Token(Authorization(%q)) = %q, %v", tok, got, ok)
		}
	}
}
