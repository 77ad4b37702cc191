package soak

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// A proxy is a simulated sidecar: it holds the routes of the topics it subscribes to, over one xDS stream that churn breaks and changes.
type proxy interface {
	name() string
	kind() string
	// observe returns what the sidecar holds of each topic it has subscribed to since before `before`; ok is
	// false unless its current stream has had its first answer since before `before` too.
	observe(before time.Time) (views map[string]held, ok bool)
	// subscriptions returns the topics it subscribes to.
	subscriptions() []string
	// resubscribe changes the subscription.
	resubscribe(add, remove []string)
	// disconnect breaks the stream; the sidecar stays away for offline, then reconnects on its own. It reports
	// false when the sidecar was already away.
	disconnect(offline time.Duration, rng *rand.Rand) bool
	// settled reports whether the sidecar is connected, its stream answered, and no reconnect under way.
	settled() bool
	// faulty reports whether the sidecar is the fault of the run (churn leaves it alone).
	faulty() bool
	stats() sidecarStats
	close()
}

type sidecarStats struct {
	updates    int64 // responses (raw) or route callbacks (Go) received
	reconnects int64 // disconnects churn caused
	nacks      int64
}

// SidecarSummary is one kind of sidecar's share of a run.
type SidecarSummary struct {
	Kind       string
	Count      int
	Updates    int64 // responses (raw streams) or watch callbacks (Go clients) received
	Reconnects int64
	NACKs      int64 // responses a sidecar rejected; the raw streams never reject
}

// identity is who a sidecar is.
type identity struct {
	id       string
	kindName string
	ck       *checker
	cfg      Config
	isFaulty bool
}

// base is what every kind shares: who it is and its counters.
type base struct {
	identity
	updates    atomic.Int64
	reconnects atomic.Int64
}

func (b *base) name() string { return b.id }
func (b *base) kind() string { return b.kindName }
func (b *base) faulty() bool { return b.isFaulty }
func (b *base) node() string { return b.id }
func (b *base) counts() sidecarStats {
	return sidecarStats{updates: b.updates.Load(), reconnects: b.reconnects.Load()}
}

const (
	kindGo    = "Go sidecar client (delta)"
	kindDelta = "raw delta ADS"
	kindSotw  = "raw state-of-the-world ADS"
)

