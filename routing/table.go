package routing

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
)

// Update is one source's news about one topic.
type Update struct {
	Topic string
	// Route is the topic's route as the source sees it; nil means the source no longer has the topic.
	Route *Route
}

// Table is the versioned, merged model. It is safe for concurrent use; writers are serialized.
type Table struct {
	mu       sync.RWMutex
	version  uint64
	topics   map[string]*topicEntry
	names    nameIndex // the keys of topics, sorted
	sets     map[string]*setEntry
	brokers  map[string][]Broker // by source
	merged   []Broker            // union of brokers, sorted by name
	subs     map[*Subscription]struct{}
	scratch  []byte
	interest *Interest

	policies []*Policy // in precedence order
	// overridden holds the other policies that match a topic, overridden by its policy, for the few topics that
	// several policies match (beside the entries, not in them: see topicEntry).
	overridden  map[*topicEntry][]*Policy
	policyStats map[string]*policyCount
	policyMu    sync.Mutex // serializes SetPolicies, which takes mu in chunks
	// statusChanged collects, while SetPolicies runs, the policies whose PolicyStatus counts changed (noteStatus).
	statusChanged map[string]struct{}
	bindings      []Binding
	proxies       *Proxies
}

// sourceRoute is what one source says of a topic: an interned BrokerSet, so each costs a pointer.
type sourceRoute struct {
	source    string
	set       *BrokerSet
	orderConf string
}

// topicEntry is 48 bytes, a size class of Go's allocator: a field more costs 16 bytes per topic (160 MB at ten
// million topics). The policies a topic's policy overrides, which few topics have, are kept beside it
// (Table.overridden) for that reason.
type topicEntry struct {
	sources []sourceRoute // sorted by source name
	topic   *Topic        // the merged topic
	policy  *Policy       // the policy the topic follows, or nil
	slot    int           // the topic's place in its served broker set's topics
}

type setEntry struct {
	set  *BrokerSet
	refs int // references from source routes and merged topics
	// topics are the merged topics served with the set, in no order (each entry's slot is its place), so that
	// TopicsUsingGroups costs the topics it finds rather than a pass over the table. A topic is added at the end
	// and taken out by moving the last one into its place: constant time, and a pointer per topic plus the
	// slice's spare capacity (about 10 bytes per topic), the cheapest such index (a map costs 30–38).
	topics []*topicEntry
}

// served reports whether the set is in the served model: some merged topic uses it.
func (e *setEntry) served() bool { return len(e.topics) > 0 }

// dropTopic takes a topic out of the set's topics: the last one takes its place. A slice down to a quarter of its
// capacity is copied to a smaller one, so the index holds at most four times what it lists.
func (e *setEntry) dropTopic(te *topicEntry) {
	last := len(e.topics) - 1
	moved := e.topics[last]
	e.topics[te.slot], moved.slot = moved, te.slot
	e.topics[last] = nil
	e.topics = e.topics[:last]
	if cap(e.topics) > 1024 && len(e.topics) < cap(e.topics)/4 {
		e.topics = slices.Clone(e.topics)
	}
}

// NewTable returns an empty table at version 0.
func NewTable() *Table {
	return &Table{
		topics:   make(map[string]*topicEntry),
		sets:     make(map[string]*setEntry),
		brokers:  make(map[string][]Broker),
		subs:     make(map[*Subscription]struct{}),
		interest: newInterest(),

		overridden:  make(map[*topicEntry][]*Policy),
		policyStats: make(map[string]*policyCount),
		proxies:     newProxies(),
	}
}

// Interest is the set of topics consumers of the model use; sources that discover topics on demand follow it.
func (t *Table) Interest() *Interest { return t.interest }

// Version returns the current version. It grows by one with every Apply or SetBrokers that changed the model.
func (t *Table) Version() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.version
}

// Topic returns the merged topic, or nil.
func (t *Table) Topic(name string) *Topic {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if e := t.topics[name]; e != nil {
		return e.topic
	}
	return nil
}

