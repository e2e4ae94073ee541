package config

import (
	"regexp"
	"strconv"
	"strings"
)

// Rejected is one object a data plane could not apply. The data plane
// applies everything else of the revision: one bad object must not stop a
// fleet from taking later changes (an API-key revocation, say). It reports
// the list on every poll, and the control plane shows it per node in
// GET /v1/dataplanes.
type Rejected struct {
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
	// Reason is the first error, bounded to MaxRejectedReason bytes.
	Reason string `json:"reason"`
}

// Bounds of a rejection report, so that it fits a request header.
const (
	MaxRejectedReason  = 256
	MaxRejectedObjects = 32
)

// NewRejected builds a Rejected with its reason bounded.
func NewRejected(kind Kind, name, reason string) Rejected {
	if len(reason) > MaxRejectedReason {
		reason = strings.ToValidUTF8(reason[:MaxRejectedReason], "") + "…"
	}
	if len(name) > MaxNameLen {
		name = name[:MaxNameLen]
	}
	return Rejected{Kind: kind, Name: name, Reason: reason}
}

// InvalidObjects is the result of ValidateObjects: per kind, the index of each
// object that failed, with its first error.
type InvalidObjects struct {
	Services, Routes, Consumers, Issuers, Certificates map[int]string
}

// Empty reports no invalid object.
func (in *InvalidObjects) Empty() bool {
	return len(in.Services)+len(in.Routes)+len(in.Consumers)+len(in.Issuers)+len(in.Certificates) == 0
}

var objectPath = regexp.MustCompile(`^(services|routes|consumers|issuers|certificates)\[(\d+)\]`)

// ValidateObjects runs Validate and attributes each failing field to the
// object it belongs to, so that a data plane can leave out exactly the
// objects it must not apply. An error that belongs to no one object (the
// global section) is returned as err: then nothing can be applied.
func (c *Config) ValidateObjects() (in InvalidObjects, err error) {
	in = InvalidObjects{Services: map[int]string{}, Routes: map[int]string{}, Consumers: map[int]string{}, Issuers: map[int]string{}, Certificates: map[int]string{}}
	// Both severities count here: Validate reports conflicts only once no
	// field is invalid, but an object that conflicts must be left out too.
	l := c.check()
	verr := l.err()
	if verr == nil {
		return in, nil
	}
	for _, f := range append(sorted(l.invalid), sorted(l.conflict)...) {
		m := objectPath.FindStringSubmatch(f.Field)
		if m == nil {
			return in, verr
		}
		i, _ := strconv.Atoi(m[2])
		set := map[string]map[int]string{"services": in.Services, "routes": in.Routes, "consumers": in.Consumers, "issuers": in.Issuers, "certificates": in.Certificates}[m[1]]
		if _, seen := set[i]; !seen {
			set[i] = f.Error()
		}
	}
	return in, nil
}
