package cache

import (
	"maps"
	"slices"
	"strings"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// Views: what a node and its streams see. Scopes (a node's topics and the config built from them, shared by the
// nodes with the same topics), nodes, and per stream of each type its wildcard view, the clusters it uses and a
// resource by name.

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
	granted map[string]struct{} // under strict scope, the only topics the node may subscribe to; nil otherwise
	watches map[*watch]struct{}
	release func() // its registration in the table's connected proxies
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
	topics, granted := c.scopeOf(p)
	s := c.scopeFor(topics)
	n := &node{key: key, id: id, proto: p, scope: s, granted: granted, streams: map[*stream]struct{}{}, watches: map[*watch]struct{}{},
		release: c.table.Proxies().Connect(ProxyOf(p))}
	s.nodes[n] = struct{}{}
	c.nodes[key] = n
	return n
}

// scopeOf is a node's scope, and, when it is strict (Options.StrictScope, or a strict binding selects it), the
// topics it may subscribe to: those its bindings grant, which are then its whole scope.
func (c *Cache) scopeOf(p *corev3.Node) (topics []string, granted map[string]struct{}) {
	bound, strict := c.table.Grants(ProxyOf(p))
	if !strict && !c.opts.StrictScope {
		return c.opts.Scope(p), nil
	}
	return bound, setOf(bound)
}

// grants reports whether the node may subscribe to a topic.
func (n *node) grants(topic string) bool {
	if n == nil || n.granted == nil {
		return true
	}
	_, ok := n.granted[topic]
	return ok
}

// noteRefused counts the topics a request newly subscribes the stream to that its node's strict scope does not
// grant. Call it before the subscription is recorded.
func (c *Cache) noteRefused(st *stream, typeURL string, names []string) {
	if typeURL != translate.RouteType || st.node == nil || st.node.granted == nil {
		return
	}
	for _, name := range names {
		if _, had := st.subs[typeURL][name]; !had && name != "*" && !st.node.grants(name) {
			c.metrics.scopeRefused.Inc()
		}
	}
}

// rescope moves every node whose scope changed (the bindings changed) to its new scope and collects its watches; a
// node whose grants changed has the routes it subscribed to by name looked at again.
func (c *Cache) rescope(touched map[*watch]struct{}) {
	for _, n := range c.nodes {
		topics, granted := c.scopeOf(n.proto)
		if !maps.Equal(granted, n.granted) || (granted == nil) != (n.granted == nil) {
			for st := range n.streams {
				for name := range st.subs[translate.RouteType] {
					if _, now := granted[name]; (granted == nil || now) != n.grants(name) {
						st.markDirty(translate.RouteType, name)
					}
				}
			}
			n.granted = granted
			c.touchNode(n, touched)
		}
		s := c.scopeFor(topics)
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
		if e := c.topics[t]; e != nil && st.node.grants(t) {
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
		if n != nil && n.granted != nil {
			// Under strict scope, only the clusters of the topics the node is granted: its scope's, which are all
			// of them (a cluster it held before a change is kept for its retention, not sent again).
			if _, ok := n.scope.used[name]; !ok {
				return nil
			}
		}
		if typeURL == translate.ClusterType {
			return e.cluster
		}
		return e.endpoints
	case translate.RouteType:
		if e := c.topics[name]; e != nil && n.grants(name) {
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
