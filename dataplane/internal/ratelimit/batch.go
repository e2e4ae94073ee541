package ratelimit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	p := pendingPool.Get().(*pending)
	p.key, p.g = key, g
	select {
	case b.queue <- p:
	case <-ctx.Done():
		p.key = ""
		pendingPool.Put(p)
		return nil, fmt.Errorf("rate limit script: %w", ctx.Err())
	}
	b.ensureWorker()
	select {
	case rep := <-p.done:
		// The worker sends the reply last and touches p no more: p and
		// its channel (empty again) serve the next decision.
		p.key = ""
		pendingPool.Put(p)
		return rep.v, rep.err
	case <-ctx.Done():
		// The worker will still reply: p is left to it, never reused.
		p.gone.Store(true)
		return nil, fmt.Errorf("rate limit script: %w", ctx.Err())
	}
}

// pendingPool recycles a decision's envelope and its reply channel, three
// allocations per request otherwise. Only an envelope whose reply was
// received goes back: an abandoned one still has a reply coming.
var pendingPool = sync.Pool{New: func() any { return &pending{done: make(chan reply, 1)} }}

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
	// The exchanges' deadline timer, one per worker rather than one per
	// batch: a worker runs one exchange at a time.
	deadline := time.NewTimer(workerIdle)
	deadline.Stop()
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
		b.send(batch, deadline)
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
func (b *batcher) send(batch []*pending, timer *time.Timer) {
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
	cmds, err := b.exchange(live, timer, start, false, 0)
	if err == nil && anyNoScript(cmds) {
		// Redis restarted or flushed its scripts: load them, run again.
		// Redis has just answered, so this exchange of three round trips
		// (and a script compile) gets the whole allowance.
		cmds, err = b.exchange(live, timer, time.Now(), true, b.budget+MaxLagAllowance)
	}
	b.metrics.observe(time.Since(start))
	for i, p := range live {
		var rep reply
		switch {
		case cmds == nil:
			rep.err = err
		default:
			rep.v, rep.err = cmds[i].Result()
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
func (b *batcher) exchange(live []*pending, timer *time.Timer, start time.Time, load bool, least time.Duration) ([]*redis.IntSliceCmd, error) {
	hard := b.budget + MaxLagAllowance
	ctx, cancel := context.WithTimeout(context.Background(), hard)
	type result struct {
		cmds []*redis.IntSliceCmd
		err  error
	}
	ch := make(chan result, 1)
	// Built here, not in the goroutine: an abandoned pipeline may outlive
	// the batch, whose envelopes by then serve other decisions.
	cmds := commands(ctx, live)
	go func() {
		defer cancel()
		err := b.pipeline(ctx, cmds, load)
		if err != nil {
			cmds = nil
		}
		ch <- result{cmds, err}
	}()
	deadline := max(least, b.exchangeDeadline(start))
	timer.Reset(deadline) // stopped: no stale tick (Go 1.23 timers)
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

func (b *batcher) pipeline(ctx context.Context, cmds []*redis.IntSliceCmd, load bool) error {
	if load {
		for _, s := range [...]*redis.Script{gcraScript, windowScript} {
			if err := s.Load(ctx, b.client).Err(); err != nil {
				return fmt.Errorf("load script: %w", err)
			}
		}
	}
	_, err := b.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, c := range cmds {
			_ = pipe.Process(ctx, c)
		}
		return nil
	})
	// Pipelined reports the first command's error too; a reply-level
	// error (NOSCRIPT, a script error) belongs to its command alone.
	if err != nil && !isReplyError(err) {
		return err
	}
	return nil
}

// commands builds a batch's script calls (EVALSHA sha 1 key args...) by
// hand rather than through Script.EvalSha, which costs about ten
// allocations per decision: here the whole batch shares one string of
// keys and one array of slots holding each call's key, numbers and
// arguments; a key goes in as a *string and a number as an *int64 (go-redis
// writes and cluster-routes both without boxing them), and an IntSliceCmd
// reads the reply straight into an []int64. What is left per decision is
// the command and its reply.
func commands(ctx context.Context, live []*pending) []*redis.IntSliceCmd {
	size := 0
	for _, p := range live {
		size += redisKeyLen(p.key)
	}
	var sb strings.Builder
	sb.Grow(size)
	for _, p := range live {
		writeRedisKey(&sb, p.key, p.g.fp)
	}
	all := sb.String()
	type slot struct {
		key  string
		num  [3]int64
		args [7]any
	}
	slots := make([]slot, len(live))
	cmds := make([]*redis.IntSliceCmd, len(live))
	at := 0
	for i, p := range live {
		s := &slots[i]
		n := redisKeyLen(p.key)
		s.key = all[at : at+n]
		at += n
		var args []any
		if p.g.alg == SlidingWindow {
			s.num = [3]int64{p.g.slot.Microseconds(), windowSlots, int64(p.g.limit)}
			s.args = [7]any{"evalsha", windowSHA, 1, &s.key, &s.num[0], &s.num[1], &s.num[2]}
			args = s.args[:7:7]
		} else {
			s.num = [3]int64{p.g.interval.Microseconds(), p.g.tolerance.Microseconds()}
			s.args = [7]any{"evalsha", gcraSHA, 1, &s.key, &s.num[0], &s.num[1]}
			args = s.args[:6:6]
		}
		cmds[i] = redis.NewIntSliceCmd(ctx, args...)
		cmds[i].SetFirstKeyPos(3) // KEYS[1]: where a cluster sends it
	}
	return cmds
}

// The scripts' digests, boxed once.
var (
	gcraSHA   any = gcraScript.Hash()
	windowSHA any = windowScript.Hash()
)

// redisKeyLen is the length of what writeRedisKey writes.
func redisKeyLen(key string) int { return len("rl:{}:") + len(key) + 8 }

// writeRedisKey writes where a key's state lives under a policy's
// fingerprint (8 hex digits). The braces are a Redis Cluster hash tag.
func writeRedisKey(sb *strings.Builder, key string, fp uint32) {
	var raw [4]byte
	raw[0], raw[1], raw[2], raw[3] = byte(fp>>24), byte(fp>>16), byte(fp>>8), byte(fp)
	var tag [8]byte
	hex.Encode(tag[:], raw[:])
	sb.WriteString("rl:{")
	sb.WriteString(key)
	sb.WriteString("}:")
	sb.Write(tag[:])
}

func anyNoScript(cmds []*redis.IntSliceCmd) bool {
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