// Topics returns the merged topics of names, in their order (nil for an unknown name), under one hold of the read
// lock: a caller that needs many, holding a lock of its own, waits for a pending writer once rather than once a
// topic.
func (t *Table) Topics(names []string) []*Topic {
	out := make([]*Topic, len(names))
	t.mu.RLock()
	defer t.mu.RUnlock()
	for i, name := range names {
		if e := t.topics[name]; e != nil {
			out[i] = e.topic
		}
	}
	return out
}

// BrokerSet returns a served broker set by hash, or nil when no topic uses it.
func (t *Table) BrokerSet(hash string) *BrokerSet {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if e := t.sets[hash]; e != nil && e.served() {
		return e.set
	}
	return nil
}

// Stats returns the number of topics and of served broker sets.
func (t *Table) Stats() (topics, brokerSets int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, e := range t.sets {
		if e.served() {
			brokerSets++
		}
	}
	return len(t.topics), brokerSets
}

// Brokers returns the merged broker groups, sorted by name.
func (t *Table) Brokers() []Broker {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Clone(t.merged)
}

// SourceBrokers returns the broker groups each source reported (SetBrokers), by source.
func (t *Table) SourceBrokers() map[string][]Broker {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[string][]Broker, len(t.brokers))
	for s, b := range t.brokers {
		out[s] = slices.Clone(b)
	}
	return out
}

// SourceTopic returns the route a given source reported for a topic, or nil.
func (t *Table) SourceTopic(source, name string) *BrokerSet {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if e := t.topics[name]; e != nil {
		if i, ok := e.find(source); ok {
			return e.sources[i].set
		}
	}
	return nil
}

func (e *topicEntry) find(source string) (int, bool) {
	return slices.BinarySearchFunc(e.sources, source, func(r sourceRoute, s string) int { return strings.Compare(r.source, s) })
}

// applyState collects the effects of one write.
type applyState struct {
	version uint64
	topics  []string
	sets    []string // served sets added or removed
	touched []*setEntry
	brokers bool
	scopes  bool
}

// Apply records a source's updates and returns the resulting version. Updates that change nothing (the same
// route reported again) cost a lookup and a hash and do not move the version.
func (t *Table) Apply(source string, updates ...Update) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := &applyState{version: t.version + 1}
	for _, u := range updates {
		t.applyOne(st, source, u)
	}
	t.commit(st)
	return t.version
}

func (t *Table) applyOne(st *applyState, source string, u Update) {
	e := t.topics[u.Topic]
	if u.Route == nil {
		if e == nil {
			return
		}
		i, ok := e.find(source)
		if !ok {
			return
		}
		t.unref(st, e.sources[i].set, nil)
		e.sources = slices.Delete(e.sources, i, i+1)
	} else {
		set := t.intern(st, canonicalMembers(u.Route.Members))
		if e == nil {
			e = &topicEntry{sources: make([]sourceRoute, 0, 1)}
			t.topics[u.Topic] = e
			t.names.insert(u.Topic)
		}
		i, ok := e.find(source)
		switch {
		case ok && e.sources[i].set == set && e.sources[i].orderConf == u.Route.OrderTopicConf:
			return
		case ok:
			t.ref(st, set, nil)
			t.unref(st, e.sources[i].set, nil)
			e.sources[i] = sourceRoute{source: source, set: set, orderConf: u.Route.OrderTopicConf}
		default:
			t.ref(st, set, nil)
			e.sources = slices.Insert(e.sources, i, sourceRoute{source: source, set: set, orderConf: u.Route.OrderTopicConf})
		}
	}
	t.remerge(st, u.Topic, e)
}

