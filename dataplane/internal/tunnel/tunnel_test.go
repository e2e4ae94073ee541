package tunnel

import (
	"context"
	"testing"
	"time"
)

// TestEffectiveLimits: a route tightens the node's limits field by field
// and never lengthens them.
func TestEffectiveLimits(t *testing.T) {
	node := Limits{Idle: 5 * time.Minute, Lifetime: 24 * time.Hour}
	for _, tc := range []struct {
		name  string
		route *Limits
		want  Limits
	}{
		{"no route limits", nil, node},
		{"shorter idle", &Limits{Idle: time.Minute}, Limits{Idle: time.Minute, Lifetime: 24 * time.Hour}},
		{"shorter lifetime", &Limits{Lifetime: time.Hour}, Limits{Idle: 5 * time.Minute, Lifetime: time.Hour}},
		{"longer is the node's", &Limits{Idle: time.Hour, Lifetime: 48 * time.Hour}, node},
		{"both shorter", &Limits{Idle: time.Second, Lifetime: time.Minute}, Limits{Idle: time.Second, Lifetime: time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.route != nil {
				ctx = context.WithValue(ctx, limitsKey{}, *tc.route)
			}
			if got := Effective(ctx, node); got != tc.want {
				t.Fatalf("Effective = %+v, want %+v", got, tc.want)
			}
		})
	}
	// A node without limits takes the route's.
	ctx := context.WithValue(context.Background(), limitsKey{}, Limits{Idle: time.Second})
	if got := Effective(ctx, Limits{}); got != (Limits{Idle: time.Second}) {
		t.Fatalf("no node limits: %+v", got)
	}
}
