package ratelimit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batching. Under load, one Redis round trip per decision costs the data
// plane two system calls and a goroutine hand-off each. Decisions are
// therefore queued and sent as pipelines: the worker takes every decision
// waiting, sends them in one write and reads their replies in one read. An
// idle system sends batches of one, so there is no added latency; a busy
// one sends batches of dozens.
//
// A decision is never timed out while it waits in the queue: that wait is
// this process being busy, not Redis being slow, and a decision abandoned
// there would be decided locally although Redis is fine. Only the exchange
// with Redis has a deadline (see exchangeDeadline).
const (
	maxBatch  = 256
	queueSize = 8192
	// One worker: a second halves the batches (twice the system calls)
	// for no gain in latency on a loopback or LAN Redis, where a pipeline
	// of 256 decisions still completes in well under the budget.
	maxWorkers = 1
	workerIdle = 2 * time.Second
)

// MaxLagAllowance caps what the measured reaction lag adds to the budget of
// an exchange with Redis: however busy the process, a Redis that has not
// answered within budget + MaxLagAllowance counts as failing.
const MaxLagAllowance = 500 * time.Millisecond

// errBreakerOpen: the breaker opened while the decision was queued; it is
// decided locally and says nothing new about Redis.
var errBreakerOpen = errors.New("rate limit: Redis unavailable (breaker open)")

type pending struct {
	key  string
	g    params
	gone atomic.Bool // the caller stopped waiting (its request ended)
	done chan reply
}

type reply struct {
	v   []int64
	err error
}

type batcher struct {
	client  redis.UniversalClient
	budget  time.Duration
	open    func() bool // the breaker keeps Redis out
	lag     *lagMonitor
	metrics *metrics
	queue   chan *pending
	workers atomic.Int32
	sending atomic.Int32 // pipelines in flight
}

// idle reports no decision queued and no pipeline in flight.
func (b *batcher) idle() bool { return len(b.queue) == 0 && b.sending.Load() == 0 }

// exchangeDeadline bounds one exchange with Redis: the budget, plus twice
// the largest reaction lag this process showed in the last second (capped
// at MaxLagAllowance). Twice: the lag is sampled every 10ms and a reply
// may meet a worse moment than the samples did.
func (b *batcher) exchangeDeadline(now time.Time) time.Duration {
	return b.budget + min(2*b.lag.evidence(now), MaxLagAllowance)
}

// do decides one request in Redis: it waits in the queue as long as the
// process takes to get to it, and for the exchange as long as its deadline.
func (b *batcher) do(ctx context.Context, key string, g params) ([]int64, error) {
	p := &pending{key: key, g: g, done: make(chan reply, 1)}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return nil, fmt.Errorf("rate limit script: %w", ctx.Err())
	}
	b.ensureWorker()
	select {
	case rep := <-p.done:
		return rep.v, rep.err
	case <-ctx.Done():
		p.gone.Store(true)
		return nil, fmt.Errorf("rate limit script: %w", ctx.Err())
	}
}

// ensureWorker starts a worker unless enough run. Workers stop after
// workerIdle without work, so an idle limiter holds no goroutine.
func (b *batcher) ensureWorker() {
	for {
		n := b.workers.Load()
		if n >= maxWorkers {
			return
		}
		if n > 0 && len(b.queue) < 2 {
			return // the running ones keep up
		}
		if b.workers.CompareAndSwap(n, n+1) {
			go b.work()
			return
		}
	}
}