// sidecarSet is every sidecar of a run.
type sidecarSet struct {
	all    []proxy
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startSidecars starts cfg.Sidecars sidecars, a third of each kind, and waits until each has its first answer.
// Subscriptions lean on a hot tenth of the pool, so that most topics in use have several subscribers.
func startSidecars(cfg Config, addr string, m *model, ck *checker) (*sidecarSet, error) {
	ctx, cancel := context.WithCancel(context.Background())
	set := &sidecarSet{cancel: cancel}
	hot := max(len(m.names)/10, cfg.TopicsPerSidecar*2)
	for i := range cfg.Sidecars {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1))
		want := map[string]struct{}{}
		for len(want) < cfg.TopicsPerSidecar {
			n := rng.IntN(len(m.names))
			if rng.IntN(10) < 7 {
				n = rng.IntN(hot)
			}
			want[m.names[n]] = struct{}{}
		}
		topics := slices.Sorted(maps.Keys(want))
		b := identity{ck: ck, cfg: cfg}
		var sc proxy
		var err error
		switch i % 3 {
		case 0:
			b.id, b.kindName = fmt.Sprintf("go-%02d", i), kindGo
			sc, err = newGoSidecar(ctx, &set.wg, b, addr, topics)
		case 1:
			b.id, b.kindName = fmt.Sprintf("delta-%02d", i), kindDelta
			b.isFaulty = cfg.Fault == FaultSidecarDropsRoutes && i == 1
			sc, err = newRawDelta(ctx, &set.wg, b, addr, topics)
		default:
			b.id, b.kindName = fmt.Sprintf("sotw-%02d", i), kindSotw
			sc, err = newRawSotw(ctx, &set.wg, b, addr, topics)
		}
		if err != nil {
			set.close()
			return nil, err
		}
		set.all = append(set.all, sc)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, sc := range set.all {
		for {
			if sc.settled() {
				break
			}
			if time.Now().After(deadline) {
				set.close()
				return nil, fmt.Errorf("soak: sidecar %s had no first answer within 30s", sc.name())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return set, nil
}

func (s *sidecarSet) close() {
	s.cancel()
	for _, sc := range s.all {
		sc.close()
	}
	s.wg.Wait()
}

func (s *sidecarSet) summary() []SidecarSummary {
	var out []SidecarSummary
	for _, kind := range []string{kindGo, kindDelta, kindSotw} {
		sum := SidecarSummary{Kind: kind}
		for _, sc := range s.all {
			if sc.kind() == kind {
				st := sc.stats()
				sum.Count++
				sum.Updates += st.updates
				sum.Reconnects += st.reconnects
				sum.NACKs += st.nacks
			}
		}
		if sum.Count > 0 {
			out = append(out, sum)
		}
	}
	return out
}

// done is a cancelled context: the Go client's Route with it reads the local cache and never waits.
var done = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// goSidecar is a Go sidecar client (xds/sidecar) watching its topics. Churn breaks its TCP connection (the
// client reconnects and resubscribes with initial_resource_versions, keeping its cache) or closes it and dials a
// new one (an empty cache: its first answers must hold every topic).
type goSidecar struct {
	base
	ctx  context.Context
	wg   *sync.WaitGroup
	addr string

	mu      sync.Mutex
	client  *sidecar.Client // nil while redialling
	subs    map[string]time.Time
	watches map[string]func()
	conn    net.Conn  // the client's current TCP connection
	offline time.Time // until when its dials fail
	readyAt time.Time // from when its cache is current, once the bound has passed: its last (re)connection
	busy    bool      // a redial is under way
	nacks   int64     // of clients closed
}

func newGoSidecar(ctx context.Context, wg *sync.WaitGroup, b identity, addr string, topics []string) (*goSidecar, error) {
	s := &goSidecar{base: base{identity: b}, ctx: ctx, wg: wg, addr: addr, subs: map[string]time.Time{}, watches: map[string]func(){}}
	now := time.Now()
	for _, t := range topics {
		s.subs[t] = now
	}
	s.mu.Lock()
	err := s.dialLocked()
	c, asked := s.client, s.readyAt
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.checkFirst(c, asked, topics) // waits (a bound at most) for the answers
	return s, nil
}

// dialLocked dials a new client and watches every subscribed topic with it.
func (s *goSidecar) dialLocked() error {
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		s.mu.Lock()
		off := time.Now().Before(s.offline)
		s.mu.Unlock()
		if off {
			return nil, errors.New("soak: sidecar offline")
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			s.mu.Lock()
			s.conn = c
			if now := time.Now(); now.After(s.readyAt) {
				s.readyAt = now // its cache may be stale until the stream on this connection catches up
			}
			s.mu.Unlock()
		}
		return c, err
	}
	// Short backoffs, client's and gRPC's: a disconnect lasts about its offline time, not a backoff's.
	c, err := sidecar.Dial(s.addr, sidecar.Options{NodeID: s.node(), MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dialer),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6,
				Jitter: 0.2, MaxDelay: 300 * time.Millisecond}, MinConnectTimeout: time.Second})}})
	if err != nil {
		return err
	}
	s.client, s.readyAt = c, time.Now()
	for t := range s.subs {
		s.watchLocked(t)
	}
	return nil
}

func (s *goSidecar) watchLocked(topic string) {
	s.watches[topic] = s.client.Watch(topic, func(_ *remoting.TopicRouteData, err error) {
		s.updates.Add(1)
		if errors.Is(err, sidecar.ErrTopicNotFound) {
			s.ck.gone(s.id, topic, time.Now(), "ErrTopicNotFound")
		}
	})
}