// remerge recomputes a topic's merged route from its sources and records a change when it differs.
func (t *Table) remerge(st *applyState, name string, e *topicEntry) {
	old := e.topic
	if len(e.sources) == 0 {
		t.countPolicies(e, -1)
		t.setMatch(e, nil, nil)
		delete(t.topics, name)
		t.names.delete(name)
		if old != nil {
			t.unref(st, old.BrokerSet, e)
			st.topics = append(st.topics, name)
		}
		return
	}
	set, orderConf := e.sources[0].set, e.sources[0].orderConf
	if len(e.sources) > 1 {
		// Union by broker group; the first source (by name) wins a group both report.
		var members []Member
		for _, r := range e.sources {
			for _, m := range r.set.Members {
				if !slices.ContainsFunc(members, func(x Member) bool { return x.BrokerName == m.BrokerName }) {
					members = append(members, m)
				}
			}
			if orderConf == "" {
				orderConf = r.orderConf
			}
		}
		set = t.intern(st, canonicalMembers(members))
	}
	if won, also := t.policyFor(name); won != e.policy || !slices.Equal(also, t.overridden[e]) {
		t.countPolicies(e, -1)
		t.setMatch(e, won, also)
		t.countPolicies(e, 1)
	}
	if e.policy != nil {
		var prev []Member
		if old != nil {
			prev = old.BrokerSet.Members
		}
		set = t.intern(st, canonicalMembers(e.policy.apply(set.Members, prev)))
	}
	var pop *PopPolicy
	if e.policy != nil {
		pop = e.policy.Pop
	}
	if old != nil && old.BrokerSet == set && old.OrderTopicConf == orderConf && old.Pop.Equal(pop) {
		return
	}
	if old == nil || old.BrokerSet != set {
		if old != nil {
			t.unref(st, old.BrokerSet, e)
		}
		t.ref(st, set, e)
	}
	e.topic = &Topic{Name: name, BrokerSet: set, OrderTopicConf: orderConf, Pop: pop, Version: st.version}
	st.topics = append(st.topics, name)
}

// intern returns the table's BrokerSet for canonical members, creating it unreferenced when new.
func (t *Table) intern(st *applyState, members []Member) *BrokerSet {
	var hash string
	hash, t.scratch = hashMembers(members, t.scratch)
	for probe := hash; ; probe += "x" {
		e := t.sets[probe]
		if e == nil {
			e = &setEntry{set: &BrokerSet{Hash: probe, Members: members}}
			t.sets[probe] = e
			st.touched = append(st.touched, e)
			return e.set
		}
		if equalMembers(e.set.Members, members) {
			return e.set
		}
		// A 64-bit hash collision between different shapes: keep both, the second under a suffixed hash.
	}
}

// ref counts a reference to an interned set: a source route's (served nil) or a merged topic's, served with it.
func (t *Table) ref(st *applyState, set *BrokerSet, served *topicEntry) {
	e := t.sets[set.Hash]
	e.refs++
	if served != nil {
		served.slot = len(e.topics)
		if e.topics = append(e.topics, served); len(e.topics) == 1 {
			st.sets = append(st.sets, set.Hash)
		}
	}
}

// unref takes back what ref counted.
func (t *Table) unref(st *applyState, set *BrokerSet, served *topicEntry) {
	e := t.sets[set.Hash]
	e.refs--
	if served != nil {
		if e.dropTopic(served); len(e.topics) == 0 {
			st.sets = append(st.sets, set.Hash)
		}
	}
	st.touched = append(st.touched, e)
}

// commit drops unreferenced sets, moves the version and tells subscribers, all under the write lock.
func (t *Table) commit(st *applyState) {
	for _, e := range st.touched {
		if e.refs == 0 && t.sets[e.set.Hash] == e {
			delete(t.sets, e.set.Hash)
		}
	}
	if len(st.topics) == 0 && len(st.sets) == 0 && !st.brokers && !st.scopes {
		return
	}
	t.version = st.version
	for s := range t.subs {
		s.add(st)
	}
}

