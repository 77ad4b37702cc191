package watcher

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
)

// pollLoop queries topic routes: urgent topics first, then every known topic once per interval, spread evenly.
func (w *Watcher) pollLoop(ctx context.Context) {
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for ctx.Err() == nil && !w.isSynced() {
		// Discovery queues every topic it finds as urgent before it counts itself, so once a discovery has been
		// counted, draining the urgent queue answers every topic it found.
		discovered := w.stats.discoveries.Load() > 0
		for w.runUrgent(ctx, &inflight) {
		}
		inflight.Wait()
		if discovered {
			w.markSynced()
			break
		}
		w.idle(ctx, &inflight, 20*time.Millisecond)
	}
	for ctx.Err() == nil {
		cycle := w.knownTopics()
		start := time.Now()
		if len(cycle) == 0 {
			w.idle(ctx, &inflight, w.opts.Interval)
			continue
		}
		pace := w.opts.Interval / time.Duration(len(cycle))
		for i := 0; i < len(cycle) && ctx.Err() == nil; {
			if w.runUrgent(ctx, &inflight) {
				continue
			}
			if wait := time.Until(start.Add(time.Duration(i) * pace)); wait > 0 {
				w.idle(ctx, nil, wait)
				continue
			}
			w.launch(ctx, &inflight, cycle[i])
			i++
		}
		if took := time.Since(start); took > w.opts.Interval+w.opts.Interval/10 {
			w.opts.Logger.Warn("a polling cycle took longer than the interval; raise the rate limit or the interval",
				"topics", len(cycle), "took", took.Round(time.Millisecond), "interval", w.opts.Interval)
		} else {
			w.idle(ctx, &inflight, w.opts.Interval-took)
		}
	}
}

// idle waits for d, or until woken; with inflight set it serves urgent work while it waits, otherwise it returns
// when woken so the caller can serve it.
func (w *Watcher) idle(ctx context.Context, inflight *sync.WaitGroup, d time.Duration) {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-w.wake:
			if inflight == nil {
				return
			}
			for w.runUrgent(ctx, inflight) {
			}
		}
	}
}

func (w *Watcher) isSynced() bool {
	select {
	case <-w.synced:
		return true
	default:
		return false
	}
}

func (w *Watcher) markSynced() {
	w.syncedOnce.Do(func() {
		topics, sets := w.table.Stats()
		w.opts.Logger.Info("initial sync done", "source", w.opts.Source, "topics", topics, "brokerSets", sets)
		close(w.synced)
	})
}

// Topics returns the topics the watcher follows, sorted.
func (w *Watcher) Topics() []string { return w.knownTopics() }

func (w *Watcher) knownTopics() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.topics))
}

// runUrgent launches one urgent query if any is queued and reports whether it did.
func (w *Watcher) runUrgent(ctx context.Context, inflight *sync.WaitGroup) bool {
	w.mu.Lock()
	name, ok := w.urgent.pop()
	w.mu.Unlock()
	if !ok {
		return false
	}
	w.launch(ctx, inflight, name)
	return true
}

// launch waits for the rate limit and a concurrency slot, then queries a topic in the background. A topic already
// in flight is not asked twice at once (an older answer could land after a newer one): it is queried again as soon
// as the flight ends.
func (w *Watcher) launch(ctx context.Context, inflight *sync.WaitGroup, name string) {
	w.mu.Lock()
	if _, busy := w.inflight[name]; busy {
		w.inflight[name] = true
		w.mu.Unlock()
		return
	}
	w.inflight[name] = false
	w.mu.Unlock()
	land := func() {
		w.mu.Lock()
		again := w.inflight[name]
		delete(w.inflight, name)
		if again && w.topics[name] != nil {
			w.urgent.push(name)
		}
		w.mu.Unlock()
		if again {
			w.kick()
		}
	}
	if w.limiter.Wait(ctx) != nil {
		land()
		return
	}
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		land()
		return
	}
	inflight.Go(func() {
		defer func() { <-w.sem }()
		defer land()
		w.queryTopic(ctx, name)
	})
}

