package soak

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// held is what a sidecar holds of one topic it subscribes to.
type held struct {
	present bool   // a route, and the endpoints of its cluster
	absent  bool   // told the topic does not exist (when !present)
	why     string // when !present and !absent: what it lacks
	cluster string
	route   string // the route a RocketMQ client reads from the endpoints (translate.ClientTopicRoute), described
	send    string // the brokers sends go to (the writable subset), described
	consume string // the brokers consumes go to (the readable subset), described
}

// heldFrom describes a route's endpoints as the checker compares them.
func heldFrom(cluster string, cla *endpointv3.ClusterLoadAssignment) held {
	return held{present: true, cluster: cluster, route: describeRoute(translate.ClientTopicRoute(cla)),
		send: describeTargets(translate.Targets(cla, translate.SubsetWritable)), consume: describeTargets(translate.Targets(cla, translate.SubsetReadable))}
}

// expected is what every subscribed sidecar must hold of a topic the NameServer routes as r: its route as a
// client reads it, sends to the master of every group it may write to, consumes from the carrier (the master, or
// the lowest broker id) of every group it may read from.
func expected(r remoting.TopicRouteData) held {
	brokers := map[string]remoting.BrokerData{}
	for _, b := range r.BrokerDatas {
		brokers[b.BrokerName] = b
	}
	out := remoting.TopicRouteData{BrokerDatas: r.BrokerDatas}
	var send, consume []translate.Target
	for _, q := range r.QueueDatas {
		b, ok := brokers[q.BrokerName]
		if !ok || len(b.BrokerAddrs) == 0 {
			continue // a group without a registered broker cannot be routed to (watcher.RouteOf)
		}
		q.TopicSysFlag = 0 // not served
		out.QueueDatas = append(out.QueueDatas, q)
		if addr, ok := b.BrokerAddrs[0]; ok && q.Perm&remoting.PermWrite != 0 && q.WriteQueueNums > 0 {
			send = append(send, translate.Target{BrokerName: q.BrokerName, BrokerID: 0, Addr: addr})
		}
		carrier := int64(-1)
		for id := range b.BrokerAddrs {
			if carrier < 0 || id < carrier {
				carrier = id
			}
		}
		if q.Perm&remoting.PermRead != 0 && q.ReadQueueNums > 0 {
			consume = append(consume, translate.Target{BrokerName: q.BrokerName, BrokerID: carrier, Addr: b.BrokerAddrs[carrier]})
		}
	}
	return held{present: true, route: describeRoute(&out), send: describeTargets(send), consume: describeTargets(consume)}
}

// describeRoute is a canonical text of a route: groups sorted, each with its cluster, zone, brokers and queue data.
func describeRoute(r *remoting.TopicRouteData) string {
	var parts []string
	for _, b := range r.BrokerDatas {
		ids := make([]int64, 0, len(b.BrokerAddrs))
		for id := range b.BrokerAddrs {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		var addrs []string
		for _, id := range ids {
			addrs = append(addrs, fmt.Sprintf("%d=%s", id, b.BrokerAddrs[id]))
		}
		parts = append(parts, fmt.Sprintf("broker %s [%s %s %s]", b.BrokerName, b.Cluster, b.ZoneName, strings.Join(addrs, " ")))
	}
	for _, q := range r.QueueDatas {
		parts = append(parts, fmt.Sprintf("queues %s r%d w%d perm%d sys%d", q.BrokerName, q.ReadQueueNums, q.WriteQueueNums, q.Perm, q.TopicSysFlag))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

func describeTargets(ts []translate.Target) string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, fmt.Sprintf("%s/%d=%s", t.BrokerName, t.BrokerID, t.Addr))
	}
	slices.Sort(out)
	return "[" + strings.Join(out, " ") + "]"
}

// CheckCounts are what the checker counted over a run.
type CheckCounts struct {
	Rounds int64 // check rounds over every sidecar
	// Compared counts (sidecar, topic) pairs compared with the NameServer: the topic existed and had been
	// stable for longer than the bound, the sidecar had been subscribed and connected for as long.
	Compared int64
	// Unstable counts the pairs left out because the topic changed within the bound.
	Unstable int64
	Missing  int64 // compared pairs the sidecar did not hold (or held as absent)
	Wrong    int64 // compared pairs whose route, send or consume brokers differed from the NameServer's
	// Withdrawn counts the times the server told a sidecar that a stable, existing topic is gone: a delta
	// removal, a Go client's not-found, a state-of-the-world answer without it.
	Withdrawn int64
	// FirstAnswers counts the first answers checked after a sidecar (re)connected; EmptyWorlds those that lacked
	// a stable, existing topic the sidecar subscribed to.
	FirstAnswers int64
	EmptyWorlds  int64
	// GhostChecks counts the pairs of topics deleted from the NameServer for longer than the removal bound;
	// Ghosts those a sidecar still held.
	GhostChecks int64
	Ghosts      int64
}

// Lost is every way a route was lost: missing, wrong, withdrawn.
func (c CheckCounts) Lost() int64 { return c.Missing + c.Wrong + c.Withdrawn }

