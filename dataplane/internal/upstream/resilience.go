package upstream

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/portico-gw/portico/dataplane/internal/balancer"
	"github.com/portico-gw/portico/shared/config"
)

// retryPolicy is the compiled Retries.
type retryPolicy struct {
	attempts      int
	onStatus      [600]bool
	budgetPercent int
	minPerSecond  int
}

func newRetryPolicy(r *config.Retries) retryPolicy {
	p := retryPolicy{
		attempts:      config.DefaultRetryAttempts,
		budgetPercent: config.DefaultRetryBudgetPercent,
		minPerSecond:  config.DefaultRetryMinPerSecond,
	}
	if r == nil {
		return p
	}
	p.attempts = cmp.Or(r.Attempts, p.attempts)
	p.budgetPercent = cmp.Or(r.BudgetPercent, p.budgetPercent)
	p.minPerSecond = cmp.Or(r.MinPerSecond, p.minPerSecond)
	for _, s := range r.OnStatuses {
		p.onStatus[s] = true
	}
	return p
}

// retryBudget keeps retries to a share of traffic: each request deposits
// budgetPercent/100 of a token, each retry spends one, and minPerSecond
// tokens per second are granted regardless. During an outage where every
// first attempt fails, retries then add at most budgetPercent load instead
// of multiplying it by the attempt count.
//
// Every request deposits, so the balance is atomic (in millionths of a
// token) rather than behind a mutex: no lock on the request path.
type retryBudget struct {
	micro   atomic.Int64 // balance, in millionths of a token
	last    atomic.Int64 // unix nanoseconds of the last time-based refill
	deposit int64        // per request
	perSec  int64        // time-based refill per second
	max     int64
	now     func() time.Time
}

const microToken = 1_000_000

func newRetryBudget(p retryPolicy, now func() time.Time) *retryBudget {
	b := &retryBudget{
		deposit: int64(p.budgetPercent) * microToken / 100,
		perSec:  int64(p.minPerSecond) * microToken,
		max:     (int64(p.minPerSecond)*10 + 100) * microToken,
		now:     now,
	}
	b.micro.Store(int64(p.minPerSecond) * microToken)
	b.last.Store(now().UnixNano())
	return b
}

// add credits n micro-tokens, never beyond the cap.
func (b *retryBudget) add(n int64) {
	for {
		cur := b.micro.Load()
		next := min(b.max, cur+n)
		if next == cur || b.micro.CompareAndSwap(cur, next) {
			return
		}
	}
}

func (b *retryBudget) request() { b.add(b.deposit) }

func (b *retryBudget) spend() bool {
	now := b.now().UnixNano()
	if prev := b.last.Load(); now > prev && b.last.CompareAndSwap(prev, now) {
		b.add(int64(float64(now-prev) / float64(time.Second) * float64(b.perSec)))
	}
	for {
		cur := b.micro.Load()
		if cur < microToken {
			return false
		}
		if b.micro.CompareAndSwap(cur, cur-microToken) {
			return true
		}
	}
}

// outlierPolicy is the compiled OutlierDetection.
type outlierPolicy struct {
	enabled     bool
	consecutive int32
	base, max   time.Duration
	maxPercent  int
}

func newOutlierPolicy(o *config.OutlierDetection) outlierPolicy {
	p := outlierPolicy{
		enabled:     true,
		consecutive: config.DefaultOutlierConsecutiveFailures,
		base:        config.DefaultOutlierBaseEjection,
		max:         config.DefaultOutlierMaxEjection,
		maxPercent:  config.DefaultOutlierMaxEjectedPercent,
	}
	if o == nil {
		return p
	}
	p.enabled = !o.Disabled
	p.consecutive = int32(cmp.Or(o.ConsecutiveFailures, int(p.consecutive)))
	p.base = cmp.Or(o.BaseEjection.Std(), p.base)
	p.max = cmp.Or(o.MaxEjection.Std(), p.max)
	p.maxPercent = cmp.Or(o.MaxEjectedPercent, p.maxPercent)
	return p
}

// record notes the outcome of one attempt on m. Enough consecutive failures
// eject it for base·2^(n-1) (capped at max), unless that would take more
// than maxPercent of the pool out. A success after an ejection means the
// instance recovered: its next ejection starts from base again.
func (u *Upstream) record(v *view, m *Member, failed bool) {
	p := &u.outlier
	if !p.enabled {
		return
	}
	if !failed {
		m.consecutive.Store(0)
		if m.ejections.Load() > 0 && !m.EP.EjectedAt(u.deps.Now().UnixNano()) {
			m.ejections.Store(0)
		}
		return
	}
	if m.consecutive.Add(1) < p.consecutive {
		return
	}
	now := u.deps.Now()
	ejected := 0
	for _, ep := range v.set.Endpoints() {
		if ep.EjectedAt(now.UnixNano()) {
			ejected++
		}
	}
	if (ejected+1)*100 > p.maxPercent*v.set.Len() {
		return
	}
	m.consecutive.Store(0)
	n := m.ejections.Add(1)
	d := p.base << min(n-1, 30)
	if d > p.max || d <= 0 {
		d = p.max
	}
	m.EP.EjectUntil(now.Add(d).UnixNano())
	if u.deps.Metrics != nil {
		u.deps.Metrics.ejections.WithLabelValues(u.Name).Inc()
	}
	u.deps.Log.Warn("ejected upstream instance", "service", u.Name, "instance", m.Host, "for", d, "ejections", n)
}

func newBreaker(name string, c *config.CircuitBreaker, m *Metrics) (*gobreaker.TwoStepCircuitBreaker[struct{}], string) {
	if c != nil && c.Disabled {
		return nil, "disabled"
	}
	ratio := config.DefaultBreakerFailureRatio
	minReq := config.DefaultBreakerMinRequests
	interval := config.DefaultBreakerInterval
	open := config.DefaultBreakerOpenTimeout
	half := config.DefaultBreakerHalfOpenRequests
	if c != nil {
		if c.FailureRatio > 0 {
			ratio = c.FailureRatio
		}
		minReq = cmp.Or(c.MinRequests, minReq)
		interval = cmp.Or(c.Interval.Std(), interval)
		open = cmp.Or(c.OpenTimeout.Std(), open)
		half = cmp.Or(c.HalfOpenRequests, half)
	}
	st := gobreaker.Settings{
		Name:        name,
		MaxRequests: uint32(half),
		Interval:    interval,
		// A rolling window, so the ratio is about the last Interval rather
		// than whatever happened since the window last reset.
		BucketPeriod: max(interval/10, time.Second),
		Timeout:      open,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return int(c.Requests) >= minReq && float64(c.TotalFailures) >= ratio*float64(c.Requests)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errClientGone) },
	}
	if m != nil {
		st.OnStateChange = func(name string, _, to gobreaker.State) {
			m.breakerState.WithLabelValues(name).Set(float64(to))
		}
		m.breakerState.WithLabelValues(name).Set(0)
	}
	desc := fmt.Sprintf("ratio=%g min=%d interval=%s open=%s half_open=%d", ratio, minReq, interval, open, half)
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](st), desc
}

// pick returns the next member for a request, or nil.
func (v *view) pick(r *http.Request, tried *balancer.Tried, now int64) *Member {
	ep := v.set.Pick(r, tried, now)
	if ep == nil {
		return nil
	}
	return v.members[ep]
}
