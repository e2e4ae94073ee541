package auth

import (
	"net/http"
	"testing"
	"time"
)

// TestJWKSInterval: a response's max-age shortens the configured interval,
// never below MinJWKSMaxAge, and never lengthens it.
func TestJWKSInterval(t *testing.T) {
	tests := []struct {
		name         string
		every        time.Duration
		cacheControl []string
		want         time.Duration
	}{
		{"no header: the configured interval", time.Minute, nil, time.Minute},
		{"max-age shorter", time.Minute, []string{"public, max-age=30"}, 30 * time.Second},
		{"max-age longer cannot lengthen", time.Minute, []string{"max-age=86400"}, time.Minute},
		{"max-age=0 floored", time.Minute, []string{"max-age=0"}, MinJWKSMaxAge},
		{"no-cache floored", time.Minute, []string{"no-cache"}, MinJWKSMaxAge},
		{"no-store floored", time.Minute, []string{"private", "no-store"}, MinJWKSMaxAge},
		{"floor never above the configured interval", time.Second, []string{"max-age=0"}, time.Second},
		{"garbage ignored", time.Minute, []string{"max-age=soon, max-age=-3"}, time.Minute},
		{"quoted", time.Minute, []string{`max-age="10"`}, 10 * time.Second},
		{"huge", time.Minute, []string{"max-age=99999999999999999999"}, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.cacheControl {
				h.Add("Cache-Control", v)
			}
			s := &jwksSource{every: tt.every}
			if got := s.interval(cacheMaxAge(h)); got != tt.want {
				t.Fatalf("interval = %v, want %v", got, tt.want)
			}
		})
	}
}
