package soak

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Churn kinds, as the report names them.
const (
	churnCreate     = "topic created"
	churnDelete     = "topic deleted"
	churnPerm       = "perm changed (its home group or all: read-only, write-only, read-write)"
	churnExpire     = "broker group expired"
	churnSlave      = "slave expired"
	churnRegister   = "broker group re-registered"
	churnSubscribe  = "subscription changed"
	churnDisconnect = "sidecar disconnected"
	churnFault      = "fault injected"
)

var churnKinds = []string{churnCreate, churnDelete, churnPerm, churnExpire, churnSlave, churnRegister, churnSubscribe, churnDisconnect, churnFault}

// ChurnCount is how many times one kind of churn happened.
type ChurnCount struct {
	Kind  string
	Count int64
}

// churner makes cfg.ChurnRate changes a second, each picked at random: topics created or deleted (30%), a perm
// changed (25%), a subscription changed (20%), a broker group moved on (15%: expired, or its slave expired, or
// back after it was down for the bound and a poll; a group goes down only when all are up and the last came back
// as long ago, so that both states are held long enough to be checked), a sidecar disconnected (10%). A turn with
// nothing to do for a broker changes a perm instead.
type churner struct {
	cfg      Config
	m        *model
	sidecars *sidecarSet
	rng      *rand.Rand
	cp       *controlPlane
	ck       *checker

	paused atomic.Bool // while the sampler takes a quiet sample

	mu     sync.Mutex
	n      map[string]int64
	since  map[int]time.Time // groups down, since when
	lastUp time.Time
}

func (c *churner) count(kind string) {
	if kind == "" {
		return
	}
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	c.n[kind]++
	c.mu.Unlock()
}

func (c *churner) counts() []ChurnCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ChurnCount
	for _, k := range churnKinds {
		if k == churnFault && c.n[k] == 0 {
			continue
		}
		out = append(out, ChurnCount{Kind: k, Count: c.n[k]})
	}
	return out
}

func (c *churner) total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.n {
		n += v
	}
	return n
}

func (c *churner) run(ctx context.Context, start time.Time) {
	c.since = map[int]time.Time{}
	c.lastUp = start.Add(-c.cfg.Bound) // the first group goes down a poll into the run
	t := time.NewTicker(time.Duration(float64(time.Second) / c.cfg.ChurnRate))
	defer t.Stop()
	faultAt := start.Add(c.cfg.Duration / 3)
	faulted := c.cfg.Fault == NoFault
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if !faulted && now.After(faultAt) {
				faulted = true
				c.fault()
			}
			if !c.paused.Load() {
				c.step()
			}
		}
	}
}

func (c *churner) step() {
	switch r := c.rng.IntN(100); {
	case r < 30:
		kind, _ := c.m.createOrDelete(c.rng)
		c.count(kind)
	case r < 55:
		c.perm()
	case r < 75:
		c.resubscribe()
	case r < 90:
		if kind := c.m.flap(c.rng, c.since, c.cfg.Bound+c.cfg.PollInterval, c.cfg.Bound+c.cfg.PollInterval, &c.lastUp); kind != "" {
			c.count(kind)
		} else {
			c.perm()
		}
	default:
		if sc := c.pickSidecar(); sc != nil && sc.disconnect(100*time.Millisecond+time.Duration(c.rng.Int64N(int64(900*time.Millisecond))), c.rng) {
			c.count(churnDisconnect)
		}
	}
}

func (c *churner) perm() {
	if c.m.changePerm(c.rng) != "" {
		c.count(churnPerm)
	}
}

func (c *churner) pickSidecar() proxy {
	all := c.sidecars.all
	start := c.rng.IntN(len(all))
	for k := range all {
		if sc := all[(start+k)%len(all)]; !sc.faulty() {
			return sc
		}
	}
	return nil
}

// resubscribe replaces one to three of a sidecar's topics with others of the pool.
func (c *churner) resubscribe() {
	sc := c.pickSidecar()
	if sc == nil {
		return
	}
	subs := sc.subscriptions()
	k := min(1+c.rng.IntN(3), len(subs))
	var remove, add []string
	for _, i := range c.rng.Perm(len(subs))[:k] {
		remove = append(remove, subs[i])
	}
	for len(add) < k {
		t := c.m.names[c.rng.IntN(len(c.m.names))]
		if !slices.Contains(subs, t) && !slices.Contains(add, t) {
			add = append(add, t)
		}
	}
	sc.resubscribe(add, remove)
	c.count(churnSubscribe)
}

// fault injects the run's fault.
func (c *churner) fault() {
	switch c.cfg.Fault {
	case FaultSidecarDropsRoutes:
		for _, sc := range c.sidecars.all {
			if d, ok := sc.(*rawDelta); ok && sc.faulty() {
				d.dropRoutes()
				c.count(churnFault)
			}
		}
	case FaultWatcherStalls:
		c.cp.stallWatcher()
		c.m.changePermOf(c.rng, c.sidecars.all[0].subscriptions())
		c.count(churnFault)
	}
}
