package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// Options configure a Cache.
type Options struct {
	// Scope returns the topics a node is scoped to: when nil, those its metadata lists (MetadataScope) and those
	// the table's bindings bind it to (routing.Table.Bound of ProxyOf the node).
	Scope func(*corev3.Node) []string
	// StrictScope makes every node's bindings an access boundary, as a strict TopicBinding does for the nodes it
	// selects: a node may subscribe only to the topics its bindings grant (routing.Table.Grants); another topic it
	// asks for is answered as absent (removed_resources, or left out of a state-of-the-world answer), counted in
	// rocketpilot_xds_scope_refused_total, and never served, nor its clusters. Its metadata's topics grant nothing.
	StrictScope bool
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
	activity  activity      // stream events and totals for live views (activity.go)
}

type nameKey struct{ typeURL, name string }

// go-control-plane's servers read the cache through cache.Cache: CreateWatch and Fetch (sotw.go), CreateDeltaWatch
// (delta.go).
var _ gcpcache.Cache = (*Cache)(nil)

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

// Known reports whether the cache serves a type.
func Known(typeURL string) bool { return slices.Contains(ServedTypes, typeURL) }

var errUnknownType = errors.New("rocketpilot serves no resources of this type")

func unknownType(typeURL string) error {
	return fmt.Errorf("%w: %q", errUnknownType, typeURL)
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
