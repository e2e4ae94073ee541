package grpcjson

import (
	"net/url"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// FuzzQueryParams sets arbitrary query strings on a message with every
// field kind the translator handles. It must never panic, and whatever it
// builds must marshal.
func FuzzQueryParams(f *testing.F) {
	for _, s := range []string{
		"id=1&version=2&fields=a&fields=b",
		"filter.status=open&filter.next.next.min_total=-5",
		"state=SHIPPED&state=1&token=AAE=&since=2026-01-02T03:04:05Z",
		"labels=x&labels.key=y&min_score=Infinity&limit=4294967296",
		"filter=x&id.x=1&=&..=1&filter..status=2",
		"ids=9223372036854775808&include_items=T",
	} {
		f.Add(s)
	}
	md := getOrderRequest(f)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		m := dynamicpb.NewMessage(md)
		for k, vs := range q {
			_, _ = setField(m, k, vs)
		}
		if _, err := proto.Marshal(m); err != nil {
			t.Fatalf("built message does not marshal: %v", err)
		}
	})
}
