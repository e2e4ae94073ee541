package upstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// threeInstances builds a started Upstream over three static instances
// with the given retries and a clock that stands still (no budget refill).
func threeInstances(t *testing.T, r *config.Retries, cb *config.CircuitBreaker) *Upstream {
	t.Helper()
	clock := testutil.NewClock(time.Unix(1000, 0))
	u, err := Build(&config.Service{
		Name:             "s",
		Targets:          []config.Target{{URL: "http://10.0.0.1:80"}, {URL: "http://10.0.0.2:80"}, {URL: "http://10.0.0.3:80"}},
		Retries:          r,
		OutlierDetection: &config.OutlierDetection{ConsecutiveFailures: 1, MaxEjectedPercent: 100, BaseEjection: config.Duration(time.Minute)},
		CircuitBreaker:   cb,
	}, nil, Deps{Now: clock.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	u.Start()
	t.Cleanup(u.Retire)
	return u
}

// The retry decision of the call path, for every caller: which results
// move to another instance, under which settings. Each case's attempt
// answers every try the same way; three instances are there to try.
func TestCallRetryDecision(t *testing.T) {
	errBroken := errors.New("connection reset")
	on503 := &config.Retries{OnStatuses: []int{503}}
	for _, tc := range []struct {
		name    string
		retries *config.Retries
		resend  bool
		res     Result
		want    int // attempts made
		failed  bool
	}{
		{"unsent, any request", nil, false, Result{Outcome: Broken, Unsent: true, Err: errBroken}, 3, true},
		{"unsent, attempts 1", &config.Retries{Attempts: 1}, false, Result{Outcome: Broken, Unsent: true, Err: errBroken}, 1, true},
		{"unsent, attempts 2", &config.Retries{Attempts: 2}, false, Result{Outcome: Broken, Unsent: true, Err: errBroken}, 2, true},
		{"broken, not resendable", nil, false, Result{Outcome: Broken, Err: errBroken}, 1, true},
		{"broken, resendable", nil, true, Result{Outcome: Broken, Err: errBroken}, 3, true},
		{"broken, resendable, attempts 1", &config.Retries{Attempts: 1}, true, Result{Outcome: Broken, Err: errBroken}, 1, true},
		{"listed status, resendable", on503, true, Result{Outcome: Failed, Status: 503}, 3, true},
		{"listed status, not resendable", on503, false, Result{Outcome: Failed, Status: 503}, 1, true},
		{"unlisted status", on503, true, Result{Outcome: Failed, Status: 500}, 1, true},
		{"no statuses listed", nil, true, Result{Outcome: Failed, Status: 503}, 1, true},
		{"success", on503, true, Result{Status: 200}, 1, false},
		{"an answer about the request", on503, true, Result{Status: 404}, 1, false},
		{"client's fault", nil, true, Result{Outcome: ClientFault, Err: errBroken}, 1, false},
		{"gateway's own failure", nil, true, Result{Outcome: Local, Err: errBroken}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := threeInstances(t, tc.retries, &config.CircuitBreaker{Disabled: true})
			c := Call{Upstream: u, Resend: tc.resend}
			seen := map[string]bool{}
			err := c.Do(context.Background(), func(_ context.Context, m *Member, n int) Result {
				if seen[m.Host] {
					t.Errorf("attempt %d on %s again", n, m.Host)
				}
				seen[m.Host] = true
				return tc.res
			})
			if c.Attempts != tc.want || len(seen) != tc.want {
				t.Fatalf("%d attempts (%d instances), want %d", c.Attempts, len(seen), tc.want)
			}
			if c.Failed != tc.failed {
				t.Errorf("Failed = %v, want %v", c.Failed, tc.failed)
			}
			if tc.res.Outcome == ClientFault {
				if !c.ClientFault || !errors.Is(err, ErrClientBody) {
					t.Errorf("client's fault not reported as such: %v, %v", c.ClientFault, err)
				}
			}
			// Outlier detection (one failure ejects here) saw exactly the
			// attempts that said something about their instance.
			st := u.Status()
			ejected := st.Endpoints - st.Available
			want := 0
			if tc.res.Outcome == Failed || tc.res.Outcome == Broken {
				want = tc.want
			}
			if ejected != want {
				t.Errorf("%d instances ejected, want %d", ejected, want)
			}
		})
	}
}

// Retries are paid from the service's budget: with no time passing, a
// call path that may retry every request retries min_per_second +
// budget_percent of them.
func TestCallRetryBudget(t *testing.T) {
	u := threeInstances(t, &config.Retries{BudgetPercent: 10, MinPerSecond: 2}, &config.CircuitBreaker{Disabled: true})
	u.outlier.enabled = false
	attempts := 0
	for range 20 {
		c := Call{Upstream: u}
		_ = c.Do(context.Background(), func(context.Context, *Member, int) Result {
			attempts++
			return Result{Outcome: Broken, Unsent: true, Err: errors.New("refused")}
		})
	}
	// 2 up front, 0.1 per request: retries at requests 1, 2, 10 and 20.
	if attempts != 24 {
		t.Fatalf("%d attempts for 20 calls, want 24 (2 + 10%% of 20 retries)", attempts)
	}
}

// A call that ends with its context teaches nothing about the instance:
// it is not retried or recorded; the breaker is spared when the client
// left, and counts a failure when the caller's deadline passed.
func TestCallContextEnds(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ctx          func() (context.Context, context.CancelFunc)
		failed, gone bool
	}{
		{"client gone", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, false, true},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Unix(1, 0))
		}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := threeInstances(t, nil, &config.CircuitBreaker{MinRequests: 1, FailureRatio: 0.1})
			ctx, cancel := tc.ctx()
			defer cancel()
			c := Call{Upstream: u, Resend: true}
			err := c.Run(ctx, func(ctx context.Context, _ *Member, _ int) Result {
				cancel()
				return Result{Outcome: Broken, Err: ctx.Err()}
			})
			if err == nil || c.Attempts != 1 || c.Failed != tc.failed || c.ClientFault != tc.gone {
				t.Fatalf("err %v, %d attempts, failed %v, client fault %v", err, c.Attempts, c.Failed, c.ClientFault)
			}
			st := u.Status()
			if st.Available != st.Endpoints {
				t.Errorf("an instance was charged: %d of %d available", st.Available, st.Endpoints)
			}
			wantBreaker := "closed"
			if tc.failed {
				wantBreaker = "open"
			}
			if st.Breaker != wantBreaker {
				t.Errorf("breaker %s, want %s", st.Breaker, wantBreaker)
			}
		})
	}
}

// Run asks the breaker first: while it is open no instance is tried.
func TestCallBreakerOpen(t *testing.T) {
	u := threeInstances(t, &config.Retries{Attempts: 1}, &config.CircuitBreaker{MinRequests: 2, FailureRatio: 0.5})
	fail := func(context.Context, *Member, int) Result { return Result{Outcome: Failed, Status: 500} }
	for range 2 {
		c := Call{Upstream: u}
		if err := c.Run(context.Background(), fail); err != nil {
			t.Fatal(err)
		}
	}
	c := Call{Upstream: u}
	tried := false
	err := c.Run(context.Background(), func(context.Context, *Member, int) Result { tried = true; return Result{} })
	if !errors.Is(err, ErrCircuitOpen) || tried {
		t.Fatalf("open breaker: err %v, tried %v", err, tried)
	}
}
