package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseIPRule(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"10.0.0.0/8", "10.0.0.0/8", ""},
		{"10.1.2.3/8", "10.0.0.0/8", ""}, // host bits cleared
		{"192.0.2.7", "192.0.2.7/32", ""},
		{"2001:db8::1", "2001:db8::1/128", ""},
		{"2001:DB8::/32", "2001:db8::/32", ""},
		{"::ffff:192.0.2.0/120", "192.0.2.0/24", ""},
		{"::ffff:192.0.2.9", "192.0.2.9/32", ""},
		{"0.0.0.0/0", "0.0.0.0/0", ""},
		{"::/0", "::/0", ""},
		{"10.0.0.0/33", "", "not a CIDR"},
		{"10.0.0", "", "not an address"},
		{"fe80::1%eth0", "", "zone"},
		{"example.com", "", "not an address"},
		{"", "", "not an address"},
	}
	for _, tc := range tests {
		p, err := ParseIPRule(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || p.String() != tc.want {
			t.Errorf("%q: %v %v, want %s", tc.in, p, err, tc.want)
		}
	}
}

func TestIPRulesValidate(t *testing.T) {
	many := make([]string, MaxIPRules+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.%d.%d.0/24", i>>8&255, i&255)
	}
	bad := make([]string, 30)
	for i := range bad {
		bad[i] = "x"
	}
	tests := []struct {
		name   string
		ip     IPRules
		fields []string // nil = valid
	}{
		{"valid", IPRules{Allow: []string{"10.0.0.0/8", "2001:db8::1"}, Deny: []string{"10.9.0.0/16"}}, nil},
		{"at the limit", IPRules{Allow: many[:MaxIPRules]}, nil},
		{"over the limit", IPRules{Allow: many[:MaxIPRules-5], Deny: many[:6]}, []string{"ip"}},
		{"bad entries", IPRules{Allow: []string{"10.0.0.0/8", "10.0.0.0/40", "10.0.0.1", "nope"}, Deny: []string{"::1", "fe80::1%lo"}},
			[]string{"ip.allow[1]", "ip.allow[3]", "ip.deny[1]"}},
		{"many bad entries: 20 named, the rest counted", IPRules{Deny: bad}, append(fieldList("ip.deny", 20), "ip.deny")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ip := tc.ip
			r := Route{Name: "r", Paths: []string{"/"}, Service: "s", IP: &ip}
			err := r.Validate()
			if tc.fields == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v", err)
			}
			var got []string
			for _, fe := range FieldErrors(err) {
				got = append(got, fe.Field)
			}
			want := slices.Clone(tc.fields)
			slices.Sort(got)
			slices.Sort(want)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("fields %v, want %v", got, tc.fields)
			}
		})
	}

	// The global section: the same rules, under global.ip.
	c := Config{Global: Global{IP: &IPRules{Allow: []string{"10.0.0.0/8", "300.1.1.1"}}}}
	var got []string
	for _, fe := range FieldErrors(c.Validate()) {
		got = append(got, fe.Field)
	}
	if fmt.Sprint(got) != "[global.ip.allow[1]]" {
		t.Fatalf("global: %v", got)
	}
	// Clone copies the lists.
	c.Routes = []*Route{{Name: "r", IP: &IPRules{Deny: []string{"::1"}}}}
	cl := c.Clone()
	cl.Global.IP.Allow[0], cl.Routes[0].IP.Deny[0] = "x", "x"
	if c.Global.IP.Allow[0] != "10.0.0.0/8" || c.Routes[0].IP.Deny[0] != "::1" {
		t.Fatal("Clone shares the IP lists")
	}
}

func fieldList(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s[%d]", prefix, i)
	}
	return out
}
