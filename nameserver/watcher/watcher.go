// Package watcher keeps the routing model in step with one or more RocketMQ NameServers by polling them, as
// RocketMQ clients do, over the read-only client.
//
// Every interval it asks each NameServer for its broker table (106) and, in "all topics" mode, its topic list (206,
// falling back to 224 per cluster or a configured list when 206 is disabled); topic routes (105) are polled one by
// one, spread evenly over the interval, with bounded concurrency and a request-rate limit. Topics that appear, and
// topics whose brokers changed, are queried at once. In "topics in use" mode it polls only the topics the model's
// consumers asked for (routing.Interest), so NameServer load follows the topics used, not the topics that exist.
//
// Each NameServer is its own source in the routing table, which merges their views. The watcher keeps the last good
// routes through errors and outages: a topic is removed only when every NameServer that answered says
// TOPIC_NOT_EXIST, never because a poll failed.
package watcher

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
)

// Mode says which topics the watcher discovers.
type Mode string

const (
	// ModeAllTopics follows every topic the NameServers list.
	ModeAllTopics Mode = "all"
	// ModeInUse follows only the topics in the routing table's Interest.
	ModeInUse Mode = "in-use"
)

// Options configure a Watcher. Zero values take the defaults in parentheses.
type Options struct {
	// Source names this watcher in the routing table; each NameServer becomes source "<Source>@<addr>".
	Source string
	// Addrs are the NameServers' host:port addresses (at most 64).
	Addrs []string
	// Interval between polls of each topic and of the topic lists (30s, as RocketMQ clients).
	Interval time.Duration
	// BrokerInterval between polls of the broker table (Interval). A shorter one notices expired or moved
	// brokers sooner: their topics are re-queried as soon as it is seen.
	BrokerInterval time.Duration
	Mode           Mode // (ModeAllTopics)
	// Concurrency bounds the topic queries in flight (16).
	Concurrency int
	// RateLimit bounds topic queries per second, each asking every NameServer once (5000).
	RateLimit float64
	// Topics is the topic list used when a NameServer answers both 206 and 224 with "disable".
	Topics []string
	// RemoveAfter is how long a NameServer must keep answering 17 TOPIC_NOT_EXIST before the topic is withdrawn
	// from its view (30s: a NameServer that restarted answers 17 until brokers re-register, every 30 s).
	RemoveAfter time.Duration
	// ListTimeout bounds the topic-list requests (206, 224), which take long at scale (30s).
	ListTimeout time.Duration
	Client      client.Options
	Logger      *slog.Logger
	// Metrics records the requests to NameServers; a private, unregistered one when nil.
	Metrics *Metrics
}

