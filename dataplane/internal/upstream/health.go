package upstream

import (
	"cmp"
	"context"
	"io"
	"net/http"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// Prober sends one health-check request.
type Prober interface {
	Do(req *http.Request) (*http.Response, error)
}

var defaultProber Prober = &http.Client{
	// Health checks must not follow a redirect into something that is not
	// the instance being checked.
	CheckRedirect: noRedirect,
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// healthLoop probes every static target each interval until ctx ends. An
// instance turns unhealthy after UnhealthyThreshold failures in a row and
// healthy again after HealthyThreshold successes: one lost probe does not
// flap it.
func (u *Upstream) healthLoop(ctx context.Context) {
	defer close(u.done)
	hc := u.Spec.HealthCheck
	interval := cmp.Or(hc.Interval.Std(), config.DefaultHealthInterval)
	timeout := cmp.Or(hc.Timeout.Std(), config.DefaultHealthTimeout)
	okNeed := cmp.Or(hc.HealthyThreshold, config.DefaultHealthHealthyThreshold)
	failNeed := cmp.Or(hc.UnhealthyThreshold, config.DefaultHealthUnhealthyThreshold)
	prober := u.deps.Prober
	switch {
	case prober != nil:
	case u.tls != nil:
		// https instances are probed with the service's TLS configuration
		// (its CA, server name and client certificate).
		tr := &http.Transport{Proxy: nil, TLSClientConfig: u.tls, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		prober = &http.Client{Transport: tr, CheckRedirect: noRedirect}
	default:
		prober = defaultProber
	}
	check := func(m *Member) bool { return probe(ctx, prober, m.Scheme+"://"+m.Host+m.BasePath+hc.Path, timeout) }
	if u.Spec.Protocol == config.ProtocolGRPC && u.deps.Prober == nil {
		// gRPC instances answer the gRPC health checking protocol
		// (grpchealth.go).
		g := newGRPCProber(u.tls)
		defer g.close()
		check = func(m *Member) bool { return g.probe(ctx, m, hc.Path, timeout) }
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		v := u.view.Load()
		for _, m := range v.members {
			ok := check(m)
			if ctx.Err() != nil {
				return
			}
			u.healthResult(m, ok, okNeed, failNeed)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (u *Upstream) healthResult(m *Member, ok bool, okNeed, failNeed int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if ok {
		m.okStreak, m.failStreak = m.okStreak+1, 0
		if !m.EP.Healthy() && m.okStreak >= okNeed {
			m.EP.SetHealthy(true)
			u.deps.Log.Info("upstream instance healthy again", "service", u.Name, "instance", m.Host)
		}
		return
	}
	m.failStreak, m.okStreak = m.failStreak+1, 0
	if m.EP.Healthy() && m.failStreak >= failNeed {
		m.EP.SetHealthy(false)
		u.deps.Log.Warn("upstream instance failed its health check", "service", u.Name, "instance", m.Host)
	}
}

func probe(ctx context.Context, p Prober, url string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "portico-health-check")
	resp, err := p.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}