func (s *goSidecar) observe(before time.Time) (map[string]held, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil || !s.readyAt.Before(before) {
		return nil, false
	}
	out := make(map[string]held, len(s.subs))
	for t, at := range s.subs {
		if !at.Before(before) {
			continue
		}
		r, err := s.client.Route(done, t)
		switch {
		case err == nil:
			out[t] = held{present: true, cluster: r.Cluster, route: describeRoute(r.Data),
				send: describeTargets(r.Send), consume: describeTargets(r.Consume)}
		case errors.Is(err, sidecar.ErrTopicNotFound):
			out[t] = held{absent: true}
		default:
			out[t] = held{why: "no answer in its cache: " + err.Error()}
		}
	}
	return out, true
}

func (s *goSidecar) settled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client != nil && s.conn != nil && !s.busy && time.Now().After(s.offline)
}

func (s *goSidecar) subscriptions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.subs))
}

func (s *goSidecar) resubscribe(add, remove []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, t := range remove {
		delete(s.subs, t)
		if stop := s.watches[t]; stop != nil {
			stop()
			delete(s.watches, t)
		}
		if s.client != nil {
			s.client.Forget(t)
		}
	}
	for _, t := range add {
		s.subs[t] = now
		if s.client != nil {
			s.watchLocked(t)
		}
	}
}

// disconnect breaks the client's connection (it reconnects by itself once its dials succeed again) or, every
// other time, closes the client and dials a new one after offline.
func (s *goSidecar) disconnect(offline time.Duration, rng *rand.Rand) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy || s.client == nil || s.conn == nil {
		return false
	}
	s.reconnects.Add(1)
	now := time.Now()
	if rng.IntN(2) == 0 {
		s.offline = now.Add(offline)
		s.readyAt = s.offline // the cache may be stale until it reconnects
		if s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
		return true
	}
	old := s.client
	s.client, s.busy, s.watches = nil, true, map[string]func(){}
	s.wg.Go(func() {
		_, nacks := old.Stats()
		old.Close()
		t := time.NewTimer(offline)
		defer t.Stop()
		select {
		case <-s.ctx.Done():
		case <-t.C:
		}
		s.mu.Lock()
		s.nacks += int64(nacks)
		s.busy = false
		// The run may have ended meanwhile: close (which follows the cancel) must not miss a client dialled now.
		if s.ctx.Err() != nil || s.dialLocked() != nil {
			s.mu.Unlock()
			return
		}
		asked := s.readyAt
		c := s.client
		topics := slices.Collect(maps.Keys(s.subs))
		s.mu.Unlock()
		s.checkFirst(c, asked, topics)
	})
	return true
}

// checkFirst resolves every topic a fresh client subscribed to, within the bound: those it cannot resolve make
// its first answer incomplete (an empty world when none resolves).
func (s *goSidecar) checkFirst(c *sidecar.Client, asked time.Time, topics []string) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Bound)
	defer cancel()
	var lacking []string
	for _, t := range topics {
		if _, err := c.Route(ctx, t); err != nil {
			lacking = append(lacking, t)
		}
	}
	if s.ctx.Err() != nil {
		return // the run ended meanwhile
	}
	s.mu.Lock()
	lacking = slices.DeleteFunc(lacking, func(t string) bool { _, still := s.subs[t]; return !still })
	s.mu.Unlock()
	s.ck.firstAnswer(s.id, asked, lacking)
}

func (s *goSidecar) stats() sidecarStats {
	st := s.counts()
	s.mu.Lock()
	defer s.mu.Unlock()
	st.nacks = s.nacks
	if s.client != nil {
		_, n := s.client.Stats()
		st.nacks += int64(n)
	}
	return st
}

func (s *goSidecar) close() {
	s.mu.Lock()
	c := s.client
	s.client = nil
	s.mu.Unlock()
	if c != nil {
		_, n := c.Stats()
		c.Close()
		s.mu.Lock()
		s.nacks += int64(n)
		s.mu.Unlock()
	}
}
