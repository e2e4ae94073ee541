package nodes

import (
	"testing"
	"time"
)

func TestRegistryStatus(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRegistry(time.Minute, time.Hour)
	r.now = func() time.Time { return now }

	done := r.PollStarted(Report{ID: "b", AppliedRevision: 3})
	r.PollStarted(Report{ID: "a", AppliedRevision: 2})()
	list := r.List(3)
	if len(list) != 2 || list[0].ID != "a" || list[1].ID != "b" {
		t.Fatalf("list = %+v, want a and b sorted", list)
	}
	if list[0].Converged || !list[1].Converged || !list[1].Polling || list[0].Polling {
		t.Fatalf("convergence/polling wrong: %+v", list)
	}

	// A node that stopped polling goes disconnected, then is forgotten.
	now = now.Add(2 * time.Minute)
	list = r.List(3)
	if list[0].Status != "disconnected" || list[0].Converged {
		t.Fatalf("silent node a = %+v, want disconnected", list[0])
	}
	if list[1].Status != "connected" {
		t.Fatalf("node b holding a poll = %+v, want connected", list[1])
	}
	done()
	now = now.Add(2 * time.Hour)
	if list = r.List(3); len(list) != 0 {
		t.Fatalf("nodes not forgotten after an hour of silence: %+v", list)
	}
}