func (b *batcher) work() {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	batch := make([]*pending, 0, maxBatch)
	for {
		select {
		case p := <-b.queue:
			b.sending.Add(1)
			batch = append(batch[:0], p)
		case <-idle.C:
			b.workers.Add(-1)
			// A decision queued while this worker was deciding to leave
			// must not wait for one that never comes.
			if len(b.queue) == 0 || !b.rejoin() {
				return
			}
			idle.Reset(workerIdle)
			continue
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case p := <-b.queue:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		b.send(batch)
		b.sending.Add(-1)
		clear(batch)
		idle.Reset(workerIdle)
	}
}

// rejoin counts this worker back in if there is room.
func (b *batcher) rejoin() bool {
	for {
		n := b.workers.Load()
		if n >= maxWorkers {
			return false
		}
		if b.workers.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// send runs one pipeline for the decisions whose callers still wait: a
// decision nobody waits for would take a token nobody uses.
func (b *batcher) send(batch []*pending) {
	live := batch[:0]
	for _, p := range batch {
		if !p.gone.Load() {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return
	}
	if b.open() {
		for _, p := range live {
			p.done <- reply{err: errBreakerOpen}
		}
		return
	}
	start := time.Now()
	cmds, err := b.exchange(live, start, false, 0)
	if err == nil && anyNoScript(cmds) {
		// Redis restarted or flushed its scripts: load them, run again.
		// Redis has just answered, so this exchange of three round trips
		// (and a script compile) gets the whole allowance.
		cmds, err = b.exchange(live, time.Now(), true, b.budget+MaxLagAllowance)
	}
	b.metrics.observe(time.Since(start))
	for i, p := range live {
		var rep reply
		switch {
		case cmds == nil:
			rep.err = err
		default:
			rep.v, rep.err = cmds[i].Int64Slice()
			if rep.err != nil {
				// Without the key: it may hold a client's address, and
				// the error ends up in logs and on /status.
				rep.err = fmt.Errorf("rate limit script: %w", rep.err)
			}
		}
		p.done <- rep // cap 1, one reply each: never blocks
	}
}

// exchange runs one pipeline and waits for it until its deadline. The
// deadline is judged again when it comes, on the evidence of lag at that
// moment (see exchangeDeadline and lagMonitor.evidence), including how late
// the deadline's own timer fired: the monitor needs a few samples to see a
// process that just became busy, and a timer that fires 30ms late is proof
// enough that a reply may have waited as long. The pipeline runs in its own
// goroutine, bounded by budget + MaxLagAllowance, so the worker can stop
// waiting at a deadline that is only known then.
func (b *batcher) exchange(live []*pending, start time.Time, load bool, least time.Duration) ([]*redis.Cmd, error) {
	hard := b.budget + MaxLagAllowance
	ctx, cancel := context.WithTimeout(context.Background(), hard)
	type result struct {
		cmds []*redis.Cmd
		err  error
	}
	ch := make(chan result, 1)
	// The worker reuses live's array for the next batch while an
	// abandoned pipeline may still read it.
	own := slices.Clone(live)
	go func() {
		defer cancel()
		cmds, err := b.pipeline(ctx, own, load)
		ch <- result{cmds, err}
	}()
	deadline := max(least, b.exchangeDeadline(start))
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	pinged, graced := false, false
	for {
		select {
		case r := <-ch:
			return r.cmds, wrapExchange(r.err, time.Since(start))
		case due := <-timer.C:
			now := time.Now()
			lag := max(b.lag.evidence(now), now.Sub(due))
			deadline = max(deadline, b.budget+min(2*lag, MaxLagAllowance))
			if wait := start.Add(deadline).Sub(now); wait > 0 {
				timer.Reset(wait)
				continue
			}
			// Past the deadline on what is known. Ask the process once
			// more: a ping over the pipe written now is readied by the
			// same netpoll that would ready a Redis reply already
			// waiting, so until it is read the process, not Redis, may
			// be the one that is late (evidence counts its age).
			if !pinged && now.Sub(start) < b.budget+MaxLagAllowance {
				pinged = true
				if b.lag.ping(now) {
					timer.Reset(pingCheck)
					continue
				}
			}
			// The ping came back, but a process that showed lag may have
			// run the ping's reader before the goroutine reading Redis's
			// reply (both readied by one netpoll): grant one more round of
			// its lag, within the hard bound, before blaming Redis.
			if lag := b.lag.evidence(now); !graced && lag > b.budget && now.Sub(start) < hard {
				graced = true
				timer.Reset(min(2*lag, hard-now.Sub(start)))
				continue
			}
			return nil, wrapExchange(context.DeadlineExceeded, now.Sub(start))
		}
	}
}

// pingCheck is how long an exchange past its deadline waits for the
// process to answer a ping: a responsive one answers in microseconds.
const pingCheck = time.Millisecond

func wrapExchange(err error, waited time.Duration) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("rate limit script: no reply within %v: %w", waited.Round(time.Microsecond), err)
	}
	return fmt.Errorf("rate limit script: %w", err)
}

func (b *batcher) pipeline(ctx context.Context, live []*pending, load bool) ([]*redis.Cmd, error) {
	if load {
		for _, s := range [...]*redis.Script{gcraScript, windowScript} {
			if err := s.Load(ctx, b.client).Err(); err != nil {
				return nil, fmt.Errorf("load script: %w", err)
			}
		}
	}
	cmds := make([]*redis.Cmd, len(live))
	_, err := b.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range live {
			key := redisKey(p.key, p.g.fp)
			if p.g.alg == SlidingWindow {
				cmds[i] = windowScript.EvalSha(ctx, pipe, []string{key},
					p.g.slot.Microseconds(), windowSlots, p.g.limit)
				continue
			}
			cmds[i] = gcraScript.EvalSha(ctx, pipe, []string{key},
				p.g.interval.Microseconds(), p.g.tolerance.Microseconds())
		}
		return nil
	})
	// Pipelined reports the first command's error too; a reply-level
	// error (NOSCRIPT, a script error) belongs to its command alone.
	if err != nil && !isReplyError(err) {
		return nil, err
	}
	return cmds, nil
}

// redisKey is where a key's state lives under a policy's fingerprint. The
// braces are a Redis Cluster hash tag.
func redisKey(key string, fp uint32) string {
	var raw [4]byte
	raw[0], raw[1], raw[2], raw[3] = byte(fp>>24), byte(fp>>16), byte(fp>>8), byte(fp)
	var tag [8]byte
	hex.Encode(tag[:], raw[:])
	return "rl:{" + key + "}:" + string(tag[:])
}

func anyNoScript(cmds []*redis.Cmd) bool {
	for _, c := range cmds {
		if err := c.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			return true
		}
	}
	return false
}

// isReplyError tells an error Redis answered with from a failed exchange.
func isReplyError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, context.DeadlineExceeded)
}
