package soak

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
)

// small is a soak that fits in make test: a few hundred topics, nine sidecars, fast polling, churn at 50/s.
func small(d time.Duration, fault Fault) Config {
	return Config{
		Duration: d, Topics: 300, BrokerGroups: 4, Sidecars: 9, TopicsPerSidecar: 12, ChurnRate: 50,
		SampleEvery: time.Second, PollInterval: 250 * time.Millisecond, Bound: time.Second,
		CheckEvery: 100 * time.Millisecond, RemoveAfter: 250 * time.Millisecond, ClusterRetention: 2 * time.Second,
		Seed: 7, Fault: fault,
	}
}

// run runs a soak.
func run(t *testing.T, cfg Config) Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("setup %v, churn %v, all %v", rep.Setup.Round(time.Millisecond), rep.Took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return rep
}

// noLeak checks that no goroutine outlives the runs, waiting a little for those that are ending.
func noLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		t.Errorf("%d goroutines after the runs, %d before", n, before)
	}
}

// TestSoak runs a short soak: no route is lost, no reconnect sees an empty world, no deleted topic is kept, and
// every kind of churn happened while the sidecars received updates.
func TestSoak(t *testing.T) {
	before := runtime.NumGoroutine()
	rep := run(t, small(5*time.Second, NoFault))
	noLeak(t, before)
	c := rep.Checks
	if c.Lost() != 0 || c.EmptyWorlds != 0 || c.Ghosts != 0 {
		t.Errorf("lost %d (missing %d, wrong %d, withdrawn %d), empty worlds %d, ghosts %d:\n%s",
			c.Lost(), c.Missing, c.Wrong, c.Withdrawn, c.EmptyWorlds, c.Ghosts, rep.Markdown())
	}
	if c.Compared < 300 || c.FirstAnswers == 0 || c.GhostChecks == 0 {
		t.Errorf("the checker compared %d pairs, %d first answers, %d deleted topics: too little to mean anything", c.Compared, c.FirstAnswers, c.GhostChecks)
	}
	for _, k := range rep.Churn {
		if k.Kind != churnFault && k.Count == 0 {
			t.Errorf("no %q churn", k.Kind)
		}
	}
	if len(rep.Churn) != len(churnKinds)-1 {
		t.Errorf("churn kinds %v", rep.Churn)
	}
	if len(rep.Sidecars) != 3 {
		t.Fatalf("sidecar kinds %v", rep.Sidecars)
	}
	for _, s := range rep.Sidecars {
		if s.Updates == 0 || s.Reconnects == 0 || s.NACKs != 0 {
			t.Errorf("%s: %d updates, %d reconnects, %d NACKs", s.Kind, s.Updates, s.Reconnects, s.NACKs)
		}
	}
	if len(rep.Samples) < 5 {
		t.Errorf("%d samples", len(rep.Samples))
	}
	if t.Failed() {
		t.Log(rep.Markdown())
	}
}

// TestSoakDetectsFaults shows that the checker fails a run that loses routes: a sidecar that drops what it holds,
// and a watcher that stops while the NameServer's routes change.
func TestSoakDetectsFaults(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("faults", func(t *testing.T) { // returns once its parallel subtests are done
		for _, f := range []Fault{FaultSidecarDropsRoutes, FaultWatcherStalls} {
			t.Run(string(f), func(t *testing.T) {
				t.Parallel()
				rep := run(t, small(3*time.Second, f))
				c := rep.Checks
				if rep.Pass || c.Lost() == 0 {
					t.Fatalf("the fault went unnoticed:\n%s", rep.Markdown())
				}
				if f == FaultSidecarDropsRoutes && c.Missing == 0 {
					t.Errorf("no missing route counted: %+v", c)
				}
				if f == FaultWatcherStalls && c.Wrong == 0 {
					t.Errorf("no wrong route counted: %+v", c)
				}
				if len(rep.Violations) == 0 {
					t.Error("no violation described")
				}
				t.Logf("%s: %d missing, %d wrong, %d withdrawn; first: %s", f, c.Missing, c.Wrong, c.Withdrawn, rep.Violations[0])
			})
		}
	})
	noLeak(t, before)
}
