package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// Options configure a Cache.
type Options struct {
	// Scope returns the topics a node is scoped to: when nil, those its metadata lists (MetadataScope) and those
	// the table's bindings bind it to (routing.Table.Bound of ProxyOf the node).
	Scope func(*corev3.Node) []string
	// Listener shapes the RocketMQ listener served to Envoy nodes.
	Listener translate.ListenerOptions
	// InlineRoutes puts a node's routes in its listener instead of serving them by ECDS.
	InlineRoutes bool
	// StatPrefix of the RocketMQ filter ("rocketmq").
	StatPrefix string
	// ClusterRetention keeps a cluster that no route names any more for this long (10m). Envoy applies a new
	// ECDS route table to new connections only; connections opened before a change keep routing to the old
	// cluster until they close, so it must outlive them.
	ClusterRetention time.Duration
	// MaxSubscriptions bounds the names one stream subscribes to, per type (100000). A request beyond it ends the
	// stream with RESOURCE_EXHAUSTED, as does a name longer than MaxNameLength.
	MaxSubscriptions int
	// NackBackoff delays the next response of a type to a stream that rejected the last one (1s): each NACK in a
	// row doubles it, up to 32 times; an ACK resets it. Changes meanwhile are coalesced into that one response,
	// so a client that rejects every version is not sent one per change.
	NackBackoff time.Duration
	// TransientObjectLifeSpan is the RocketMQ filter's transient_object_life_span in every node's config, ECDS or
	// inline (translate.DefaultTransientObjectLifeSpan, 30s, when zero): how long Envoy keeps the broker a Pop
	// (code 50) was answered by, for its Ack (51). One value for the filter, hence for all of a node's topics.
	TransientObjectLifeSpan time.Duration
	Logger                  *slog.Logger
}

// MaxNameLength is the longest resource name a stream may subscribe to.
const MaxNameLength = 1024

// MaxUnknownTypes is how many type URLs rocketpilot does not serve one stream may ask for. go-control-plane's server
// keeps a watch and a subscription per type a stream names, so a client making up type URLs would otherwise grow
// the stream's memory without bound; Envoy asks for a handful at most.
const MaxUnknownTypes = 16

// Cache serves the routing table's content as xDS resources. Create it with New, feed it with Apply (or Run), and
// hand it to go-control-plane's server both as the cache and as the callbacks.
type Cache struct {
	opts  Options
	table *routing.Table

	mu       sync.Mutex
	version  uint64
	topics   map[string]*topicEntry   // materialised routes
	clusters map[string]*clusterEntry // every broker set's cluster, by cluster name
	listener *resource                // the listener of every node, unless routes are inline
	byHash   map[string][]string      // broker set hash → its cluster names (translate.ClusterNames)
	unbuilt  []*topicEntry            // topics ref materialised whose routes materialise has not built yet
	scopes   map[string]*scope        // node scopes, shared by nodes with the same topics
	nodes    map[string]*node         // by node id and scope
	streams  map[streamKey]*stream
	pending  map[any]pendingRequest // request being handled → its stream, from the request callback to CreateWatch
	anon     int64                  // streams created without the server callbacks
	// subscribers indexes the streams subscribed to a name explicitly, so that a change reaches exactly them.
	subscribers map[nameKey]map[*stream]struct{}
	// retention records, by node key, when each cluster left the node's view (retention.go), declared counts those
	// of clusters this replica never served, and swept names the clusters whose retention ended here, for one more
	// period.
	retention map[string]*nodeRetention
	declared  int
	swept     map[string]time.Time
	// pushStart is when the change being applied reached the cache (zero outside Apply and Sweep): responses
	// queued meanwhile are pushes, timed from it.
	pushStart time.Time
	metrics   *metrics
	applied   chan struct{} // closed and replaced whenever version moves
	rejected  chan struct{} // closed and replaced whenever the set of rejections changes
}

type nameKey struct{ typeURL, name string }

type topicEntry struct {
	name    string
	route   *resource // nil while the topic does not exist
	cluster string    // the cluster of its catch-all route ("" while absent)
	uses    []string  // every cluster its route names: the cluster, and a weighted set's send cluster
	refs    int       // scopes and explicit stream subscriptions holding it
	release func()
	scopes  map[*scope]struct{}
	nodes   map[*node]int // nodes subscribing to it explicitly
}

