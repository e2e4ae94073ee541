package grpcjson

import (
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

func getOrderRequest(t testing.TB) protoreflect.MessageDescriptor {
	t.Helper()
	_, fd := shopFiles(t, false)
	return fd.Messages().ByName("GetOrderRequest")
}

func TestSetField(t *testing.T) {
	md := getOrderRequest(t)
	for _, tc := range []struct {
		name  string
		query string
		want  string // protojson of the message, compact
		err   string
	}{
		{"string", "id=o-1", `{"id":"o-1"}`, ""},
		{"invalid utf-8", "id=%C6", "", "valid UTF-8"},
		{"json name", "includeItems=true&minScore=1.5", `{"includeItems":true,"minScore":1.5}`, ""},
		{"int32", "version=-7", `{"version":-7}`, ""},
		{"int32 overflow", "version=2147483648", "", `version: "2147483648" is not a 32-bit integer`},
		{"uint32 negative", "limit=-1", "", "unsigned 32-bit"},
		{"bool", "include_items=1", `{"includeItems":true}`, ""},
		{"bad bool", "include_items=yes", "", "boolean"},
		{"double", "min_score=NaN", `{"minScore":"NaN"}`, ""},
		{"bad double", "min_score=1,5", "", "a number"},
		{"enum by name", "state=SHIPPED", `{"state":"SHIPPED"}`, ""},
		{"enum by number", "state=1", `{"state":"OPEN"}`, ""},
		{"open enum unknown number", "state=9", `{"state":9}`, ""},
		{"bad enum", "state=LOST", "", "shop.v1.Status"},
		{"bytes std", "token=AAE%3D", `{"token":"AAE="}`, ""},
		{"bytes url raw", "token=-_8", `{"token":"+/8="}`, ""},
		{"bad bytes", "token=%21%21", "", "base64"},
		{"repeated", "fields=a&fields=b", `{"fields":["a","b"]}`, ""},
		{"repeated int64", "ids=1&ids=2", `{"ids":["1","2"]}`, ""},
		{"repeated bad", "ids=1&ids=x", "", "ids"},
		{"nested", "filter.status=open&filter.min_total=5", `{"filter":{"status":"open","minTotal":"5"}}`, ""},
		{"nested json names", "filter.minTotal=5", `{"filter":{"minTotal":"5"}}`, ""},
		{"deep recursion", "filter.next.next.status=x", `{"filter":{"next":{"next":{"status":"x"}}}}`, ""},
		{"through a scalar", "id.x=1", "", "id is not a message field"},
		{"message as value", "filter=x", "", "set its fields with dotted names"},
		{"timestamp", "since=2026-01-02T03:04:05Z", `{"since":"2026-01-02T03:04:05Z"}`, ""},
		{"bad timestamp", "since=yesterday", "", "not a valid Timestamp"},
		{"map", "labels=x", "", "map fields"},
		{"one value only", "id=a&id=b", "", "takes one value, got 2"},
		{"unknown ignored", "_=123&utm_source=x&filter.nope=1", `{}`, ""},
		{"empty name", "=1", "", "empty field name"},
		{"empty segment", "filter..status=1", `{}`, ""},
		{"too deep", "filter" + strings.Repeat(".next", 40) + ".status=x", "", "nested fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			m := dynamicpb.NewMessage(md)
			var ferr error
			for k, vs := range q {
				if _, err := setField(m, k, vs); err != nil {
					ferr = err
				}
			}
			if tc.err != "" {
				if ferr == nil || !strings.Contains(ferr.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", ferr, tc.err)
				}
				return
			}
			if ferr != nil {
				t.Fatal(ferr)
			}
			got, err := protojson.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			// protojson randomises whitespace; compare compacted.
			if c := strings.ReplaceAll(string(got), " ", ""); c != tc.want {
				t.Errorf("got %s, want %s", c, tc.want)
			}
		})
	}
}

// A query value replaces a repeated field from the body rather than
// appending to it, like a singular field.
func TestQueryReplacesBodyList(t *testing.T) {
	md := getOrderRequest(t)
	m := dynamicpb.NewMessage(md)
	if err := protojson.Unmarshal([]byte(`{"fields":["x","y"]}`), m); err != nil {
		t.Fatal(err)
	}
	if _, err := setField(m, "fields", []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if l := m.Get(md.Fields().ByName("fields")).List(); l.Len() != 1 || l.Get(0).String() != "a" {
		t.Errorf("fields has %d values", l.Len())
	}
}
