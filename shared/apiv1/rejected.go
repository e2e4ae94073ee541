package apiv1

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/portico-gw/portico/shared/config"
)

// Bounds of HeaderRejected. The sender keeps the encoded value within
// maxRejectedEncoded, so that a poll's headers stay well inside the 16 KiB
// a proxy between data and control planes commonly allows (HAProxy's
// default buffer); the receiver refuses anything over maxRejectedHeader.
const (
	maxRejectedEncoded = 8 << 10
	maxRejectedHeader  = 32 << 10
)

// EncodeRejected writes a rejection report as base64url JSON (a header value
// must not carry the control characters or non-ASCII bytes a reason may
// hold). At most config.MaxRejectedObjects entries are kept, fewer if
// needed to stay within 8 KiB encoded; "" for none.
func EncodeRejected(list []config.Rejected) string {
	if len(list) == 0 {
		return ""
	}
	list = list[:min(len(list), config.MaxRejectedObjects)]
	for ; len(list) > 0; list = list[:len(list)-1] {
		b, err := json.Marshal(list)
		if err != nil {
			return ""
		}
		if v := base64.RawURLEncoding.EncodeToString(b); len(v) <= maxRejectedEncoded {
			return v
		}
	}
	return ""
}

// DecodeRejected reads a HeaderRejected value ("" is an empty report).
// Entries past config.MaxRejectedObjects are dropped and every field is
// bounded again: the header comes from the network.
func DecodeRejected(v string) ([]config.Rejected, error) {
	if v == "" {
		return nil, nil
	}
	if base64.RawURLEncoding.DecodedLen(len(v)) > maxRejectedHeader {
		return nil, fmt.Errorf("%s: larger than %d bytes", HeaderRejected, maxRejectedHeader)
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", HeaderRejected, err)
	}
	var list []config.Rejected
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", HeaderRejected, err)
	}
	list = list[:min(len(list), config.MaxRejectedObjects)]
	for i, r := range list {
		list[i] = config.NewRejected(r.Kind, r.Name, r.Reason)
		if len(list[i].Kind) > 16 {
			list[i].Kind = list[i].Kind[:16]
		}
	}
	return list, nil
}
