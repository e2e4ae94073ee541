package upstream

import (
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/testutil"

	"github.com/portico-gw/portico/shared/config"
)

func TestRetryBudget(t *testing.T) {
	clock := testutil.NewClock(time.Unix(1000, 0))
	b := newRetryBudget(newRetryPolicy(&config.Retries{BudgetPercent: 20, MinPerSecond: 2}), clock.Now)
	spent := 0
	for range 100 {
		b.request()
		if b.spend() {
			spent++
		}
	}
	// 2 granted up front + 20% of 100 requests, with no time passing.
	if spent != 22 {
		t.Fatalf("retries allowed = %d, want 22 (2 + 20%% of 100)", spent)
	}
	if b.spend() {
		t.Fatal("budget not exhausted")
	}
	clock.Add(time.Second)
	allowed := 0
	for range 5 {
		if b.spend() {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("one second later %d retries allowed, want min_per_second = 2", allowed)
	}
}

func TestOutlierBackoff(t *testing.T) {
	p := newOutlierPolicy(&config.OutlierDetection{BaseEjection: config.Duration(time.Second), MaxEjection: config.Duration(5 * time.Second)})
	if !p.enabled || p.consecutive != config.DefaultOutlierConsecutiveFailures || p.maxPercent != 50 {
		t.Fatalf("defaults not applied: %+v", p)
	}
	if q := newOutlierPolicy(&config.OutlierDetection{Disabled: true}); q.enabled {
		t.Fatal("disabled outlier detection is enabled")
	}
}

// Ejections double up to the maximum while an instance keeps failing, never
// take out more than max_ejected_percent of the pool, and start from the
// base again once the instance has recovered.
func TestOutlierEjectionGrowsAndResets(t *testing.T) {
	clock := testutil.NewClock(time.Unix(1000, 0))
	u, err := Build(&config.Service{
		Name: "s",
		Targets: []config.Target{{URL: "http://10.0.0.1:80"}, {URL: "http://10.0.0.2:80"},
			{URL: "http://10.0.0.3:80"}, {URL: "http://10.0.0.4:80"}},
		OutlierDetection: &config.OutlierDetection{ConsecutiveFailures: 2, BaseEjection: config.Duration(time.Second),
			MaxEjection: config.Duration(3 * time.Second), MaxEjectedPercent: 50},
	}, nil, Deps{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	v := u.view.Load()
	eps := v.set.Endpoints()
	m := v.members[eps[0]]
	failTwice := func(m *Member) {
		u.record(v, m, true)
		u.record(v, m, true)
	}
	ejectedFor := func(m *Member) time.Duration {
		for d := time.Duration(0); d <= 10*time.Second; d += 100 * time.Millisecond {
			if !m.EP.EjectedAt(clock.Now().Add(d).UnixNano()) {
				return d
			}
		}
		return -1
	}
	var got []time.Duration
	for range 4 {
		failTwice(m)
		d := ejectedFor(m)
		got = append(got, d)
		clock.Add(d)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ejection durations = %v, want %v", got, want)
		}
	}
	// Recovered: a success after the ejection resets the backoff.
	u.record(v, m, false)
	failTwice(m)
	if d := ejectedFor(m); d != time.Second {
		t.Fatalf("after recovery ejected for %s, want the base 1s", d)
	}
	// m is ejected; one more may go (2 of 4 = 50%), a third may not.
	failTwice(v.members[eps[1]])
	failTwice(v.members[eps[2]])
	if !eps[1].EjectedAt(clock.Now().UnixNano()) || eps[2].EjectedAt(clock.Now().UnixNano()) {
		t.Fatal("max_ejected_percent not honoured")
	}
}
