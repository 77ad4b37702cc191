// Package soak runs rocketpilot's whole control plane in one process for a bounded time under churn and checks
// that it neither loses routes nor grows.
//
// The stack is the one `rocketpilot serve` wires, over loopback: the embedded NameServer with a few thousand
// topics over several broker groups, the real watcher polling it, the routing table, the xDS cache and the gRPC
// server. Simulated sidecars of three kinds hold subsets of the topics: Go sidecar clients (xds/sidecar, delta),
// raw delta ADS streams and raw state-of-the-world ADS streams, each subscribing on demand to its topics' routes
// and to the endpoints of the clusters they name, and ACKing what it gets.
//
// Churn changes the NameServer (topics created and deleted over a fixed pool of names, perms set read-only or
// write-only, broker groups expiring and re-registering, slaves going down) and the sidecars (disconnects and
// reconnects, subscription changes). A checker compares, continuously, what every sidecar holds with what the
// NameServer answers: a topic that exists and has not changed for longer than the propagation bound must be held
// by every sidecar subscribed to it, with the NameServer's route (its 105 answer, as a RocketMQ client reads it
// from the served endpoints) and the brokers sends and consumes go to. The heap and the goroutines are sampled
// and their growth after a warm-up fitted to a line.
//
// Run is the whole soak; hack/soak (make soak) runs it for ten minutes and prints the report.
package soak

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Fault is a deliberate defect injected into a run, to show that the checker detects what it claims to.
type Fault string

const (
	// NoFault is a normal run.
	NoFault Fault = ""
	// FaultSidecarDropsRoutes makes one raw delta sidecar forget every route it holds, a third into the run,
	// while staying subscribed: the server believes it has them and sends nothing until they change.
	FaultSidecarDropsRoutes Fault = "sidecar-drops-routes"
	// FaultWatcherStalls stops the watcher a third into the run and changes the perm of every topic one sidecar
	// holds: the NameServer's routes change and the control plane never sees it.
	FaultWatcherStalls Fault = "watcher-stalls"
)

// Config shapes a soak. Zero values take the defaults in parentheses.
type Config struct {
	Duration time.Duration // how long the churn runs (10m)
	// Topics is the pool of topic names (3000); about 80% of them exist at any time.
	Topics       int
	BrokerGroups int // broker groups, master and slave each, in two clusters (6)
	// Sidecars is the number of simulated sidecars (24), a third of each kind: Go sidecar clients, raw delta
	// and raw state-of-the-world ADS streams.
	Sidecars         int
	TopicsPerSidecar int     // topics each sidecar subscribes to (25)
	ChurnRate        float64 // churn events per second (20)
	// SampleEvery is the interval between heap and goroutine samples (30s).
	SampleEvery time.Duration
	// WarmUp is the share of the run before the heap fit starts (0.2).
	WarmUp float64
	// PollInterval is the watcher's interval (1s); its broker table is polled twice as often.
	PollInterval time.Duration
	// Bound is the propagation bound: a NameServer change must be at every subscribed sidecar this long after
	// it happened (3 poll intervals).
	Bound time.Duration
	// CheckEvery is the interval between two check rounds (PollInterval/2).
	CheckEvery time.Duration
	// RemoveAfter is the watcher's RemoveAfter, how long a topic answers 17 before it is withdrawn (2 poll
	// intervals).
	RemoveAfter time.Duration
	// ClusterRetention is the cache's retention of clusters no route names any more (1m, so that retention
	// reaches its steady state within the warm-up of a ten-minute run).
	ClusterRetention time.Duration
	Seed             uint64 // of the churn's random choices (1)
	Fault            Fault
	// Logf, when set, receives progress lines (one per sample).
	Logf func(format string, args ...any)
}