type clusterEntry struct {
	cluster, endpoints *resource
	retiredAt          time.Time // when no broker set had this shape any more; zero while live
}

// scope is a set of topics and the resources built from it, shared by every node with that set.
type scope struct {
	key      string
	topics   []string
	used     map[string]struct{} // cluster names the topics route to
	ecds     *resource
	listener *resource
	nodes    map[*node]struct{}
	// changedAt is when a change of the model last changed the scope's config: a config make-before-break
	// holds and then releases counts as a push from then (gate.go).
	changedAt time.Time
}

// node is one node id with one metadata. Streams of the same id with different metadata are different nodes.
type node struct {
	key     string
	id      string
	proto   *corev3.Node // as its first stream sent it, to compute its scope again when bindings change
	streams map[*stream]struct{}
	scope   *scope
	watches map[*watch]struct{}
	release func() // its registration in the table's connected proxies
}

// New returns a cache over table, holding the table's current broker sets.
func New(table *routing.Table, opts Options) (*Cache, error) {

	if opts.StatPrefix == "" {
		opts.StatPrefix = "rocketmq"
	}
	if opts.ClusterRetention <= 0 {
		opts.ClusterRetention = 10 * time.Minute
	}
	if opts.MaxSubscriptions <= 0 {
		opts.MaxSubscriptions = 100_000
	}
	if opts.NackBackoff <= 0 {
		opts.NackBackoff = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cache{
		opts:        opts,
		table:       table,
		topics:      make(map[string]*topicEntry),
		clusters:    make(map[string]*clusterEntry),
		byHash:      make(map[string][]string),
		scopes:      make(map[string]*scope),
		nodes:       make(map[string]*node),
		streams:     make(map[streamKey]*stream),
		pending:     make(map[any]pendingRequest),
		subscribers: make(map[nameKey]map[*stream]struct{}),
		retention:   make(map[string]*nodeRetention),
		swept:       make(map[string]time.Time),
		metrics:     newMetrics(),
		applied:     make(chan struct{}),
		rejected:    make(chan struct{}),
	}
	if c.opts.Scope == nil {
		c.opts.Scope = func(n *corev3.Node) []string { return append(MetadataScope(n), table.Bound(ProxyOf(n))...) }
	}
	if !opts.InlineRoutes { // the listener names its config by ECDS: one for every node
		l, err := translate.Listener(opts.Listener)
		if err != nil {
			return nil, err
		}
		if c.listener, err = newResource(translate.ListenerName, l); err != nil {
			return nil, err
		}
	}
	c.version = table.Version()
	for _, set := range table.BrokerSets() {
		if err := c.syncCluster(set.Hash, nil); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Version is the table version the cache last applied.
func (c *Cache) Version() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Apply brings the cache up to date with a change set of the routing table. Its cost is proportional to the
// changed topics and broker sets that some stream uses, plus the watches that must answer.
func (c *Cache) Apply(cs routing.ChangeSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pushStart = time.Now()
	defer func() { c.pushStart = time.Time{} }()
	touched := map[*watch]struct{}{}
	nodes := map[*node]struct{}{}
	for hash := range cs.BrokerSets {
		if err := c.syncCluster(hash, touched); err != nil {
			c.opts.Logger.Error("translate broker set", "hash", hash, "err", err)
		}
	}
	// A new cluster reaches wildcard views through the topics that route to it (below); a vanished one is retained
	// and leaves them when its retention ends (sweep).
	c.sweep(touched)
	if cs.Scopes {
		c.rescope(touched)
	}
	scopes := map[*scope]struct{}{}
	var changed []*topicEntry // the materialised topics among the changed
	for name := range cs.Topics {
		if e := c.topics[name]; e != nil {
			changed = append(changed, e)
		}
	}
	for _, e := range c.buildTopics(changed) {
		c.addWatches(touched, routeKey(e.name))
		for s := range e.scopes {
			scopes[s] = struct{}{}
		}
		for n := range e.nodes {
			nodes[n] = struct{}{}
		}
	}
	for s := range scopes {
		if err := c.buildScope(s); err != nil {
			c.opts.Logger.Error("translate scope", "scope", s.key, "err", err)
		}
		s.changedAt = c.pushStart
		for n := range s.nodes {
			nodes[n] = struct{}{}
		}
	}
	for n := range nodes {
		c.touchNode(n, touched)
	}
	if cs.Version > c.version {
		c.version = cs.Version
		close(c.applied)
		c.applied = make(chan struct{})
	}
	c.respondAll(touched)
}

// WaitVersion waits until the cache has applied the table up to version v (Run applies changes a coalescing
// window after they happen): a server that starts serving after a sync waits for it, or its first clients would
// get the state before the sync.
func (c *Cache) WaitVersion(ctx context.Context, v uint64) error {
	for {
		c.mu.Lock()
		version, applied := c.version, c.applied
		c.mu.Unlock()
		if version >= v {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-applied:
		}
	}
}

// touchNode marks a node's own resources changed for its streams and collects its waiting watches.
func (c *Cache) touchNode(n *node, touched map[*watch]struct{}) {
	for st := range n.streams {
		st.markDirty(translate.ExtensionType, translate.ExtensionConfigName)
		st.markDirty(translate.ListenerType, translate.ListenerName)
	}
	for w := range n.watches {
		touched[w] = struct{}{}
	}
}

// sweep drops clusters whose retention has ended and collects the watches that must hear of it.
func (c *Cache) sweep(touched map[*watch]struct{}) {
	expired := false
	for name, e := range c.clusters {
		if !e.retiredAt.IsZero() && time.Since(e.retiredAt) >= c.opts.ClusterRetention {
			delete(c.clusters, name)
			c.swept[name] = time.Now()
			c.addWatches(touched, nameKey{translate.ClusterType, name})
			c.addWatches(touched, nameKey{translate.EndpointType, name})
			expired = true
		}
	}
	c.sweepRetention(touched)
	if expired { // wildcard cluster views may hold them: let every node's watches look (rare, batched)
		for _, n := range c.nodes {
			for w := range n.watches {
				if isClusterType(w.typeURL) {
					touched[w] = struct{}{}
				}
			}
		}
	}
}

// Sweep drops the clusters whose retention has ended and tells the streams holding them.
func (c *Cache) Sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pushStart = time.Now()
	defer func() { c.pushStart = time.Time{} }()
	touched := map[*watch]struct{}{}
	c.sweep(touched)
	c.respondAll(touched)
}

// Run applies the table's changes until ctx ends, coalescing each burst for window, and sweeps retired clusters.
func (c *Cache) Run(ctx context.Context, sub *routing.Subscription, window func(context.Context)) {
	go func() {
		t := time.NewTicker(max(c.opts.ClusterRetention/10, time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.Sweep()
			}
		}
	}()
	for {
		cs, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if window != nil {
			window(ctx)
			if more, ok, _ := sub.TryNext(); ok {
				cs = merge(cs, more)
			}
		}
		c.Apply(cs)
	}
}

func merge(a, b routing.ChangeSet) routing.ChangeSet {
	out := routing.ChangeSet{Version: max(a.Version, b.Version), Brokers: a.Brokers || b.Brokers, Scopes: a.Scopes || b.Scopes,
		Topics: map[string]struct{}{}, BrokerSets: map[string]struct{}{}}
	maps.Copy(out.Topics, a.Topics)
	maps.Copy(out.Topics, b.Topics)
	maps.Copy(out.BrokerSets, a.BrokerSets)
	maps.Copy(out.BrokerSets, b.BrokerSets)
	return out
}

func routeKey(topic string) nameKey { return nameKey{translate.RouteType, topic} }

// addWatches marks a name changed for every stream subscribed to it and collects their waiting watches.
func (c *Cache) addWatches(into map[*watch]struct{}, k nameKey) {
	for st := range c.subscribers[k] {
		st.markDirty(k.typeURL, k.name)
		if w := st.pending[k.typeURL]; w != nil {
			into[w] = struct{}{}
		}
	}
}

// syncCluster adds or removes the clusters of one broker set (its cluster, and a weighted set's send cluster).
func (c *Cache) syncCluster(hash string, touched map[*watch]struct{}) error {
	set := c.table.BrokerSet(hash)
	if set == nil {
		names, ok := c.byHash[hash]
		if !ok {
			return nil
		}
		delete(c.byHash, hash)
		for _, name := range names {
			if e := c.clusters[name]; e != nil && e.retiredAt.IsZero() {
				e.retiredAt = time.Now() // retained: connections opened before the change may still route to it
			}
		}
		return nil
	}
	type built struct {
		name    string
		cluster proto.Message
		cla     proto.Message
	}
	clusters := []built{{translate.ClusterName(set), translate.Cluster(set), translate.LoadAssignment(set)}}
	if translate.Weighted(set) {
		clusters = append(clusters, built{translate.SendClusterName(set), translate.SendCluster(set), translate.SendLoadAssignment(set)})
	}
	names := make([]string, 0, len(clusters))
	for _, b := range clusters {
		cl, err := newResource(b.name, b.cluster)
		if err != nil {
			return err
		}
		ep, err := newResource(b.name, b.cla)
		if err != nil {
			return err
		}
		c.clusters[b.name] = &clusterEntry{cluster: cl, endpoints: ep}
		delete(c.swept, b.name) // live again: a new retention when it retires or leaves a view
		names = append(names, b.name)
		if touched != nil {
			c.addWatches(touched, nameKey{translate.ClusterType, b.name})
			c.addWatches(touched, nameKey{translate.EndpointType, b.name})
		}
	}
	c.byHash[hash] = names
	return nil
}

// buildTopic translates one materialised topic from its state t in the table (nil: absent).
func (c *Cache) buildTopic(e *topicEntry, t *routing.Topic) error {
	if t == nil {
		e.route, e.cluster, e.uses = nil, "", nil
		return nil
	}
	if _, ok := c.byHash[t.BrokerSet.Hash]; !ok {
		// The table is ahead of the change sets applied so far: add the cluster now, so that no served route
		// names a cluster the cache does not serve.
		if err := c.syncCluster(t.BrokerSet.Hash, nil); err != nil {
			return err
		}
	}
	proto := translate.TopicRoute(t)
	r, err := newResource(e.name, proto)
	if err != nil {
		return err
	}
	e.route, e.cluster, e.uses = r, translate.ClusterName(t.BrokerSet), translate.ClusterNames(t.BrokerSet)
	return nil
}

// ref materialises a topic (asking the table's sources for it) and counts one more user. Its route is built by the
// next materialise, which callers run before they answer.
func (c *Cache) ref(name string) *topicEntry {
	e := c.topics[name]
	if e == nil {
		e = &topicEntry{name: name, scopes: map[*scope]struct{}{}, nodes: map[*node]int{}}
		e.release = c.table.Interest().Want(name)
		c.topics[name] = e
		c.unbuilt = append(c.unbuilt, e)
	}
	e.refs++
	return e
}

// materialise builds the routes of the topics ref added since the last call, reading them from the table under
// one hold of its lock: a table write that waits meanwhile delays the cache, which holds its own lock, once rather
// than once a topic (a node scoped to thousands of topics, a request naming thousands).
func (c *Cache) materialise() {
	if len(c.unbuilt) == 0 {
		return
	}
	var entries []*topicEntry
	for _, e := range c.unbuilt {
		if c.topics[e.name] == e { // not released again meanwhile
			entries = append(entries, e)
		}
	}
	c.unbuilt = nil
	c.buildTopics(entries)
}

// buildTopics translates materialised topics from the table, reading them all under one hold of its lock, and
// returns those it built (it logs the others' errors).
func (c *Cache) buildTopics(entries []*topicEntry) []*topicEntry {
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.name
	}
	built := entries[:0:0]
	for i, t := range c.table.Topics(names) {
		if err := c.buildTopic(entries[i], t); err != nil {
			c.opts.Logger.Error("translate topic", "topic", names[i], "err", err)
			continue
		}
		built = append(built, entries[i])
	}
	return built
}

func (c *Cache) unref(name string) {
	e := c.topics[name]
	if e == nil {
		return
	}
	if e.refs--; e.refs <= 0 {
		e.release()
		delete(c.topics, name)
	}
}

// scopeFor returns the shared scope of a topic set, creating and building it on first use.
func (c *Cache) scopeFor(topics []string) *scope {
	topics = slices.Compact(slices.Sorted(slices.Values(topics)))
	key := strings.Join(topics, "\x00")
	if s := c.scopes[key]; s != nil {
		return s
	}
	s := &scope{key: key, topics: topics, nodes: map[*node]struct{}{}}
	for _, t := range topics {
		c.ref(t).scopes[s] = struct{}{}
	}
	c.materialise()
	if err := c.buildScope(s); err != nil {
		c.opts.Logger.Error("translate scope", "err", err)
	}
	c.scopes[key] = s
	return s
}

func (c *Cache) dropScope(s *scope) {
	delete(c.scopes, s.key)
	for _, t := range s.topics {
		if e := c.topics[t]; e != nil {
			delete(e.scopes, s)
		}
		c.unref(t)
	}
}

// buildScope builds a scope's ECDS filter config (or, with inline routes, its listener) from its topics' routes.
func (c *Cache) buildScope(s *scope) error {
	if c.opts.InlineRoutes {
		return c.buildInlineScope(s)
	}
	used := map[string]struct{}{}
	ecds, err := c.ecdsOf(s.topics, func(e *topicEntry) bool {
		for _, name := range e.uses {
			used[name] = struct{}{}
		}
		return true
	})
	if err != nil {
		return err
	}
	s.used, s.ecds, s.listener = used, ecds, c.listener
	return nil
}

// ecdsOf builds the ECDS filter config of the topics whose routes keep accepts. It is spliced from the routes'
// encodings, as the cache keeps them: one topic's change costs a copy of the scope's bytes, not a translation of
// every topic in it (BenchmarkScopeRebuild), and no read of the table.
func (c *Cache) ecdsOf(topics []string, keep func(*topicEntry) bool) (*resource, error) {
	var bodies [][]byte
	for _, t := range topics {
		if e := c.topics[t]; e != nil && e.route != nil && keep(e) {
			bodies = append(bodies, e.route.body)
		}
	}
	body, err := translate.ExtensionConfigFromRoutes(translate.ProxyOptions{StatPrefix: c.opts.StatPrefix,
		TransientObjectLifeSpan: c.opts.TransientObjectLifeSpan}, bodies)
	if err != nil {
		return nil, err
	}
	return resourceOf(translate.ExtensionConfigName, body), nil
}

// buildInlineScope builds a scope's listener with its routes inline, translating them again from the table: a
// route's proto costs several times its bytes, and only these rebuilds need it.
func (c *Cache) buildInlineScope(s *scope) error {
	s.used = map[string]struct{}{}
	var routes []*rmqv3.RouteConfiguration
	for _, t := range s.topics {
		e, tp := c.topics[t], c.table.Topic(t)
		if e == nil || tp == nil {
			continue
		}
		if translate.ClusterName(tp.BrokerSet) != e.cluster {
			// The table is ahead of the change sets applied so far: bring the route (and its cluster) up to
			// date first, so the config never names a cluster the cache does not serve.
			if err := c.buildTopic(e, tp); err != nil {
				return err
			}
		}
		routes = append(routes, translate.TopicRoute(tp))
		for _, name := range e.uses {
			s.used[name] = struct{}{}
		}
	}
	lopts := c.opts.Listener
	lopts.Inline = translate.ProxyConfig(translate.ProxyOptions{StatPrefix: c.opts.StatPrefix,
		TransientObjectLifeSpan: c.opts.TransientObjectLifeSpan}, routes)
	l, err := translate.Listener(lopts)
	if err != nil {
		return err
	}
	s.listener, err = newResource(translate.ListenerName, l)
	return err
}

// nodeFor returns the state of a node id and metadata, creating it (and its scope) on first sight.
func (c *Cache) nodeFor(p *corev3.Node) *node {
	id := p.GetId()
	md, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p.GetMetadata())
	key := id + "\x00" + string(md)
	if n := c.nodes[key]; n != nil {
		return n
	}
	s := c.scopeFor(c.opts.Scope(p))
	n := &node{key: key, id: id, proto: p, scope: s, streams: map[*stream]struct{}{}, watches: map[*watch]struct{}{},
		release: c.table.Proxies().Connect(ProxyOf(p))}
	s.nodes[n] = struct{}{}
	c.nodes[key] = n
	return n
}

