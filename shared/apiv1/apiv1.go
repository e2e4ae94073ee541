// Package apiv1 holds the wire types of the control plane's /v1 API that are
// not configuration objects themselves, shared by the server and the Go
// client so the two cannot disagree.
package apiv1

import (
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// Headers of the sync API: a data plane reports itself on every poll, and
// every write answers with the revision it produced.
const (
	HeaderNodeID          = "X-Portico-Node-Id"
	HeaderNodeVersion     = "X-Portico-Node-Version"
	HeaderAppliedRevision = "X-Portico-Applied-Revision"
	HeaderRevision        = "X-Portico-Revision"
	HeaderActor           = "X-Portico-Actor"
	// HeaderDataplanes answers each poll with the number of connected data
	// planes.
	HeaderDataplanes = "X-Portico-Dataplanes"
	// HeaderRejected carries, on every poll, the objects of the applied
	// revision the data plane could not apply (EncodeRejected); absent when
	// there are none.
	HeaderRejected = "X-Portico-Rejected"
	// HeaderEpoch: on a poll, the epoch of the data plane's applied
	// snapshot; on answers, the epoch of the control plane's current one
	// (see snapshot.Epoch). A poll whose epoch differs from the current one
	// is answered at once, whatever its revision.
	HeaderEpoch = "X-Portico-Epoch"
	// HeaderDelta: an answer to a poll with delta=1 that carries a
	// snapshot.Delta rather than a whole snapshot names the delta's base
	// revision in it.
	HeaderDelta = "X-Portico-Delta"
	// HeaderNodeTLS: on a poll, what the data plane's TLS listener serves
	// (EncodeNodeTLS: "tls" or "tls, http3"; absent: no TLS listener).
	HeaderNodeTLS = "X-Portico-Node-Tls"
	// HeaderNodeTicketKey: on a poll, the ID of the session-ticket key the
	// data plane's TLS listener encrypts with (TicketKeyID); absent while
	// it uses keys of its own.
	HeaderNodeTicketKey = "X-Portico-Node-Ticket-Key"
)

// List is the body of GET on a collection.
type List[T any] struct {
	Revision int64 `json:"revision"`
	Items    []T   `json:"items"`
}

// Export is GET /v1/config. Its Config can be PUT back as it is.
type Export struct {
	Revision int64          `json:"revision"`
	Config   *config.Config `json:"config"`
}

// DiffEntry is one object that an import creates, updates or deletes.
type DiffEntry struct {
	Op   string      `json:"op"` // create, update, delete
	Kind config.Kind `json:"kind"`
	Name string      `json:"name"`
	// Fields lists the top-level fields an update changes.
	Fields []string `json:"fields,omitempty"`
}

// ImportResult answers PUT /v1/config.
type ImportResult struct {
	DryRun bool `json:"dry_run"`
	// Revision is the new revision after an applied import, the current one
	// after a dry run or an import that changed nothing.
	Revision int64          `json:"revision"`
	Changes  []DiffEntry    `json:"changes"`
	Summary  map[string]int `json:"summary"`
}

// AuditEntry records one accepted change.
type AuditEntry struct {
	Revision int64     `json:"revision"`
	Time     time.Time `json:"time"`
	// Actor is the authenticated principal, followed by the name the client
	// claimed in X-Portico-Actor if it sent one.
	Actor      string      `json:"actor"`
	RemoteAddr string      `json:"remote_addr,omitempty"`
	RequestID  string      `json:"request_id,omitempty"`
	Action     string      `json:"action"` // create, update, delete, import
	Kind       config.Kind `json:"kind,omitempty"`
	Name       string      `json:"name,omitempty"`
	// Version is the object's version after the change; for a delete, the
	// version that was deleted.
	Version int64 `json:"version,omitempty"`
	// Summary describes multi-object changes such as an import.
	Summary string `json:"summary,omitempty"`
}

// AuditPage is GET /v1/audit.
type AuditPage struct {
	Entries []AuditEntry `json:"entries"`
	// Next is the "after" value that continues the listing.
	Next int64 `json:"next"`
}

// Dataplane is one data plane as the control plane sees it.
type Dataplane struct {
	ID              string `json:"id"`
	Version         string `json:"version,omitempty"`
	AppliedRevision int64  `json:"applied_revision"`
	// AppliedEpoch is the epoch of the applied revision (see snapshot.Epoch).
	AppliedEpoch string    `json:"applied_epoch,omitempty"`
	RemoteAddr   string    `json:"remote_addr,omitempty"`
	FirstSeen    time.Time `json:"first_seen"`
	LastSeen     time.Time `json:"last_seen"`
	// Polling is true while the node holds an open long poll.
	Polling bool `json:"polling"`
	// Status is "connected" while the node polls or polled recently.
	Status string `json:"status"`
	// Converged: connected and running the current revision.
	Converged bool `json:"converged"`
	// Rejected lists the objects of its applied revision the node could
	// not apply, and why: their routes answer 503 there until fixed.
	Rejected []config.Rejected `json:"rejected,omitempty"`
	// TLS is what the node's TLS listener serves, as it reported on its
	// last poll; nil: no TLS listener (or a data plane too old to say).
	TLS *DataplaneTLS `json:"tls,omitempty"`
}

// DataplaneTLS is a data plane's TLS listener (--tls-listen).
type DataplaneTLS struct {
	// HTTP3 is on when the listener also serves HTTP/3 (--http3).
	HTTP3 bool `json:"http3"`
	// TicketKey is the ID of the cluster's session-ticket key it encrypts
	// with (TicketKeyID); "" while it uses keys of its own.
	TicketKey string `json:"ticket_key,omitempty"`
}

// Dataplanes is GET /v1/dataplanes.
type Dataplanes struct {
	Revision int64 `json:"revision"`
	// Epoch is the store history Revision belongs to (see snapshot.Epoch).
	Epoch string `json:"epoch,omitempty"`
	// Converged is true when every connected data plane runs Revision.
	Converged bool        `json:"converged"`
	Nodes     []Dataplane `json:"nodes"`
}
