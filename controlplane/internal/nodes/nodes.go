// Package nodes tracks the data planes that poll this control plane: who they
// are, which revision they have applied and when they were last heard from,
// so that operators can see whether the cluster has converged.
package nodes

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// Report is what a data plane says about itself on every poll.
type Report struct {
	ID              string
	Version         string
	AppliedRevision int64
	AppliedEpoch    string
	RemoteAddr      string
	// Rejected: the objects of the applied revision the node could not
	// apply. Each poll replaces the list.
	Rejected []config.Rejected
	// TLS: what the node's TLS listener serves; nil: none.
	TLS *apiv1.DataplaneTLS
}

// Node is the registry's view of one data plane.
type Node = apiv1.Dataplane

// Registry is safe for concurrent use.
type Registry struct {
	mu    sync.Mutex
	nodes map[string]*entry
	// staleAfter: a node not heard from for this long is disconnected.
	staleAfter time.Duration
	// forgetAfter: a disconnected node is dropped from the list after this.
	forgetAfter time.Duration
	now         func() time.Time
}

type entry struct {
	Node
	polls int
}

// NewRegistry returns a registry. staleAfter should exceed the longest poll
// wait plus a margin.
func NewRegistry(staleAfter, forgetAfter time.Duration) *Registry {
	return &Registry{nodes: map[string]*entry{}, staleAfter: staleAfter, forgetAfter: forgetAfter, now: time.Now}
}

// PollStarted records a report at the start of a poll; the returned func must
// be called when the poll ends, with the revision that was sent (0 if none).
func (r *Registry) PollStarted(rep Report) (done func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	e, ok := r.nodes[rep.ID]
	if !ok {
		e = &entry{Node: Node{ID: rep.ID, FirstSeen: now}}
		r.nodes[rep.ID] = e
	}
	e.Version, e.AppliedRevision, e.RemoteAddr, e.LastSeen = rep.Version, rep.AppliedRevision, rep.RemoteAddr, now
	e.AppliedEpoch = rep.AppliedEpoch
	e.Rejected = rep.Rejected
	e.TLS = rep.TLS
	e.polls++
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		e.polls--
		e.LastSeen = r.now()
	}
}

// Connected counts the nodes polling now or recently.
func (r *Registry) Connected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	n := 0
	for _, e := range r.nodes {
		if r.connected(e, now) {
			n++
		}
	}
	return n
}

// connected: polling now, or heard from within staleAfter.
func (r *Registry) connected(e *entry, now time.Time) bool {
	return e.polls > 0 || now.Sub(e.LastSeen) <= r.staleAfter
}

// List returns every known node sorted by id, judged against revision.
func (r *Registry) List(revision int64) []Node { return r.ListAt(revision, "") }

// ListAt is List judged against a revision of epoch ("" compares revisions
// only): after a store reset the same number names another configuration.
func (r *Registry) ListAt(revision int64, epoch string) []Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	out := make([]Node, 0, len(r.nodes))
	for id, e := range r.nodes {
		n := e.Node
		n.Polling = e.polls > 0
		connected := r.connected(e, now)
		if !connected && now.Sub(n.LastSeen) > r.forgetAfter {
			delete(r.nodes, id)
			continue
		}
		n.Status = "disconnected"
		if connected {
			n.Status = "connected"
		}
		// A node that reports no epoch (older than epochs) is judged by
		// its revision alone.
		n.Converged = connected && n.AppliedRevision == revision && (epoch == "" || n.AppliedEpoch == "" || n.AppliedEpoch == epoch)
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}