// requeueUsing queues every followed topic whose route includes one of the broker groups. The table finds them
// through its broker sets' topics, so a broker change costs the topics that use the group, not a pass over the
// whole model (10M topics took 2.7 s).
func (w *Watcher) requeueUsing(brokers map[string]bool) {
	names := w.table.TopicsUsingGroups(slices.Collect(maps.Keys(brokers)))
	w.mu.Lock()
	for _, name := range names {
		if w.topics[name] != nil {
			w.urgent.push(name)
		}
	}
	w.mu.Unlock()
	w.stats.brokerRequeues.Add(int64(len(names)))
}

type answer struct {
	body []byte
	err  error
}

// queryTopic asks every NameServer for a topic's route and applies what they say to the table.
//
// What to write is decided under w.mu and written after it is released: the table has locks of its own, and a
// reader of the table may call the watcher (Status, Topics), so the two never nest. The order of a topic's writes
// holds without the lock: launch never queries a topic twice at once, and a query lands (lets the next one start)
// only after its writes are done.
func (w *Watcher) queryTopic(ctx context.Context, name string) {
	answers := make([]answer, len(w.ns))
	if len(w.ns) == 1 {
		answers[0] = w.ask(ctx, w.ns[0], name)
	} else {
		var wg sync.WaitGroup
		for i, ns := range w.ns {
			wg.Go(func() { answers[i] = w.ask(ctx, ns, name) })
		}
		wg.Wait()
	}
	w.stats.queries.Add(1)

	writes := w.settle(name, answers)
	if len(writes) == 0 {
		return
	}
	for _, wr := range writes {
		tableApply(w.table, wr.source, wr.update)
	}
	w.mu.Lock()
	released := w.topics[name] == nil
	w.mu.Unlock()
	if released {
		// Released (in-use mode) after settle: the release's withdrawal may have run before these writes. Take
		// back the routes just written, so none outlives the release. A topic followed again since is left alone:
		// the interest loop withdrew it before following it again, and its new query, queued already, brings the
		// route up to date (taking it back would flap a route a stream just asked for).
		for _, wr := range writes {
			if wr.update.Route != nil {
				tableApply(w.table, wr.source, routing.Update{Topic: name})
			}
		}
	}
}

// tableApply writes to the table; tests wrap it.
var tableApply = (*routing.Table).Apply

// write is one table write a query settled on.
type write struct {
	source string
	update routing.Update
}

// settle records a topic's answers in its state and returns the table writes they call for. It holds w.mu and
// writes nothing.
func (w *Watcher) settle(name string, answers []answer) []write {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.topics[name]
	if st == nil {
		return nil // released (in-use mode) while the query was in flight
	}
	var writes []write
	now := time.Now()
	present := false
	for i, a := range answers {
		ns := w.ns[i]
		switch {
		case a.err == nil:
			present = true
			st.absentSince[i] = 0
			h := maphash.Bytes(w.seed, a.body) | 1
			if h == st.bodies[i] {
				w.stats.unchanged.Add(1)
				continue
			}
			route, err := w.routes.decode(h, a.body)
			if err != nil {
				ns.record(requestRoute, err, 0)
				w.stats.errors.Add(1)
				w.opts.Logger.Warn("undecodable route; keeping the last good one", "nameserver", ns.addr, "topic", name, "err", err)
				continue
			}
			writes = append(writes, write{ns.source, routing.Update{Topic: name, Route: route}})
			st.bodies[i] = h
		case errors.Is(a.err, client.ErrTopicNotExist):
			if !ns.hasBrokers.Load() {
				// A NameServer with an empty broker table has just restarted (it keeps routes in memory only)
				// and says 17 for every topic until brokers register again: its 17s mean nothing yet.
				continue
			}
			if st.absentSince[i] == 0 {
				st.absentSince[i] = now.UnixNano()
			}
			if st.bodies[i] != 0 && now.Sub(time.Unix(0, st.absentSince[i])) >= w.opts.RemoveAfter {
				// Withdrawn from this NameServer's source only: the others' views stand.
				writes = append(writes, write{ns.source, routing.Update{Topic: name}})
				st.bodies[i] = 0
				w.stats.removed.Add(1)
			}
		default:
			present = present || st.bodies[i] != 0 // a failed poll keeps this NameServer's last good route
		}
	}
	if !present && w.opts.Mode == ModeAllTopics && st.listedBy == 0 && !slices.ContainsFunc(st.bodies, func(h uint64) bool { return h != 0 }) {
		delete(w.topics, name) // gone from every list and every source: stop polling it
	}
	return writes
}

