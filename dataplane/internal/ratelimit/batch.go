package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batching. Under load, one Redis round trip per decision costs the data
// plane two system calls and a goroutine hand-off each, and with the CPU
// saturated a decision waiting for its own reply overruns the budget and
// falls back to a local guess. Decisions are therefore queued and sent as
// pipelines: the worker takes every decision waiting, sends them in one
// write and reads their replies in one read. An idle system
// sends batches of one, so there is no added latency; a busy one sends
// batches of dozens. Each decision still waits at most the budget for its
// own reply: the caller stops waiting, not the pipeline.
const (
	maxBatch  = 256
	queueSize = 8192
	// One worker: a second halves the batches (twice the system calls)
	// for no gain in latency on a loopback or LAN Redis, where a pipeline
	// of 256 decisions still completes in well under the budget.
	maxWorkers = 1
	workerIdle = 2 * time.Second
)

// errQueueFull: more decisions waiting than a pipeline worker could send
// within the budget; the decision falls back at once.
var errQueueFull = errors.New("rate limit: too many decisions waiting for Redis")

type pending struct {
	key      string
	g        gcra
	deadline time.Time // the caller stops waiting then
	done     chan reply
}

type reply struct {
	v   []int64
	err error
}

type batcher struct {
	client redis.UniversalClient
	// timeout bounds one pipeline: twice the budget, since a decision
	// that joined a batch late still has its whole budget to wait, and a
	// pipeline cut short closes its connection.
	timeout time.Duration
	queue   chan *pending
	workers atomic.Int32
	sending atomic.Int32 // pipelines in flight
	timers  sync.Pool
}

// idle reports no decision queued and no pipeline in flight.
func (b *batcher) idle() bool { return len(b.queue) == 0 && b.sending.Load() == 0 }

func newBatcher(c redis.UniversalClient, budget time.Duration) *batcher {
	return &batcher{client: c, timeout: 2 * budget, queue: make(chan *pending, queueSize)}
}

// do decides one request in Redis, waiting at most budget for the reply.
func (b *batcher) do(ctx context.Context, key string, g gcra, budget time.Duration) ([]int64, error) {
	p := &pending{key: key, g: g, deadline: time.Now().Add(budget), done: make(chan reply, 1)}
	select {
	case b.queue <- p:
	default:
		return nil, errQueueFull
	}
	b.ensureWorker()
	t, _ := b.timers.Get().(*time.Timer)
	if t == nil {
		t = time.NewTimer(budget)
	} else {
		t.Reset(budget)
	}
	defer func() {
		t.Stop()
		b.timers.Put(t)
	}()
	select {
	case rep := <-p.done:
		return rep.v, rep.err
	case <-t.C:
		return nil, fmt.Errorf("rate limit script: no reply within %v: %w", budget, context.DeadlineExceeded)
	case <-ctx.Done():
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
	now := time.Now()
	live := batch[:0]
	for _, p := range batch {
		if now.Before(p.deadline) {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	cmds, err := b.pipeline(ctx, live, false)
	if err == nil && anyNoScript(cmds) {
		// Redis restarted or flushed its scripts: load it once, run again.
		cmds, err = b.pipeline(ctx, live, true)
	}
	for i, p := range live {
		var rep reply
		switch {
		case cmds == nil:
			rep.err = fmt.Errorf("rate limit script: %w", err)
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

func (b *batcher) pipeline(ctx context.Context, live []*pending, load bool) ([]*redis.Cmd, error) {
	if load {
		if err := gcraScript.Load(ctx, b.client).Err(); err != nil {
			return nil, fmt.Errorf("load script: %w", err)
		}
	}
	cmds := make([]*redis.Cmd, len(live))
	_, err := b.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range live {
			cmds[i] = gcraScript.EvalSha(ctx, pipe, []string{"rl:{" + p.key + "}"},
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
