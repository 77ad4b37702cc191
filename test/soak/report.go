package soak

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Sample is the process's state at one moment of the run.
type Sample struct {
	At         time.Duration // since the churn started
	Quiet      bool          // taken with the churn paused and every sidecar connected
	HeapAlloc  uint64        // live heap after a GC
	HeapInuse  uint64        // heap spans in use after a GC
	Goroutines int
	Topics     int // in the routing table
	BrokerSets int
	Streams    int   // xDS streams the cache holds
	Churn      int64 // churn events so far
	Compared   int64 // (sidecar, topic) pairs compared so far
	Lost       int64 // lost routes so far
}

type sampler struct {
	cfg     Config
	cp      *controlPlane
	ck      *checker
	ch      *churner
	start   time.Time
	samples []Sample
}

// quiet pauses the churn, waits (at most 10 s) until every sidecar is connected and answered and a little more
// for closed connections' goroutines to end, and takes a sample: goroutines are compared between quiet samples,
// where the same streams are open.
func (s *sampler) quiet(ctx context.Context, sidecars []proxy) {
	s.ch.paused.Store(true)
	defer s.ch.paused.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil && slices.ContainsFunc(sidecars, func(p proxy) bool { return !p.settled() }) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	s.take(true)
}

// take samples the heap after a GC and the goroutines (the least of eight counts 25 ms apart, which leaves out
// the watcher's short-lived queries).
func (s *sampler) take(quiet bool) {
	g := runtime.NumGoroutine()
	for range 7 {
		time.Sleep(25 * time.Millisecond)
		g = min(g, runtime.NumGoroutine())
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	topics, sets := s.cp.table.Stats()
	c := s.ck.counts()
	smp := Sample{At: time.Since(s.start), Quiet: quiet, HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, Goroutines: g,
		Topics: topics, BrokerSets: sets, Streams: len(s.cp.cache.Streams()), Churn: s.ch.total(), Compared: c.Compared, Lost: c.Lost()}
	s.samples = append(s.samples, smp)
	s.cfg.Logf("soak: %6s heap %s (in use %s), %d goroutines, %d topics, %d streams, %d churn events, %d pairs compared, %d lost",
		smp.At.Round(time.Second), mib(float64(smp.HeapAlloc)), mib(float64(smp.HeapInuse)), smp.Goroutines, smp.Topics, smp.Streams,
		smp.Churn, smp.Compared, smp.Lost)
}

// MemoryVerdict is the fit of the samples after the warm-up: the heap's growth projected over the whole run must
// stay under 10% of the warm heap plus 4 MiB; the goroutines of the quiet sample at the end must be within 5 + 2%
// of those of the quiet sample at the end of the warm-up, and their trend over the run within as much.
type MemoryVerdict struct {
	Samples                 int // after the warm-up
	WarmAt                  time.Duration
	WarmHeap, WarmInuse     uint64
	HeapSlope, InuseSlope   float64 // bytes per second
	HeapGrowth, InuseGrowth float64 // bytes, projected over the run
	HeapBound, InuseBound   float64
	WarmGoroutines          int     // at the quiet sample ending the warm-up
	LastGoroutines          int     // at the quiet sample ending the run
	GoroutineSlope          float64 // per second
	GoroutineBound          int
	Flat                    bool
	Why                     string // when not flat
}

// Report is what a soak found.
type Report struct {
	Config     Config
	Setup      time.Duration // the stack's start, first sync and sidecars' first answers
	Took       time.Duration // the churn
	Samples    []Sample
	Churn      []ChurnCount
	Checks     CheckCounts
	Sidecars   []SidecarSummary
	Scrapes    int      // metric scrapes (cache, wire and watcher collectors), every 5 s as Prometheus would
	Violations []string // the first violations, described
	Memory     MemoryVerdict
	Pass       bool
	Failures   []string
}

// fit returns the least-squares slope of ys over xs.
func fit(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

func (r *Report) evaluate() {
	mv := &r.Memory
	warm := time.Duration(float64(r.Config.Duration) * r.Config.WarmUp)
	var post []Sample
	for _, s := range r.Samples {
		if s.At >= warm {
			post = append(post, s)
		}
	}
	mv.Samples = len(post)
	var quiet []Sample
	for _, s := range post {
		if s.Quiet {
			quiet = append(quiet, s)
		}
	}
	switch {
	case len(post) < 3:
		mv.Why = fmt.Sprintf("%d samples after the warm-up, at least 3 are needed: a longer run or a shorter sample interval", len(post))
	case len(quiet) < 2:
		mv.Why = "no quiet sample at the end of the warm-up and at the end of the run (a run cut short)"
	default:
		w := post[0]
		mv.WarmAt, mv.WarmHeap, mv.WarmInuse = w.At, w.HeapAlloc, w.HeapInuse
		mv.WarmGoroutines, mv.LastGoroutines = quiet[0].Goroutines, quiet[len(quiet)-1].Goroutines
		var xs, heap, inuse, gs []float64
		for _, s := range post {
			xs = append(xs, s.At.Seconds())
			heap = append(heap, float64(s.HeapAlloc))
			inuse = append(inuse, float64(s.HeapInuse))
			gs = append(gs, float64(s.Goroutines))
		}
		run := r.Config.Duration.Seconds()
		mv.HeapSlope, mv.InuseSlope, mv.GoroutineSlope = fit(xs, heap), fit(xs, inuse), fit(xs, gs)
		mv.HeapGrowth, mv.InuseGrowth = mv.HeapSlope*run, mv.InuseSlope*run
		mv.HeapBound = 0.1*float64(mv.WarmHeap) + 4<<20
		mv.InuseBound = 0.1*float64(mv.WarmInuse) + 4<<20
		mv.GoroutineBound = 5 + mv.WarmGoroutines/50
		var why []string
		if mv.HeapGrowth > mv.HeapBound {
			why = append(why, fmt.Sprintf("the live heap grows %s over the run, more than %s", mib(mv.HeapGrowth), mib(mv.HeapBound)))
		}
		if mv.InuseGrowth > mv.InuseBound {
			why = append(why, fmt.Sprintf("the heap in use grows %s over the run, more than %s", mib(mv.InuseGrowth), mib(mv.InuseBound)))
		}
		if d := mv.LastGoroutines - mv.WarmGoroutines; d > mv.GoroutineBound || -d > mv.GoroutineBound {
			why = append(why, fmt.Sprintf("goroutines went from %d to %d", mv.WarmGoroutines, mv.LastGoroutines))
		}
		if g := mv.GoroutineSlope * run; g > float64(mv.GoroutineBound) {
			why = append(why, fmt.Sprintf("goroutines trend up by %.0f over the run", g))
		}
		mv.Flat = len(why) == 0
		mv.Why = strings.Join(why, "; ")
	}

	c := r.Checks
	fail := func(cond bool, msg string, args ...any) {
		if cond {
			r.Failures = append(r.Failures, fmt.Sprintf(msg, args...))
		}
	}
	fail(c.Lost() > 0, "%d lost routes (%d missing, %d wrong, %d withdrawn)", c.Lost(), c.Missing, c.Wrong, c.Withdrawn)
	fail(c.EmptyWorlds > 0, "%d first answers after a reconnect lacked stable topics", c.EmptyWorlds)
	fail(c.Ghosts > 0, "%d times a sidecar still held a topic deleted longer than %v ago", c.Ghosts, r.Config.RemoveAfter+2*r.Config.Bound)
	fail(c.Compared == 0, "nothing was compared: no topic was stable for the bound at a ready sidecar")
	fail(!mv.Flat, "memory: %s", mv.Why)
	for _, k := range r.Churn {
		fail(k.Count == 0 && k.Kind != churnFault, "no churn of kind %q happened", k.Kind)
	}
	r.Pass = len(r.Failures) == 0
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func signedMiB(b float64) string {
	if b >= 0 {
		return "+" + mib(b)
	}
	return "−" + mib(-b)
}

func ok(good bool) string {
	if good {
		return "ok"
	}
	return "**FAIL**"
}

// Markdown renders the report: the run's shape, the samples, the churn, the checks and the verdict.
func (r Report) Markdown() string {
	var b strings.Builder
	cfg := r.Config
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("rocketpilot soak — %s, %d CPU, %s: %s of churn (setup %s)\n\n", runtime.Version(), runtime.NumCPU(), runtime.GOARCH,
		r.Took.Round(time.Second), r.Setup.Round(100*time.Millisecond))
	var kinds []string
	for _, s := range r.Sidecars {
		kinds = append(kinds, fmt.Sprintf("%d %s", s.Count, s.Kind))
	}
	p("Stack: embedded NameServer (a pool of %d topic names over %d broker groups) → watcher (poll %v, broker table %v, "+
		"removal after %v) → table → cache (cluster retention %v, coalescing %v) → gRPC server; %d sidecars (%s), %d topics each; "+
		"churn %g/s; propagation bound %v; checks every %v; samples every %v after a GC (quiet ones with the churn paused "+
		"and every sidecar connected), fitted after a warm-up of %v.",
		cfg.Topics, cfg.BrokerGroups, cfg.PollInterval, cfg.PollInterval/2, cfg.RemoveAfter, cfg.ClusterRetention, coalesceWindow,
		cfg.Sidecars, strings.Join(kinds, ", "), cfg.TopicsPerSidecar, cfg.ChurnRate, cfg.Bound, cfg.CheckEvery, cfg.SampleEvery,
		time.Duration(float64(cfg.Duration)*cfg.WarmUp))
	if cfg.Fault != NoFault {
		p(" Fault injected: %s.", cfg.Fault)
	}
	p("\n\n| t | heap alloc | heap in use | goroutines | topics | broker sets | xDS streams | churn events | pairs compared | lost |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Samples {
		at := s.At.Round(time.Second).String()
		if s.Quiet {
			at += " (quiet)"
		}
		p("| %s | %s | %s | %d | %d | %d | %d | %d | %d | %d |\n", at, mib(float64(s.HeapAlloc)), mib(float64(s.HeapInuse)),
			s.Goroutines, s.Topics, s.BrokerSets, s.Streams, s.Churn, s.Compared, s.Lost)
	}
	p("\n| churn | count |\n|---|---|\n")
	for _, k := range r.Churn {
		p("| %s | %d |\n", k.Kind, k.Count)
	}
	p("\n| sidecars | count | updates received | disconnects | NACKs |\n|---|---|---|---|---|\n")
	for _, s := range r.Sidecars {
		p("| %s | %d | %d | %d | %d |\n", s.Kind, s.Count, s.Updates, s.Reconnects, s.NACKs)
	}
	c := r.Checks
	p("\n| check | count |\n|---|---|\n")
	p("| check rounds | %d |\n", c.Rounds)
	p("| (sidecar, topic) pairs compared with the NameServer (route, send and consume brokers) | %d |\n", c.Compared)
	p("| … left out: the topic changed within the bound | %d |\n", c.Unstable)
	p("| missing: a stable topic not held | %d |\n", c.Missing)
	p("| wrong: held with another route or other brokers | %d |\n", c.Wrong)
	p("| withdrawn: the server told a sidecar a stable topic is gone | %d |\n", c.Withdrawn)
	p("| first answers after a (re)connect checked | %d |\n", c.FirstAnswers)
	p("| … lacking a stable topic (empty or partial world) | %d |\n", c.EmptyWorlds)
	p("| deleted topics checked for ghosts | %d |\n", c.GhostChecks)
	p("| … still held | %d |\n", c.Ghosts)
	p("| metric scrapes (the cache's, wire and watcher collectors) | %d |\n", r.Scrapes)
	mv := r.Memory
	p("\n| verdict | value | bound | result |\n|---|---|---|---|\n")
	if mv.Samples >= 3 {
		p("| live heap (HeapAlloc) growth projected over the run, %d samples from %s | %s (slope %+.2f KiB/s; warm %s) | ≤ %s | %s |\n",
			mv.Samples, mv.WarmAt.Round(time.Second), signedMiB(mv.HeapGrowth), mv.HeapSlope/1024, mib(float64(mv.WarmHeap)), mib(mv.HeapBound),
			ok(mv.HeapGrowth <= mv.HeapBound))
		p("| heap in use (HeapInuse) growth projected over the run | %s (slope %+.2f KiB/s; warm %s) | ≤ %s | %s |\n",
			signedMiB(mv.InuseGrowth), mv.InuseSlope/1024, mib(float64(mv.WarmInuse)), mib(mv.InuseBound), ok(mv.InuseGrowth <= mv.InuseBound))
		d := mv.LastGoroutines - mv.WarmGoroutines
		p("| goroutines, quiet samples after the warm-up → at the end (slope of all) | %d → %d (%+.3f/s) | ± %d | %s |\n", mv.WarmGoroutines, mv.LastGoroutines, mv.GoroutineSlope,
			mv.GoroutineBound, ok(d <= mv.GoroutineBound && -d <= mv.GoroutineBound && mv.GoroutineSlope*cfg.Duration.Seconds() <= float64(mv.GoroutineBound)))
	} else {
		p("| memory | inconclusive: %s | | %s |\n", mv.Why, ok(false))
	}
	p("| lost routes (missing + wrong + withdrawn) | %d | 0 | %s |\n", c.Lost(), ok(c.Lost() == 0))
	p("| empty or partial worlds after a reconnect | %d | 0 | %s |\n", c.EmptyWorlds, ok(c.EmptyWorlds == 0))
	p("| deleted topics still held after %v | %d | 0 | %s |\n", cfg.RemoveAfter+2*cfg.Bound, c.Ghosts, ok(c.Ghosts == 0))
	if r.Pass {
		p("\n**PASS**\n")
	} else {
		p("\n**FAIL**: %s\n", strings.Join(r.Failures, "; "))
	}
	if len(r.Violations) > 0 {
		p("\nFirst violations (of at most %d kept):\n\n", maxExamples)
		for _, v := range r.Violations {
			p("- %s\n", v)
		}
	}
	return b.String()
}