func (w *Watcher) ask(ctx context.Context, ns *nameServer, topic string) answer {
	start := time.Now()
	body, err := ns.client.GetRouteInfoRaw(ctx, topic)
	if err != nil && !errors.Is(err, client.ErrTopicNotExist) {
		ns.record(requestRoute, err, time.Since(start))
		w.stats.errors.Add(1)
		return answer{err: err}
	}
	ns.record(requestRoute, nil, time.Since(start))
	return answer{body: body, err: err}
}

// RouteOf converts a NameServer route into the model's: one member per queue data with its group's addresses;
// queue data of a group the answer has no broker for is left out.
func RouteOf(d *remoting.TopicRouteData) *routing.Route {
	r := &routing.Route{OrderTopicConf: d.OrderTopicConf, Members: make([]routing.Member, 0, len(d.QueueDatas))}
	for _, q := range d.QueueDatas {
		m := routing.Member{
			BrokerName:     q.BrokerName,
			ReadQueueNums:  q.ReadQueueNums,
			WriteQueueNums: q.WriteQueueNums,
			Perm:           q.Perm,
			TopicSysFlag:   q.TopicSysFlag,
		}
		i := slices.IndexFunc(d.BrokerDatas, func(b remoting.BrokerData) bool { return b.BrokerName == q.BrokerName })
		if i < 0 || len(d.BrokerDatas[i].BrokerAddrs) == 0 {
			continue // a group with no registered broker cannot be routed to
		}
		broker := BrokerOf(d.BrokerDatas[i])
		m.Cluster, m.Zone, m.Addrs = broker.Cluster, broker.Zone, broker.Addrs
		r.Members = append(r.Members, m)
	}
	return r
}

// BrokerOf converts a NameServer broker group into the model's.
func BrokerOf(b remoting.BrokerData) routing.Broker {
	out := routing.Broker{Cluster: b.Cluster, Name: b.BrokerName, Zone: b.ZoneName}
	for id, addr := range b.BrokerAddrs {
		out.Addrs = append(out.Addrs, routing.BrokerAddr{ID: id, Addr: addr})
	}
	slices.SortFunc(out.Addrs, func(a, b routing.BrokerAddr) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// routeCache maps route bodies to decoded routes. A 105 body names no topic, so every topic of one shape gets the
// same bytes: a cold sync of a million topics over a few shapes decodes a few bodies, not a million.
type routeCache struct {
	mu      sync.Mutex
	entries map[uint64]cachedRoute
}

type cachedRoute struct {
	body  []byte
	route *routing.Route
}

// routeCacheSize bounds the cache; past it the cache starts over, which costs decodes, never correctness.
const routeCacheSize = 4096

func (c *routeCache) decode(hash uint64, body []byte) (*routing.Route, error) {
	c.mu.Lock()
	if e, ok := c.entries[hash]; ok && bytes.Equal(e.body, body) {
		c.mu.Unlock()
		return e.route, nil
	}
	c.mu.Unlock()
	data, err := remoting.DecodeTopicRouteData(body)
	if err != nil {
		return nil, err
	}
	route := RouteOf(data)
	c.mu.Lock()
	if c.entries == nil || len(c.entries) >= routeCacheSize {
		c.entries = make(map[uint64]cachedRoute)
	}
	c.entries[hash] = cachedRoute{body: bytes.Clone(body), route: route}
	c.mu.Unlock()
	return route, nil
}