// SetBrokers replaces the broker groups a source reports (its 106 cluster table).
func (t *Table) SetBrokers(source string, brokers []Broker) uint64 {
	canon := canonicalGroups(brokers, func(b *Broker) (string, *[]BrokerAddr) { return b.Name, &b.Addrs })
	t.mu.Lock()
	defer t.mu.Unlock()
	sameBroker := func(a, b Broker) bool {
		return a.Cluster == b.Cluster && a.Name == b.Name && a.Zone == b.Zone && slices.Equal(a.Addrs, b.Addrs)
	}
	// A source's own table counts as a change even when the merged one stays: the replicas that follow this one
	// (package peer) hold every source's.
	sourceChanged := !slices.EqualFunc(t.brokers[source], canon, sameBroker)
	if len(canon) == 0 {
		delete(t.brokers, source)
	} else {
		t.brokers[source] = canon
	}
	var merged []Broker
	sources := make([]string, 0, len(t.brokers))
	for s := range t.brokers {
		sources = append(sources, s)
	}
	slices.Sort(sources)
	for _, s := range sources {
		for _, b := range t.brokers[s] {
			if !slices.ContainsFunc(merged, func(x Broker) bool { return x.Name == b.Name }) {
				merged = append(merged, b)
			}
		}
	}
	slices.SortFunc(merged, func(a, b Broker) int { return strings.Compare(a.Name, b.Name) })
	st := &applyState{version: t.version + 1, brokers: sourceChanged}
	if !slices.EqualFunc(merged, t.merged, sameBroker) {
		t.merged = merged
		st.brokers = true
	}
	t.commit(st)
	return t.version
}

// RemoveSource withdraws everything a source reported: sources come and go rarely. It finds the source's topics
// as SourceTopics does and withdraws them as Withdraw does.
func (t *Table) RemoveSource(source string) uint64 {
	t.Withdraw(source, t.SourceTopics(source))
	return t.SetBrokers(source, nil)
}

// Withdraw records that a source no longer has the named topics, passChunk at a time, so that readers wait for
// one chunk at most however many there are (a NameServer's topic list can shrink by a million); each chunk is a
// version of its own. It returns the resulting version.
func (t *Table) Withdraw(source string, names []string) uint64 {
	v := t.Version()
	for i := 0; i < len(names); i += passChunk {
		chunk := names[i:min(i+passChunk, len(names))]
		updates := make([]Update, len(chunk))
		for j, name := range chunk {
			updates[j] = Update{Topic: name}
		}
		v = t.Apply(source, updates...)
	}
	return v
}

// Snapshot is a consistent copy of the served model at one version.
type Snapshot struct {
	Version    uint64
	Topics     map[string]*Topic
	BrokerSets map[string]*BrokerSet
	Brokers    []Broker
}

// Snapshot copies the model. It costs O(topics); use Topic and BrokerSet for point reads.
func (t *Table) Snapshot() *Snapshot {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.snapshotLocked()
}

func (t *Table) snapshotLocked() *Snapshot {
	s := &Snapshot{
		Version:    t.version,
		Topics:     make(map[string]*Topic, len(t.topics)),
		BrokerSets: make(map[string]*BrokerSet),
		Brokers:    slices.Clone(t.merged),
	}
	for name, e := range t.topics {
		s.Topics[name] = e.topic
	}
	for hash, e := range t.sets {
		if e.served() {
			s.BrokerSets[hash] = e.set
		}
	}
	return s
}

// ChangeSet names what changed between two versions. Consumers read the current state of each name from the
// Table: a topic or broker set that is gone was removed.
type ChangeSet struct {
	Version    uint64
	Topics     map[string]struct{}
	BrokerSets map[string]struct{}
	Brokers    bool // a source's broker table changed (the merged one, Table.Brokers, may not have)
	// Scopes: the bindings changed, so proxies' scopes (Bound) may have.
	Scopes bool
}

// Empty reports whether nothing changed.
func (c *ChangeSet) Empty() bool {
	return len(c.Topics) == 0 && len(c.BrokerSets) == 0 && !c.Brokers && !c.Scopes
}

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("subscription closed")

// Subscription delivers coalesced change sets: however many writes happen between two calls of Next, the
// subscriber receives one change set naming each changed topic once. A slow subscriber costs memory proportional
// to the distinct names changed, never a queue of updates.
type Subscription struct {
	table   *Table
	mu      sync.Mutex
	pending ChangeSet
	notify  chan struct{}
	closed  bool
}

// Subscribe returns a subscription to changes after the current version.
func (t *Table) Subscribe() *Subscription {
	_, s := t.subscribe(false)
	return s
}

// Follow calls fn with each coalesced change after the current version until ctx ends (a slow fn sees the changes
// meanwhile coalesced into one). It returns ctx's error.
func (t *Table) Follow(ctx context.Context, fn func(ChangeSet)) error {
	sub := t.Subscribe()
	defer sub.Close()
	for {
		cs, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		fn(cs)
	}
}