// rescope moves every node whose scope changed (the bindings changed) to its new scope and collects its watches.
func (c *Cache) rescope(touched map[*watch]struct{}) {
	for _, n := range c.nodes {
		s := c.scopeFor(c.opts.Scope(n.proto))
		if s == n.scope {
			continue
		}
		old := n.scope
		delete(old.nodes, n)
		n.scope = s
		s.nodes[n] = struct{}{}
		c.releaseScopeIfUnused(old)
		c.touchNode(n, touched)
	}
}

func (c *Cache) releaseScopeIfUnused(s *scope) {
	if len(s.nodes) == 0 {
		c.dropScope(s)
	}
}

func (c *Cache) releaseNode(n *node) {
	if len(n.streams) > 0 {
		return
	}
	delete(c.nodes, n.key)
	delete(n.scope.nodes, n)
	n.release()
	c.releaseScopeIfUnused(n.scope)
}

// used returns the clusters a stream's topics route to: its node's scope's and those of the topics it asked for by
// name.
func (c *Cache) used(st *stream) map[string]struct{} {
	explicit := st.subs[translate.RouteType]
	if len(explicit) == 0 {
		return st.node.scope.used
	}
	out := maps.Clone(st.node.scope.used)
	for t := range explicit {
		if e := c.topics[t]; e != nil {
			for _, name := range e.uses {
				out[name] = struct{}{}
			}
		}
	}
	return out
}

