package apiv1

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/portico-gw/portico/shared/config"
)

// maxRejectedHeader bounds the decoded HeaderRejected value: a data plane's
// report must not cost the control plane more than a few kilobytes.
const maxRejectedHeader = 32 << 10

// EncodeRejected writes a rejection report as base64url JSON (a header value
// must not carry the control characters or non-ASCII bytes a reason may
// hold). At most config.MaxRejectedObjects entries are kept; "" for none.
func EncodeRejected(list []config.Rejected) string {
	if len(list) == 0 {
		return ""
	}
	list = list[:min(len(list), config.MaxRejectedObjects)]
	b, err := json.Marshal(list)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(b)
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