// SubscribeWithSnapshot returns a snapshot and a subscription to every change after it, atomically.
func (t *Table) SubscribeWithSnapshot() (*Snapshot, *Subscription) {
	return t.subscribe(true)
}

func (t *Table) subscribe(withSnapshot bool) (*Snapshot, *Subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &Subscription{table: t, notify: make(chan struct{}, 1)}
	s.pending.Version = t.version
	t.subs[s] = struct{}{}
	if withSnapshot {
		return t.snapshotLocked(), s
	}
	return nil, s
}

func (s *Subscription) add(st *applyState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	p := &s.pending
	p.Version = st.version
	for _, name := range st.topics {
		if p.Topics == nil {
			p.Topics = make(map[string]struct{})
		}
		p.Topics[name] = struct{}{}
	}
	for _, hash := range st.sets {
		if p.BrokerSets == nil {
			p.BrokerSets = make(map[string]struct{})
		}
		p.BrokerSets[hash] = struct{}{}
	}
	p.Brokers = p.Brokers || st.brokers
	p.Scopes = p.Scopes || st.scopes
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Ready is signalled when changes are pending.
func (s *Subscription) Ready() <-chan struct{} { return s.notify }

// Next waits for changes and returns them, coalesced since the previous call.
func (s *Subscription) Next(ctx context.Context) (ChangeSet, error) {
	for {
		if cs, ok, err := s.TryNext(); ok || err != nil {
			return cs, err
		}
		select {
		case <-ctx.Done():
			return ChangeSet{}, ctx.Err()
		case <-s.notify:
		}
	}
}

// TryNext returns pending changes without waiting; ok is false when there are none.
func (s *Subscription) TryNext() (cs ChangeSet, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ChangeSet{}, false, ErrClosed
	}
	if s.pending.Empty() {
		return ChangeSet{}, false, nil
	}
	cs = s.pending
	s.pending = ChangeSet{Version: cs.Version}
	return cs, true, nil
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.table.mu.Lock()
	delete(s.table.subs, s)
	s.table.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// passChunk is how many topics a pass over the table (Range, SourceTopics, SetPolicies, RemoveSource) or over
// broker sets' topics (TopicsUsingGroups) reads or writes under one hold of the lock: a writer that arrives
// meanwhile waits for one chunk, and every reader that arrives after it (Go's RWMutex lets no new reader in while a
// writer waits) waits for that chunk and the write, never for a whole pass. The xDS cache reads the table while
// holding its own lock, so a long hold here would stall every xDS request.
const passChunk = 1000

// cursor is a pass's place in the table's topics, in name order.
type cursor struct {
	last    string // the last name visited
	started bool
	done    bool // every topic was visited
}

// walk visits the next topics in name order after c's place, at most n of them, and moves c past them. The caller
// holds the read lock; between two calls the table may change: a topic added or removed meanwhile may be visited
// or not, one present throughout is visited once.
func (t *Table) walk(c *cursor, n int, visit func(name string, e *topicEntry)) {
	p := t.names.seek("")
	if c.started {
		p = t.names.after(c.last)
	}
	for k := 0; k < n && !t.names.end(p); k, p = k+1, t.names.next(p) {
		name := t.names.at(p)
		visit(name, t.topics[name])
		c.last, c.started = name, true
	}
	c.done = t.names.end(p)
}

// Range calls fn for every topic of the merged model, in name order, until fn returns false. It reads the topics
// passChunk at a time under the read lock and calls fn without holding it, so fn may call the table (its writes
// included), and writes go on between chunks: a topic added or removed during the pass may be visited or not, one
// present throughout is visited once, as it was when its chunk was read.
func (t *Table) Range(fn func(*Topic) bool) {
	var c cursor
	buf := make([]*Topic, 0, passChunk)
	for !c.done {
		buf = buf[:0]
		t.mu.RLock()
		t.walk(&c, passChunk, func(_ string, e *topicEntry) { buf = append(buf, e.topic) })
		t.mu.RUnlock()
		for _, tp := range buf {
			if !fn(tp) {
				return
			}
		}
	}
}

// TopicNames returns the names of the topics that start with prefix, sorted, beginning after the name after ("" to
// start at the first), at most limit of them (every one when limit <= 0), and how many topics start with prefix.
// It holds the read lock for two binary searches in the sorted names, a pass over their blocks' lengths (a few
// thousand at a million topics) and the names it returns: a long list is read a page at a time, each page after
// the last name of the previous one.
func (t *Table) TopicNames(prefix, after string, limit int) (names []string, total int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	from, to := t.names.span(prefix)
	total = t.names.count(from, to)
	p := from
	if after != "" && after >= prefix {
		p = t.names.after(after)
	}
	n := total // an upper bound of what remains, to size the page
	if limit > 0 {
		n = min(n, limit)
	}
	names = make([]string, 0, n)
	for ; p.before(to) && (limit <= 0 || len(names) < limit); p = t.names.next(p) {
		names = append(names, t.names.at(p))
	}
	return names, total
}

// BrokerSets returns every served broker set.
func (t *Table) BrokerSets() []*BrokerSet {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]*BrokerSet, 0, len(t.sets))
	for _, e := range t.sets {
		if e.served() {
			out = append(out, e.set)
		}
	}
	return out
}