// lookup returns the current resource of a type and name as a node sees it, or nil.
func (c *Cache) lookup(typeURL, name string, n *node) *resource {
	switch typeURL {
	case translate.ClusterType, translate.EndpointType:
		e := c.clusters[name]
		if e == nil {
			return nil
		}
		if typeURL == translate.ClusterType {
			return e.cluster
		}
		return e.endpoints
	case translate.RouteType:
		if e := c.topics[name]; e != nil {
			return e.route
		}
	case translate.ExtensionType:
		if name == translate.ExtensionConfigName {
			return n.scope.ecds
		}
	case translate.ListenerType:
		if name == translate.ListenerName {
			return n.scope.listener
		}
	}
	return nil
}

// wildcard returns the names a wildcard subscription of a type covers for a stream: what it uses.
func (c *Cache) wildcard(typeURL string, st *stream) []string {
	n := st.node
	switch typeURL {
	case translate.ClusterType, translate.EndpointType:
		return slices.Collect(maps.Keys(c.used(st)))
	case translate.RouteType:
		return n.scope.topics
	case translate.ExtensionType:
		if n.scope.ecds != nil {
			return []string{translate.ExtensionConfigName}
		}
	case translate.ListenerType:
		return []string{translate.ListenerName}
	}
	return nil
}

