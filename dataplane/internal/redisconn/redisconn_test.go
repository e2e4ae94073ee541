package redisconn

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestParseURL(t *testing.T) {
	cases := []struct {
		url     string
		kind    string // "client", "failover", "cluster", or "" for an error
		addrs   []string
		errPart string
	}{
		{url: "redis://127.0.0.1:6380/2", kind: "client", addrs: []string{"127.0.0.1:6380"}},
		{url: "rediss://user:pw@cache.example:6379", kind: "client", addrs: []string{"cache.example:6379"}},
		{url: "redis://localhost?pool_size=5&max_retries=2", kind: "client", addrs: []string{"localhost:6379"}},
		{url: "unix:///run/redis.sock?db=1", kind: "client", addrs: []string{"/run/redis.sock"}},
		{url: "redis-sentinel://s1:26379?master_name=main&addr=s2:26379", kind: "failover"},
		{url: "redis-cluster://n1:7000?addr=n2:7000&addr=n3:7000", kind: "cluster"},
		{url: "rediss-cluster://n1:7000", kind: "cluster"},
		{url: "redis-sentinel://s1:26379", errPart: "master_name"},
		{url: "http://example.com", errPart: "unknown scheme"},
		{url: "127.0.0.1:6379", errPart: "no scheme"},
		{url: "redis://localhost?bogus=1", errPart: "bogus"},
		{url: "redis://user:s3cret@host:notaport", errPart: "redis URL"},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			c, err := ParseURL(tc.url)
			if tc.kind == "" {
				if err == nil {
					c.Close()
					t.Fatal("no error")
				}
				if !strings.Contains(err.Error(), tc.errPart) || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error %q, want it to mention %q and no password", err, tc.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !HonoursDeadlines(c) {
				t.Error("client ignores context deadlines")
			}
			switch c := c.(type) {
			case *redis.Client:
				o := c.Options()
				if tc.kind == "client" && o.Addr != tc.addrs[0] {
					t.Errorf("addr %q, want %q", o.Addr, tc.addrs[0])
				}
				// The client turns our -1 ("none") into 0 and its default into 3.
				if wantRetries := strings.Contains(tc.url, "max_retries"); wantRetries == (o.MaxRetries == 0) {
					t.Errorf("MaxRetries %d", o.MaxRetries)
				}
				if tc.kind == "client" && strings.HasPrefix(tc.url, "rediss") != (o.TLSConfig != nil) {
					t.Errorf("TLS config %v for %s", o.TLSConfig, tc.url)
				}
			case *redis.ClusterClient:
				if tc.kind != "cluster" {
					t.Errorf("got a cluster client for %s", tc.url)
				}
			default:
				t.Errorf("client of type %T", c)
			}
		})
	}
}
