// Package pause waits for a while in loops that retry or tick (ACME orders,
// ticket-key rotation, service discovery), returning early when their
// context ends or when they are woken.
package pause

import (
	"context"
	"time"
)

// For waits d, or until wake delivers (a nil wake never does). It reports
// false when ctx ended first: the caller's loop should stop.
func For(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-wake:
		return true
	}
}
