// Command tracewait reads a Go execution trace (runtime/trace, or a data
// plane's /debug/pprof/trace) and reports how long goroutines stood
// runnable before they ran, and for the long waits what the P they were
// queued on was doing meanwhile. Issue 20 (goal 1a) asked for the cause of
// a long p99 from traces of the scheduler, not guesses; this is the reading
// of those traces that docs/PERFORMANCE.md quotes.
//
//	go run . [-long 5ms] trace.out
//
// A goroutine made runnable on P a is queued there (run queue or runnext)
// until P a runs it or an idle P steals it. A P without any event for
// milliseconds in a busy proxy, where every request makes system calls
// and wake-ups, is one whose thread the kernel is not running: the
// goroutines queued on it wait for the thread to be scheduled again.
package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

type pending struct {
	site    string // where the goroutine had blocked
	at      trace.Time
	proc    trace.ProcID
	byGoro  bool // made runnable by a running goroutine (a hand-off), not by the scheduler (network poller, timers)
	preempt bool // was running before (preempted or yielded)
}

type wait struct {
	site     string
	d        time.Duration
	from, on trace.ProcID
	start    trace.Time
	byGoro   bool
	preempt  bool
}

func main() {
	long := flag.Duration("long", 5*time.Millisecond, "a wait this long or longer is examined")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tracewait [-long 5ms] trace.out")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *long); err != nil {
		fmt.Fprintln(os.Stderr, "tracewait:", err)
		os.Exit(1)
	}
}

func run(path string, long time.Duration) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	runnable := map[trace.GoID]pending{}
	blockedIn := map[trace.GoID]string{}
	procEvents := map[trace.ProcID][]trace.Time{}
	var waits []wait
	var first, last trace.Time
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		if p := ev.Proc(); p != trace.NoProc {
			procEvents[p] = append(procEvents[p], ev.Time())
		}
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		switch {
		case to == trace.GoWaiting:
			blockedIn[id] = site(ev.Stack())
		case to == trace.GoRunnable:
			runnable[id] = pending{site: blockedIn[id], at: ev.Time(), proc: ev.Proc(), byGoro: ev.Goroutine() != trace.NoGoroutine && ev.Goroutine() != id, preempt: from == trace.GoRunning}
		case to == trace.GoRunning:
			if p, ok := runnable[id]; ok {
				waits = append(waits, wait{site: p.site, d: ev.Time().Sub(p.at), from: p.proc, on: ev.Proc(), start: p.at, byGoro: p.byGoro, preempt: p.preempt})
				delete(runnable, id)
			}
		}
	}
	if len(waits) == 0 {
		return errors.New("no goroutine went from runnable to running")
	}
	span := last.Sub(first)
	fmt.Printf("trace: %v, %d procs, %d runnable->running waits\n", span.Round(time.Millisecond), len(procEvents), len(waits))
	ds := make([]time.Duration, len(waits))
	for i, w := range waits {
		ds[i] = w.d
	}
	slices.Sort(ds)
	q := func(f float64) time.Duration { return ds[min(len(ds)-1, int(f*float64(len(ds))))] }
	fmt.Printf("wait: p50 %v p90 %v p99 %v p99.9 %v max %v\n", q(.5), q(.9), q(.99), q(.999), ds[len(ds)-1])

	// Silent stretches of each P: no event for at least `long`.
	var silentTotal time.Duration
	silentN := 0
	for _, ts := range procEvents {
		for i := 1; i < len(ts); i++ {
			if g := ts[i].Sub(ts[i-1]); g >= long {
				silentTotal += g
				silentN++
			}
		}
	}
	fmt.Printf("Ps silent for >= %v: %d stretches, %v in all (%.1f%% of P-time)\n", long, silentN, silentTotal.Round(time.Millisecond),
		100*float64(silentTotal)/float64(span)/float64(len(procEvents)))

	// Waits in the order they ended, to count for a long wait the goroutines
	// that became runnable after it and ran before it (overtook it).
	byEnd := slices.Clone(waits)
	slices.SortFunc(byEnd, func(a, b wait) int { return cmp.Compare(a.start+trace.Time(a.d), b.start+trace.Time(b.d)) })
	var overtaken []int
	sites := map[string]int{}
	overBy := map[string]int{}
	var n, stolen, queuedSilent, handoff, sched, schedNoP, preempt int
	for _, w := range waits {
		if w.d < long {
			continue
		}
		n++
		sites[w.site]++
		switch {
		case w.preempt:
			preempt++
		case w.byGoro:
			handoff++
		default:
			sched++
			if w.from == trace.NoProc {
				schedNoP++
			}
		}
		if w.on != w.from {
			stolen++
		}
		end := w.start + trace.Time(w.d)
		i, _ := slices.BinarySearchFunc(byEnd, w.start, func(x wait, t trace.Time) int { return cmp.Compare(x.start+trace.Time(x.d), t) })
		k := 0
		for ; i < len(byEnd) && byEnd[i].start+trace.Time(byEnd[i].d) < end; i++ {
			if o := byEnd[i]; o.start > w.start {
				k++
				switch {
				case o.preempt:
					overBy["preempted or yielded"]++
				case o.byGoro && o.site == "":
					overBy["new goroutines"]++
				case o.byGoro:
					overBy["woken by another goroutine: "+o.site]++
				default:
					overBy["woken by the scheduler: "+o.site]++
				}
			}
		}
		overtaken = append(overtaken, k)
		if w.from != trace.NoProc && longestGap(procEvents[w.from], w.start, w.start+trace.Time(w.d)) >= w.d/2 {
			queuedSilent++
		}
	}
	fmt.Printf("waits >= %v: %d (%.2f%% of all)\n", long, n, 100*float64(n)/float64(len(waits)))
	if n > 0 {
		pct := func(k int) string { return fmt.Sprintf("%d (%.0f%%)", k, 100*float64(k)/float64(n)) }
		fmt.Printf("  made runnable by: the scheduler (network poller, timers) %s, another goroutine %s, preemption or yield %s\n", pct(sched), pct(handoff), pct(preempt))
		fmt.Printf("  of the scheduler's, made runnable without a P (sysmon's network poll, which puts them on the global run queue): %s\n", pct(schedNoP))
		fmt.Printf("  the P they were queued on had no event for at least half the wait: %s\n", pct(queuedSilent))
		slices.Sort(overtaken)
		fmt.Printf("  goroutines made runnable after them that ran before them: median %d, p90 %d, max %d\n", overtaken[len(overtaken)/2], overtaken[len(overtaken)*9/10], overtaken[len(overtaken)-1])
		fmt.Printf("  ran on another P than the one they were queued on: %s\n", pct(stolen))
	}
	printTop("  where they had blocked:", sites, 6)
	printTop("  what overtook them (count over all long waits):", overBy, 8)
	return nil
}

