package config

import (
	"math"
	"net/textproto"
	"time"
)

// Fault injection (issue 16), for resilience drills through the real
// gateway: a share of a route's requests is delayed, or answered with an
// error status without reaching the service. With Header, only requests
// carrying that header (any value) are considered, so a team can drill its
// own client while everybody else's traffic passes untouched.

// MaxFaultDelay bounds an injected delay.
const MaxFaultDelay = time.Minute

// Fault is a route's fault injection.
type Fault struct {
	Delay *FaultDelay `json:"delay,omitempty"`
	Abort *FaultAbort `json:"abort,omitempty"`
	// Header, when set, limits faults to requests carrying it.
	Header string `json:"header,omitempty"`
}

// FaultDelay holds Percent of the requests for Duration before they go on.
type FaultDelay struct {
	Percent  float64  `json:"percent"`
	Duration Duration `json:"duration"`
}

// FaultAbort answers Percent of the requests with Status at once.
type FaultAbort struct {
	Percent float64 `json:"percent"`
	Status  int     `json:"status"`
}

func (f *Fault) validate(l *errorList, p string) {
	if f.Delay == nil && f.Abort == nil {
		l.add(p, "needs delay, abort or both")
	}
	percent := func(fp string, v float64) {
		if !(v > 0 && v <= 100) || math.IsNaN(v) {
			l.add(fp, "must be above 0 and at most 100")
		}
	}
	if d := f.Delay; d != nil {
		percent(join(p, "delay.percent"), d.Percent)
		if v := d.Duration.Std(); v <= 0 || v > MaxFaultDelay {
			l.add(join(p, "delay.duration"), "must be above 0 and at most %s", MaxFaultDelay)
		}
	}
	if a := f.Abort; a != nil {
		percent(join(p, "abort.percent"), a.Percent)
		if a.Status < 400 || a.Status > 599 {
			l.add(join(p, "abort.status"), "must be an error status, 400 to 599")
		}
	}
	if f.Header != "" {
		switch {
		case !isToken(f.Header):
			l.add(join(p, "header"), "must be a header name")
		case routingHeaders[textproto.CanonicalMIMEHeaderKey(f.Header)]:
			l.add(join(p, "header"), "%s cannot select faults", f.Header)
		}
	}
}