// checker compares what the sidecars hold with the NameServer.
type checker struct {
	cfg   Config
	m     *model
	start time.Time
	// ghostBound is how long after its deletion a topic may still be held: the watcher's RemoveAfter, then the
	// usual propagation.
	ghostBound time.Duration

	rounds, compared, unstable, missing, wrong, withdrawn, firstAnswers, emptyWorlds, ghostChecks, ghosts atomic.Int64

	mu   sync.Mutex
	seen []string // the first violations, described
}

const maxExamples = 20

func newChecker(cfg Config, m *model) *checker {
	return &checker{cfg: cfg, m: m, start: time.Now(), ghostBound: cfg.RemoveAfter + 2*cfg.Bound}
}

func (ck *checker) note(format string, args ...any) {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	if len(ck.seen) < maxExamples {
		ck.seen = append(ck.seen, fmt.Sprintf("%7.1fs ", time.Since(ck.start).Seconds())+fmt.Sprintf(format, args...))
	}
}

func (ck *checker) examples() []string {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	return slices.Clone(ck.seen)
}

func (ck *checker) counts() CheckCounts {
	return CheckCounts{Rounds: ck.rounds.Load(), Compared: ck.compared.Load(), Unstable: ck.unstable.Load(),
		Missing: ck.missing.Load(), Wrong: ck.wrong.Load(), Withdrawn: ck.withdrawn.Load(),
		FirstAnswers: ck.firstAnswers.Load(), EmptyWorlds: ck.emptyWorlds.Load(),
		GhostChecks: ck.ghostChecks.Load(), Ghosts: ck.ghosts.Load()}
}

// gone is called when the server tells a sidecar that a topic it subscribes to does not exist (at). It counts a
// lost route when the topic exists and had not changed for the bound.
func (ck *checker) gone(sc string, topic string, at time.Time, how string) {
	if ck.m.stableExisting(topic, at.Add(-ck.cfg.Bound)) {
		ck.withdrawn.Add(1)
		ck.note("%s: %s withdrew %s, which exists and has not changed for %v", sc, how, topic, ck.cfg.Bound)
	}
}

// firstAnswer checks a sidecar's first answer after it (re)connected: lacking lists the topics it subscribed to
// on the new stream (asked at) that the answer did not hold. Those that existed and had been stable for the
// bound when it asked make an empty (or partial) world.
func (ck *checker) firstAnswer(sc string, asked time.Time, lacking []string) {
	ck.firstAnswers.Add(1)
	var lost []string
	for _, t := range lacking {
		if ck.m.stableExisting(t, asked.Add(-ck.cfg.Bound)) {
			lost = append(lost, t)
		}
	}
	if len(lost) > 0 {
		ck.emptyWorlds.Add(1)
		ck.note("%s: first answer after reconnecting lacked %d stable topics, e.g. %s", sc, len(lost), lost[0])
	}
}

// run checks every CheckEvery until ctx ends.
func (ck *checker) run(ctx context.Context, sidecars []proxy) {
	t := time.NewTicker(ck.cfg.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ck.round(sidecars)
		}
	}
}

// round compares every sidecar's view with the NameServer. The views are read first, at t1 or later, then the
// NameServer with the change times: a topic whose last change (read after the views) is older than t1 minus the
// bound was the same in the NameServer for the whole bound before each view was read, so the view must equal it.
func (ck *checker) round(sidecars []proxy) {
	ck.rounds.Add(1)
	t1 := time.Now()
	before := t1.Add(-ck.cfg.Bound)
	type obs struct {
		sc    proxy
		views map[string]held
	}
	var all []obs
	topics := map[string]struct{}{}
	for _, sc := range sidecars {
		views, ok := sc.observe(before)
		if !ok {
			continue
		}
		all = append(all, obs{sc, views})
		for t := range views {
			topics[t] = struct{}{}
		}
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	truths := ck.m.truths(names)
	want := map[string]held{}
	for _, o := range all {
		for topic, h := range o.views {
			tr := truths[topic]
			if !tr.exists {
				if tr.changedAt.Before(t1.Add(-ck.ghostBound)) {
					ck.ghostChecks.Add(1)
					if h.present {
						ck.ghosts.Add(1)
						ck.note("%s holds %s, deleted %v ago: %s", o.sc.name(), topic, t1.Sub(tr.changedAt).Round(time.Millisecond), h.route)
					}
				}
				continue
			}
			if !tr.changedAt.Before(before) {
				ck.unstable.Add(1)
				continue
			}
			ck.compared.Add(1)
			exp, ok := want[topic]
			if !ok {
				exp = expected(tr.route)
				want[topic] = exp
			}
			switch {
			case !h.present:
				ck.missing.Add(1)
				why := h.why
				if h.absent {
					why = "told it does not exist"
				}
				ck.note("%s lacks %s (stable for %v): %s; NameServer: %s", o.sc.name(), topic, t1.Sub(tr.changedAt).Round(time.Millisecond), why, exp.route)
			case h.route != exp.route:
				ck.wrong.Add(1)
				ck.note("%s holds %s as %s; NameServer: %s", o.sc.name(), topic, h.route, exp.route)
			case h.send != exp.send || h.consume != exp.consume:
				ck.wrong.Add(1)
				ck.note("%s sends %s to %s and consumes from %s; NameServer: %s and %s", o.sc.name(), topic, h.send, h.consume, exp.send, exp.consume)
			}
		}
	}
}