func printTop(title string, m map[string]int, n int) {
	type kv struct {
		k string
		v int
	}
	var top []kv
	for k, v := range m {
		top = append(top, kv{k, v})
	}
	slices.SortFunc(top, func(a, b kv) int { return cmp.Compare(b.v, a.v) })
	for i, e := range top[:min(len(top), n)] {
		if i == 0 {
			fmt.Println(title)
		}
		fmt.Printf("    %8d  %s\n", e.v, e.k)
	}
}

// site names where a goroutine blocked: the first frame of its stack that is
// not the runtime's or the network plumbing's.
func site(st trace.Stack) string {
	for f := range st.Frames() {
		switch {
		case strings.HasPrefix(f.Func, "runtime."), strings.HasPrefix(f.Func, "internal/poll."),
			strings.HasPrefix(f.Func, "net.(*netFD)"), strings.HasPrefix(f.Func, "net.(*conn)"),
			strings.HasPrefix(f.Func, "bufio."), strings.HasPrefix(f.Func, "sync."):
			continue
		}
		return f.Func
	}
	return "?"
}

// longestGap is the longest stretch without an event in ts (sorted) within [from, to].
func longestGap(ts []trace.Time, from, to trace.Time) time.Duration {
	i, _ := slices.BinarySearch(ts, from)
	prev := from
	var g time.Duration
	for ; i < len(ts) && ts[i] <= to; i++ {
		g = max(g, ts[i].Sub(prev))
		prev = ts[i]
	}
	return max(g, to.Sub(prev))
}