func (o *Options) defaults() error {
	if len(o.Addrs) == 0 {
		return errors.New("no NameServer address")
	}
	if len(o.Addrs) > 64 {
		return fmt.Errorf("%d NameServer addresses, at most 64", len(o.Addrs))
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.Source == "" {
		o.Source = "namesrv"
	}
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.BrokerInterval <= 0 || o.BrokerInterval > o.Interval {
		o.BrokerInterval = o.Interval
	}
	switch o.Mode {
	case "":
		o.Mode = ModeAllTopics
	case ModeAllTopics, ModeInUse:
	default:
		return fmt.Errorf("unknown discovery mode %q (want %q or %q)", o.Mode, ModeAllTopics, ModeInUse)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.RemoveAfter <= 0 {
		o.RemoveAfter = 30 * time.Second
	}
	if o.ListTimeout <= 0 {
		o.ListTimeout = 30 * time.Second
	}
	if o.RateLimit <= 0 {
		o.RateLimit = 5000
	}
	for _, name := range o.Topics {
		if err := routing.ValidTopic(name); err != nil {
			return fmt.Errorf("configured topic list: %w", err)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// nameServer is one polled NameServer and what it last said.
type nameServer struct {
	addr    string
	source  string
	watcher string   // the watcher's Source, the metrics' source label
	metrics *Metrics // shared by the process's watchers
	client  *client.Client
	brokers map[string]remoting.BrokerData // last good 106 broker table (discovery goroutine only)
	invalid uint64                         // hash of the set of invalid names of the last topic list (discovery goroutine only)
	// hasBrokers: the last 106 answer listed brokers. A NameServer that lists none has just restarted.
	hasBrokers atomic.Bool

	mu     sync.Mutex
	status AddrStatus
}

// topicState is what the watcher remembers of a topic between polls.
type topicState struct {
	listedBy     uint64   // bit i: NameServer i's last topic list named the topic (all-topics mode)
	prevListedBy uint64   // listedBy before the latest merge of lists
	bodies       []uint64 // per NameServer, hash of the last route body applied; 0 = none
	absentSince  []int64  // per NameServer, unix nanos of the first 17 in a row; 0 = none
}

func newTopicState(nameServers int) *topicState {
	return &topicState{bodies: make([]uint64, nameServers), absentSince: make([]int64, nameServers)}
}

// Watcher polls NameServers into a routing table. Run it once.
type Watcher struct {
	opts    Options
	table   *routing.Table
	ns      []*nameServer
	seed    maphash.Seed
	limiter *rate.Limiter
	sem     chan struct{}
	routes  routeCache

	mu       sync.Mutex
	topics   map[string]*topicState
	urgent   urgentQueue     // topics to query before the paced cycle goes on
	inflight map[string]bool // topics being queried → queried again when done
	wake     chan struct{}

	synced     chan struct{}
	syncedOnce sync.Once
	stats      counters
}

// New returns a watcher writing into table.
func New(table *routing.Table, opts Options) (*Watcher, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	w := &Watcher{
		opts:     opts,
		table:    table,
		seed:     maphash.MakeSeed(),
		limiter:  rate.NewLimiter(rate.Limit(opts.RateLimit), opts.Concurrency),
		sem:      make(chan struct{}, opts.Concurrency),
		topics:   make(map[string]*topicState),
		inflight: make(map[string]bool),
		wake:     make(chan struct{}, 1),
		synced:   make(chan struct{}),
	}
	for _, addr := range opts.Addrs {
		copts := opts.Client
		if copts.Logger == nil {
			copts.Logger = opts.Logger
		}
		w.ns = append(w.ns, &nameServer{
			addr:    addr,
			source:  opts.Source + "@" + addr,
			watcher: opts.Source,
			client:  client.New(addr, copts),
			status:  AddrStatus{Addr: addr},
			metrics: opts.Metrics,
		})
	}
	return w, nil
}

// Synced is closed once the first discovery has run and every topic it found has been queried once.
func (w *Watcher) Synced() <-chan struct{} { return w.synced }

// Run polls until ctx ends. It returns ctx's error. The routes it learned stay in the table.
func (w *Watcher) Run(ctx context.Context) error {
	defer func() {
		for _, ns := range w.ns {
			ns.client.Close()
		}
		w.opts.Metrics.forget(w.opts.Source)
	}()
	var wg sync.WaitGroup
	wg.Go(func() { w.discoverLoop(ctx) })
	if w.opts.Mode == ModeInUse {
		wg.Go(func() { w.interestLoop(ctx) })
	}
	w.pollLoop(ctx)
	wg.Wait()
	return ctx.Err()
}

func (w *Watcher) discoverLoop(ctx context.Context) {
	t := time.NewTicker(w.opts.BrokerInterval)
	defer t.Stop()
	var listed time.Time
	for {
		// Topic lists follow Interval; the broker table is polled every BrokerInterval.
		withLists := w.opts.Mode == ModeAllTopics && time.Since(listed) >= w.opts.Interval-w.opts.BrokerInterval/2
		if withLists {
			listed = time.Now()
		}
		w.discover(ctx, withLists)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// interestLoop follows routing.Interest in in-use mode: new topics are queried at once, released ones forgotten.
// It reads through a reader of its own, so every in-use watcher on the table learns every topic in use; the
// reader's first Drain holds every topic in use when the watcher started (one that replaces another starts from
// the whole set, not from what changed since its predecessor's last read).
func (w *Watcher) interestLoop(ctx context.Context) {
	in := w.table.Interest().Follow()
	defer in.Close()
	for {
		added, removed := in.Drain()
		added = w.validInterest(added)
		w.mu.Lock()
		for _, name := range added {
			if w.topics[name] == nil {
				w.topics[name] = newTopicState(len(w.ns))
			}
			w.urgent.push(name)
		}
		for _, name := range removed {
			delete(w.topics, name)
			w.urgent.remove(name)
		}
		w.mu.Unlock()
		if len(removed) > 0 {
			for _, ns := range w.ns {
				w.table.Withdraw(ns.source, removed)
			}
		}
		if len(added) > 0 {
			w.kick()
		}
		select {
		case <-ctx.Done():
			return
		case <-in.Changed():
		}
	}
}

// validInterest drops the topics in use whose names RocketMQ would not accept: consumers may ask for any name
// (an xDS subscription names any resource), and an invalid one is neither sent to a NameServer nor followed.
func (w *Watcher) validInterest(names []string) []string {
	var out []string
	for i, name := range names {
		err := routing.ValidTopic(name)
		if err == nil {
			if out != nil {
				out = append(out, name)
			}
			continue
		}
		if out == nil {
			out = append(make([]string, 0, len(names)), names[:i]...)
		}
		w.stats.invalid.Add(1)
		w.opts.Logger.Warn("topic asked for in use is not a valid RocketMQ name; not following it", "err", err)
	}
	if out == nil {
		return names
	}
	return out
}

func (w *Watcher) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// discover polls every NameServer's broker table and, withLists, its topic list, and queues the topics that need
// a query now.
func (w *Watcher) discover(ctx context.Context, withLists bool) {
	var wg sync.WaitGroup
	touched := make([]map[string]bool, len(w.ns))
	polled := make([]bool, len(w.ns))
	lists := make([][]string, len(w.ns))
	listed := make([]bool, len(w.ns))
	for i, ns := range w.ns {
		wg.Go(func() {
			touched[i], polled[i] = w.pollBrokers(ctx, ns)
			if withLists && polled[i] {
				lctx, cancel := context.WithTimeout(ctx, w.opts.ListTimeout)
				lists[i], listed[i] = w.pollTopicList(lctx, ns)
				cancel()
			}
		})
	}
	wg.Wait()

	brokers := map[string]bool{}
	for _, t := range touched {
		for name := range t {
			brokers[name] = true
		}
	}
	var fresh int
	if withLists {
		for i, ok := range listed {
			if ok {
				lists[i] = w.dropInvalid(w.ns[i], lists[i])
			}
		}
		fresh = w.mergeLists(lists, listed)
	}
	if len(brokers) > 0 {
		w.requeueUsing(brokers)
	}
	if fresh > 0 || len(brokers) > 0 {
		w.kick()
	}
	w.stats.lastDiscovery.Store(time.Now().UnixNano())
	// A discovery counts towards the first sync only if some NameServer answered with its broker table (and, when
	// lists were due, its topic list): an unreachable NameServer must not make an empty model look synced.
	if slices.Contains(polled, true) && (!withLists || slices.Contains(listed, true)) {
		w.stats.discoveries.Add(1)
	}
}

// pollBrokers fetches one NameServer's broker table and returns the broker groups that changed or vanished; ok
// is false when the NameServer could not be asked.
func (w *Watcher) pollBrokers(ctx context.Context, ns *nameServer) (touched map[string]bool, ok bool) {
	start := time.Now()
	info, err := ns.client.GetBrokerClusterInfo(ctx)
	ns.record(requestBrokers, err, time.Since(start))
	if err != nil {
		if ns.brokers == nil { // it never answered: there are no routes of its to keep
			w.opts.Logger.Warn("broker table poll failed; no routes from this NameServer yet", "nameserver", ns.addr, "err", err)
		} else {
			w.opts.Logger.Warn("broker table poll failed; keeping the last good routes", "nameserver", ns.addr, "err", err)
		}
		return nil, false
	}
	ns.hasBrokers.Store(len(info.BrokerAddrTable) > 0)
	var brokers []routing.Broker
	for _, b := range info.BrokerAddrTable {
		brokers = append(brokers, BrokerOf(b))
	}
	w.table.SetBrokers(ns.source, brokers)
	if ns.brokers != nil {
		touched = map[string]bool{}
		for name, old := range ns.brokers {
			if cur, ok := info.BrokerAddrTable[name]; !ok || !sameBroker(old, cur) {
				touched[name] = true
			}
		}
	}
	ns.brokers = info.BrokerAddrTable
	if ns.brokers == nil {
		ns.brokers = map[string]remoting.BrokerData{} // it answered: what it said is the last good table
	}
	ns.mu.Lock()
	ns.status.Brokers = len(info.BrokerAddrTable)
	ns.mu.Unlock()
	return touched, true
}

func sameBroker(a, b remoting.BrokerData) bool {
	if a.Cluster != b.Cluster || a.ZoneName != b.ZoneName || len(a.BrokerAddrs) != len(b.BrokerAddrs) {
		return false
	}
	for id, addr := range a.BrokerAddrs {
		if b.BrokerAddrs[id] != addr {
			return false
		}
	}
	return true
}

// pollTopicList returns the NameServer's topic list: 206, else 224 for each cluster, else the configured list.
// ok is false when the NameServer could not be asked; the previous list then stands.
func (w *Watcher) pollTopicList(ctx context.Context, ns *nameServer) (topics []string, ok bool) {
	start := time.Now()
	topics, err := ns.client.GetAllTopicList(ctx)
	if !errors.Is(err, client.ErrDisabled) {
		ns.metrics.observe(ns.watcher, ns.addr, requestTopics, err, time.Since(start))
	}
	if err == nil {
		return topics, true
	}
	if !errors.Is(err, client.ErrDisabled) {
		w.opts.Logger.Warn("topic list poll failed; keeping the last good list", "nameserver", ns.addr, "err", err)
		return nil, false
	}
	clusters := map[string]bool{}
	for _, b := range ns.brokers {
		clusters[b.Cluster] = true
	}
	seen := map[string]bool{}
	for cluster := range clusters {
		start := time.Now()
		list, err := ns.client.GetTopicsByCluster(ctx, cluster)
		if !errors.Is(err, client.ErrDisabled) {
			ns.metrics.observe(ns.watcher, ns.addr, requestTopics, err, time.Since(start))
		}
		if errors.Is(err, client.ErrDisabled) {
			if len(w.opts.Topics) == 0 {
				w.opts.Logger.Warn("nameserver lists no topics (206 and 224 disabled) and no topic list is configured", "nameserver", ns.addr)
			}
			return w.opts.Topics, true
		}
		if err != nil {
			w.opts.Logger.Warn("topics-by-cluster poll failed; keeping the last good list", "nameserver", ns.addr, "cluster", cluster, "err", err)
			return nil, false
		}
		for _, t := range list {
			if !seen[t] {
				seen[t] = true
				topics = append(topics, t)
			}
		}
	}
	if len(clusters) == 0 {
		// No broker table to ask 224 with (a NameServer that just restarted): only a configured list can answer.
		return w.opts.Topics, len(w.opts.Topics) > 0
	}
	return topics, true
}

// dropInvalid returns a NameServer's topic list without the names RocketMQ would not accept, so that they are never
// followed, queried or applied, and one bad name fails nothing else. They are counted (status, metrics) at every
// list, and logged when the set of them changes rather than at every poll.
func (w *Watcher) dropInvalid(ns *nameServer, list []string) []string {
	var (
		kept     []string // nil while every name is valid: the list is returned as it is
		invalid  int
		set      uint64 // sum of the invalid names' hashes: the same set gives the same sum in any order
		examples []string
	)
	for i, name := range list {
		err := routing.ValidTopic(name)
		if err == nil {
			if kept != nil {
				kept = append(kept, name)
			}
			continue
		}
		if kept == nil {
			kept = append(make([]string, 0, len(list)), list[:i]...)
		}
		invalid++
		set += maphash.String(w.seed, name)
		if len(examples) < 5 {
			examples = append(examples, err.Error())
		}
	}
	ns.mu.Lock()
	ns.status.InvalidTopics = invalid
	ns.mu.Unlock()
	if invalid == 0 {
		ns.invalid = 0
		return list
	}
	w.stats.invalid.Add(int64(invalid))
	ns.metrics.invalidNames(ns.watcher, ns.addr, invalid)
	if set |= 1; set != ns.invalid {
		ns.invalid = set
		w.opts.Logger.Warn("nameserver lists topics that are not valid RocketMQ names; skipping them", "nameserver", ns.addr,
			"invalid", invalid, "examples", examples)
	}
	return kept
}

// mergeLists applies the topic lists of the NameServers that answered, queues new topics and topics no list
// names any more (their 105 answers decide their fate), and returns how many it queued.
func (w *Watcher) mergeLists(lists [][]string, listed []bool) int {
	var answered uint64
	for i, ok := range listed {
		if ok {
			answered |= 1 << i
		}
	}
	if answered == 0 {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, st := range w.topics {
		st.prevListedBy = st.listedBy
		st.listedBy &^= answered
	}
	queued := 0
	for i, ok := range listed {
		if !ok {
			continue
		}
		for _, name := range lists[i] {
			st := w.topics[name]
			if st == nil {
				st = newTopicState(len(w.ns))
				w.topics[name] = st
				w.urgent.push(name)
				queued++
			}
			st.listedBy |= 1 << i
		}
	}
	for name, st := range w.topics {
		if st.listedBy == 0 && st.prevListedBy != 0 {
			w.urgent.push(name) // vanished from every list: ask whether it still exists
			queued++
		}
	}
	return queued
}

// urgentQueue is a FIFO of distinct topic names. Callers hold Watcher.mu.
type urgentQueue struct {
	order []string
	head  int
	set   map[string]struct{}
}

func (q *urgentQueue) push(name string) {
	if _, ok := q.set[name]; ok {
		return
	}
	if q.set == nil {
		q.set = make(map[string]struct{})
	}
	q.set[name] = struct{}{}
	q.order = append(q.order, name)
}

func (q *urgentQueue) remove(name string) { delete(q.set, name) }

// pop returns the oldest queued name still wanted, or false.
func (q *urgentQueue) pop() (string, bool) {
	for q.head < len(q.order) {
		name := q.order[q.head]
		q.order[q.head] = ""
		q.head++
		if _, ok := q.set[name]; ok {
			delete(q.set, name)
			return name, true
		}
	}
	// Drained: a large queue's slice and map go with it (a Go map never shrinks, and a cold sync queues every
	// topic at once: 1M topics kept about 60 MB after their first answers).
	if cap(q.order) > 4096 {
		q.order, q.set = nil, nil
	}
	q.order, q.head = q.order[:0], 0
	return "", false
}
