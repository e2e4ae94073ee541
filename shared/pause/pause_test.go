package pause

import (
	"context"
	"testing"
	"time"
)

// TestFor: an ended context wins (false) over a long wait, a wake ends a
// long wait (true), and a zero wait returns true; none of the waits below
// can end on its timer within the test's timeout, so only the condition
// under test can end them.
func TestFor(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if For(ended, time.Hour, nil) {
		t.Fatal("For with an ended context reported true")
	}
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	if !For(context.Background(), time.Hour, wake) {
		t.Fatal("For woken reported false")
	}
	if !For(context.Background(), 0, nil) {
		t.Fatal("For(0) reported false")
	}
}