// Known reports whether the cache serves a type.
func Known(typeURL string) bool { return slices.Contains(ServedTypes, typeURL) }

var errUnknownType = errors.New("rocketpilot serves no resources of this type")

func unknownType(typeURL string) error {
	return fmt.Errorf("%w: %q", errUnknownType, typeURL)
}

// Fetch answers a REST (state-of-the-world, no watch) request with the current resources.
func (c *Cache) Fetch(_ context.Context, req *gcpcache.Request) (gcpcache.Response, error) {
	if !Known(req.GetTypeUrl()) {
		return nil, unknownType(req.GetTypeUrl())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.newStream(streamKey{id: c.nextAnon()}, false)
	st.node = c.nodeFor(req.GetNode())
	st.node.streams[st] = struct{}{}
	defer c.closeStreamLocked(st)
	w := &watch{typeURL: req.GetTypeUrl(), node: st.node, stream: st, sotwReq: req}
	names := req.GetResourceNames()
	if len(names) == 0 {
		names = c.wildcard(w.typeURL, st)
	}
	resp, _, _, _ := c.sotwResponse(w, names, true)
	return resp, nil
}

func versionString(v uint64) string { return strconv.FormatUint(v, 10) }

// Idle reports whether the cache holds no per-stream state: no stream, node, scope, materialised route or
// subscription index entry. Tests use it to prove closed streams leave nothing behind. Retention records are
// not per-stream state: they outlive a node's streams by design, for at most twice the retention, within the
// bounds on declared clusters (retention.go), and show in rocketpilot_xds_retained_clusters.
func (c *Cache) Idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams) == 0 && len(c.nodes) == 0 && len(c.scopes) == 0 && len(c.topics) == 0 && len(c.subscribers) == 0
}
