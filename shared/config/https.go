package config

import (
	"strconv"
	"strings"
	"time"
)

// Bounds of a route's HSTS max_age; preload lists ask for at least a year
// with includeSubDomains.
const (
	MaxHSTSAge     = 2 * 365 * 24 * time.Hour
	MinHSTSPreload = 365 * 24 * time.Hour
)

func (r *Route) validateHTTPS(l *errorList, p string) {
	if r.HTTPSPort < 0 || r.HTTPSPort > 65535 {
		l.add(join(p, "https_port"), "must be between 1 and 65535 (0: 443)")
	} else if r.HTTPSPort != 0 && !r.HTTPSRedirect {
		l.add(join(p, "https_port"), "only applies with https_redirect")
	}
	if h := r.HSTS; h != nil {
		hp := join(p, "hsts")
		if a := h.MaxAge.Std(); a < 0 || a > MaxHSTSAge || a%time.Second != 0 {
			l.add(join(hp, "max_age"), "must be whole seconds between 0s (clears the policy in browsers) and %s", MaxHSTSAge)
		}
		if h.Preload && (!h.IncludeSubdomains || h.MaxAge.Std() < MinHSTSPreload) {
			l.add(join(hp, "preload"), "needs include_subdomains and a max_age of at least %s (the preload lists' rule)", MinHSTSPreload)
		}
	}
}

// Header is the Strict-Transport-Security value of the policy.
func (h *HSTS) Header() string {
	var b strings.Builder
	b.WriteString("max-age=")
	b.WriteString(strconv.FormatInt(int64(h.MaxAge.Std()/time.Second), 10))
	if h.IncludeSubdomains {
		b.WriteString("; includeSubDomains")
	}
	if h.Preload {
		b.WriteString("; preload")
	}
	return b.String()
}
