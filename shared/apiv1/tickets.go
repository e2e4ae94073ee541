package apiv1

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// TLS session-ticket keys of the cluster (docs/SECURITY.md "TLS session
// tickets"). The control plane sends them to data planes in
// HeaderTicketKeys on every answer of the sync API (a new snapshot, a
// delta or "nothing new"), so a rotation reaches every data plane within
// one long-poll wait without being a revision. They are secrets: no other
// answer carries them, and nothing logs them (TicketKeys prints as a
// count).
const (
	// HeaderTicketKeys: the keys in the order tls.Config.SetSessionTicketKeys
	// wants them (the one that encrypts new tickets first, then the ones
	// still accepted), each the unpadded base64url of TicketKeyBytes bytes,
	// separated by commas. Absent: the control plane has none yet; the
	// data plane keeps the keys it has.
	HeaderTicketKeys = "X-Portico-Tls-Ticket-Keys"
	// TicketKeyBytes is the size of one key (what SetSessionTicketKeys
	// takes).
	TicketKeyBytes = 32
	// MaxTicketKeys bounds the keys in use at once (about 1.4 KB of
	// header at most).
	MaxTicketKeys = 32
)

// TicketKeys are session-ticket keys, the encrypting one first. Printed or
// logged, they show only their count and the encrypting key's ID.
type TicketKeys [][TicketKeyBytes]byte

// String implements fmt.Stringer without the keys.
func (k TicketKeys) String() string {
	if len(k) == 0 {
		return "no ticket keys"
	}
	return fmt.Sprintf("%d ticket keys (encrypting %s)", len(k), TicketKeyID(k[0]))
}

// GoString keeps %#v from printing the keys.
func (k TicketKeys) GoString() string { return k.String() }

// LogValue keeps slog from printing the keys.
func (k TicketKeys) LogValue() slog.Value { return slog.StringValue(k.String()) }

// TicketKeyID names a key without revealing it: the first 8 bytes of its
// SHA-256, in hex. Data planes report the ID of the key they encrypt with,
// so an operator can see that they agree.
func TicketKeyID(key [TicketKeyBytes]byte) string {
	h := sha256.Sum256(key[:])
	return hex.EncodeToString(h[:8])
}

// EncodeTicketKeys writes keys as HeaderTicketKeys' value; "" for none.
func EncodeTicketKeys(keys TicketKeys) string {
	parts := make([]string, len(keys))
	for i := range keys {
		parts[i] = base64.RawURLEncoding.EncodeToString(keys[i][:])
	}
	return strings.Join(parts, ",")
}

// DecodeTicketKeys reads HeaderTicketKeys' value; nil for "". The error
// never quotes the value.
func DecodeTicketKeys(v string) (TicketKeys, error) {
	if v == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > MaxTicketKeys {
		return nil, fmt.Errorf("%s: %d keys, at most %d", HeaderTicketKeys, len(parts), MaxTicketKeys)
	}
	keys := make(TicketKeys, len(parts))
	for i, p := range parts {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(p))
		if err != nil || len(b) != TicketKeyBytes {
			return nil, fmt.Errorf("%s: key %d: %w", HeaderTicketKeys, i, errBadTicketKey)
		}
		copy(keys[i][:], b)
	}
	return keys, nil
}

var errBadTicketKey = errors.New("not the base64url of 32 bytes")

// EncodeNodeTLS writes HeaderNodeTLS' value for t; "" for nil (no TLS
// listener).
func EncodeNodeTLS(t *DataplaneTLS) string {
	switch {
	case t == nil:
		return ""
	case t.HTTP3:
		return "tls, http3"
	}
	return "tls"
}

// DecodeNodeTLS reads a poll's HeaderNodeTLS and HeaderNodeTicketKey;
// nil when the node has no TLS listener. Unknown tokens are ignored (a
// newer data plane may say more); a ticket-key ID that is not 1 to 64 hex
// digits is an error.
func DecodeNodeTLS(tlsValue, ticketKey string) (*DataplaneTLS, error) {
	t := &DataplaneTLS{}
	on := false
	for tok := range strings.SplitSeq(tlsValue, ",") {
		switch strings.ToLower(strings.TrimSpace(tok)) {
		case "tls":
			on = true
		case "http3":
			t.HTTP3 = true
		}
	}
	if ticketKey != "" {
		if _, err := hex.DecodeString(ticketKey); err != nil || len(ticketKey) > 64 {
			return nil, fmt.Errorf("%s: must be 1 to 64 hex digits", HeaderNodeTicketKey)
		}
	}
	if !on {
		return nil, nil
	}
	t.TicketKey = ticketKey
	return t, nil
}