func (c *Config) defaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Duration, 10*time.Minute)
	def(&c.SampleEvery, 30*time.Second)
	def(&c.PollInterval, time.Second)
	def(&c.Bound, 3*c.PollInterval)
	def(&c.CheckEvery, c.PollInterval/2)
	def(&c.RemoveAfter, 2*c.PollInterval)
	def(&c.ClusterRetention, time.Minute)
	if c.Topics <= 0 {
		c.Topics = 3000
	}
	if c.BrokerGroups <= 0 {
		c.BrokerGroups = 6
	}
	if c.Sidecars <= 0 {
		c.Sidecars = 24
	}
	if c.TopicsPerSidecar <= 0 {
		c.TopicsPerSidecar = 25
	}
	if c.ChurnRate <= 0 {
		c.ChurnRate = 20
	}
	if c.WarmUp <= 0 || c.WarmUp >= 1 {
		c.WarmUp = 0.2
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	switch {
	case c.BrokerGroups < 3:
		return fmt.Errorf("soak: %d broker groups, at least 3", c.BrokerGroups)
	case c.BrokerGroups > 200:
		return fmt.Errorf("soak: %d broker groups, at most 200", c.BrokerGroups)
	case c.Topics < 10:
		return fmt.Errorf("soak: %d topics, at least 10", c.Topics)
	case c.TopicsPerSidecar > c.Topics/2:
		return fmt.Errorf("soak: %d topics per sidecar out of %d, at most half", c.TopicsPerSidecar, c.Topics)
	case c.Sidecars < 3 && c.Fault != NoFault:
		return errors.New("soak: a fault needs at least 3 sidecars")
	}
	switch c.Fault {
	case NoFault, FaultSidecarDropsRoutes, FaultWatcherStalls:
	default:
		return fmt.Errorf("soak: unknown fault %q", c.Fault)
	}
	return nil
}

// Run runs the soak until cfg.Duration has passed or ctx ends, then stops everything it started, and reports.
// It returns an error only when the stack could not be started; a run that lost routes or grew is reported,
// with Report.Pass false.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.defaults(); err != nil {
		return Report{}, err
	}
	start := time.Now()
	m := newModel(cfg)
	if err := m.ns.Start(); err != nil {
		return Report{}, err
	}
	cp, err := startControlPlane(ctx, cfg, m.ns)
	if err != nil {
		m.ns.Close()
		return Report{}, err
	}
	rep := &Report{Config: cfg}
	ck := newChecker(cfg, m)
	sidecars, err := startSidecars(cfg, cp.addr, m, ck)
	if err != nil {
		cp.stop()
		m.ns.Close()
		return Report{}, err
	}
	rep.Setup = time.Since(start)
	cfg.Logf("soak: %d topics, %d sidecars up in %v; churning for %v", m.ns.TopicCount(), len(sidecars.all), rep.Setup.Round(time.Millisecond), cfg.Duration)

	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	ch := &churner{cfg: cfg, m: m, sidecars: sidecars, rng: rng, cp: cp, ck: ck}
	runStart := time.Now()
	sampler := &sampler{cfg: cfg, cp: cp, ck: ck, ch: ch, start: runStart}
	sampler.take(true) // t = 0: the stack synced, every sidecar answered, no churn yet
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { ch.run(runCtx, runStart) })
	wg.Go(func() { ck.run(runCtx, sidecars.all) })
	wg.Go(func() { cp.scrapeLoop(runCtx) })
	func() {
		t := time.NewTicker(cfg.SampleEvery)
		defer t.Stop()
		warm := time.NewTimer(time.Duration(float64(cfg.Duration) * cfg.WarmUp))
		defer warm.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				sampler.take(false)
			case <-warm.C:
				sampler.quiet(runCtx, sidecars.all)
			}
		}
	}()
	wg.Wait()
	rep.Took = time.Since(runStart)
	if ctx.Err() == nil {
		sampler.quiet(ctx, sidecars.all) // the end of the run, when it ran its course
	}

	sidecars.close()
	rep.Sidecars = sidecars.summary()
	cp.stop()
	rep.Scrapes = cp.scrapes
	m.ns.Close()

	rep.Samples = sampler.samples
	rep.Churn = ch.counts()
	rep.Checks = ck.counts()
	rep.Violations = ck.examples()
	rep.evaluate()
	return *rep, nil
}
