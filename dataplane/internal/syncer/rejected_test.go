package syncer

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestSyncerReportsRejectedObjects: objects the applier left out are sent
// with every poll until a revision applies them, and each new one is logged
// once at ERROR, not once per revision.
func TestSyncerReportsRejectedObjects(t *testing.T) {
	p := &scripted{answers: make(chan answer), asked: make(chan client.PollRequest)}
	var logs lockedBuffer
	sy := New(Options{
		Poller: p,
		NodeID: "n1",
		Log:    slog.New(slog.NewTextHandler(&logs, nil)),
		// Stands in for proxy.Applier: routes named bad-* are left out.
		Apply: func(s *snapshot.Snapshot, _ *snapshot.Change) (rejected []config.Rejected, _ error) {
			for _, r := range s.Config.Routes {
				if strings.HasPrefix(r.Name, "bad-") {
					rejected = append(rejected, config.NewRejected(config.KindRoute, r.Name, "broken"))
				}
			}
			return rejected, nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = sy.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	const newLine = `level=ERROR msg="configuration object rejected`
	steps := []struct {
		reported string // kind/name list the poll carries
		answer   []byte
		errLines int // ERROR lines logged after this answer is applied
	}{
		{"", encoded(t, 1, "a", "bad-x"), 1},
		{"route/bad-x", encoded(t, 2, "a", "bad-x", "c"), 1},
		{"route/bad-x", encoded(t, 3, "a", "bad-x", "bad-y"), 2},
		{"route/bad-x,route/bad-y", encoded(t, 4, "a"), 2},
		{"", nil, 2},
	}
	for i, st := range steps {
		req := <-p.asked
		var got []string
		for _, r := range req.Rejected {
			got = append(got, string(r.Kind)+"/"+r.Name)
		}
		if strings.Join(got, ",") != st.reported {
			t.Fatalf("poll %d reports %v, want %q", i, got, st.reported)
		}
		p.answers <- answer{raw: st.answer}
		if st.answer == nil {
			continue
		}
		// The next poll starts only after this answer was applied.
		req = <-p.asked
		if n := logs.count(newLine); n != st.errLines {
			t.Fatalf("after revision %d: %d ERROR lines, want %d:\n%s", i+1, n, st.errLines, logs.b.String())
		}
		go func() { p.asked <- req }() // hand the poll back to the loop above
	}
	if sy.Status().RejectedObjects != nil {
		t.Errorf("status still lists %v", sy.Status().RejectedObjects)
	}
}
