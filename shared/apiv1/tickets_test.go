package apiv1

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestTicketKeysHeader(t *testing.T) {
	var k1, k2 [TicketKeyBytes]byte
	k1[0], k2[0] = 1, 2
	keys := TicketKeys{k1, k2}
	v := EncodeTicketKeys(keys)
	got, err := DecodeTicketKeys(v)
	if err != nil || len(got) != 2 || got[0] != k1 || got[1] != k2 {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if got, err := DecodeTicketKeys(""); got != nil || err != nil {
		t.Fatalf("empty: %v %v", got, err)
	}
	short := base64.RawURLEncoding.EncodeToString(k1[:31])
	for _, bad := range []string{"!!", short, v + "," + short, strings.Repeat(v+",", MaxTicketKeys/2) + v} {
		if _, err := DecodeTicketKeys(bad); err == nil {
			t.Errorf("%.40q accepted", bad)
		} else if strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), short) {
			t.Errorf("the error quotes the value: %v", err)
		}
	}
	// Printed or logged, keys show a count and the encrypting key's ID.
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "keys", keys)
	for _, s := range []string{fmt.Sprint(keys), fmt.Sprintf("%v %+v %#v %s", keys, keys, keys, keys), logged.String()} {
		if !strings.Contains(s, "2 ticket keys (encrypting "+TicketKeyID(k1)+")") || strings.Contains(s, base64.RawURLEncoding.EncodeToString(k2[:])) {
			t.Errorf("printed: %s", s)
		}
	}
}