// TopicsUsingGroups returns the topics whose served route lists one of the broker groups, in no particular order:
// the topics to ask about again when those groups change. It finds the served broker sets that list one (a set is
// a route shape: there are few) and reads the topics each is served for from the set's index, passChunk topics
// per hold of the read lock, so its cost is the sets and the topics it returns, never the table's size. Writes go
// on between chunks: a topic that changes broker set during the call may be named or not; one served with the same
// set throughout is named at least once (a writer's removal can bring a topic named already back into reach).
func (t *Table) TopicsUsingGroups(groups []string) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var sets []*setEntry
	n := 0
	lists := func(m Member) bool { return slices.Contains(groups, m.BrokerName) }
	for _, e := range t.sets {
		if e.served() && slices.ContainsFunc(e.set.Members, lists) {
			sets = append(sets, e)
			n += len(e.topics)
		}
	}
	names := make([]string, 0, n)
	held := 0 // topics read under this hold of the lock
	for _, e := range sets {
		// Each set's topics are read from the end, down from next. A topic taken out between two holds has the
		// last one moved into its place: below next that brings in a topic read already (or added meanwhile),
		// and never moves one not yet read above next, so each topic there throughout is read, some twice.
		for next := len(e.topics); next > 0; {
			if held == passChunk {
				t.mu.RUnlock() // let a waiting writer in
				t.mu.RLock()
				held, next = 0, min(next, len(e.topics))
				continue
			}
			from := max(next-(passChunk-held), 0)
			for _, te := range e.topics[from:next] {
				names = append(names, te.topic.Name)
			}
			held += next - from
			next = from
		}
	}
	return names
}

// SourceTopics returns the topics a source reports, sorted. It visits every topic, passChunk at a time under
// the read lock: for rare housekeeping.
func (t *Table) SourceTopics(source string) []string {
	var out []string
	for c := (cursor{}); !c.done; {
		t.mu.RLock()
		t.walk(&c, passChunk, func(name string, e *topicEntry) {
			if _, ok := e.find(source); ok {
				out = append(out, name)
			}
		})
		t.mu.RUnlock()
	}
	return out
}

// SourceRoute is one source's view of a topic.
type SourceRoute struct {
	Source         string   `json:"source"`
	Members        []Member `json:"members"`
	OrderTopicConf string   `json:"orderTopicConf,omitempty"`
}

// TopicSources returns what each source reported of a topic, sorted by source name (nil when unknown).
func (t *Table) TopicSources(name string) []SourceRoute {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e := t.topics[name]
	if e == nil {
		return nil
	}
	out := make([]SourceRoute, len(e.sources))
	for i, r := range e.sources {
		out[i] = SourceRoute{Source: r.source, Members: r.set.Members, OrderTopicConf: r.orderConf}
	}
	return out
}
