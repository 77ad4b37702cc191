package cache

import (
	"slices"
	"strings"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// Read-only accessors of what the cache holds and serves, for the admin API: it renders these, and translates
// nothing itself, so that it shows what streams were sent.

// Served is one resource as the cache serves it: its name, version and deterministic protobuf encoding (the
// message of its type URL). Body is shared: callers must not modify it.
type Served struct {
	Name    string
	Version string
	Body    []byte
}

// ServedCluster is one cluster the cache serves: the Cluster and its ClusterLoadAssignment.
type ServedCluster struct {
	Cluster   Served
	Endpoints Served
}

// BrokerSetCluster is a served cluster of a broker set the cache holds.
type BrokerSetCluster struct {
	BrokerSet string // its hash
	ServedCluster
}

// ServedTopic is what the cache serves for a topic: its route, and the clusters that route names.
type ServedTopic struct {
	// Held is whether a stream holds the topic (through its scope or by name): Route is then what was sent, or
	// nil when the streams were told the topic is absent (the table has it, the cache has not applied it yet). A
	// topic no stream holds is not served; Route is then what a stream subscribing now would be sent, built by the
	// cache from the table's current state.
	Held  bool
	Route *Served
	// Cluster is the cluster of the route's catch-all (nil while the cache serves none of that name), Send a
	// weighted set's send cluster (nil otherwise).
	Cluster, Send *ServedCluster
}

func served(r *resource) Served { return Served{Name: r.name, Version: r.version, Body: r.body} }

func servedRef(r *resource) *Served {
	s := served(r)
	return &s
}

// clusterLocked returns the served cluster of a name, or nil.
func (c *Cache) clusterLocked(name string) *ServedCluster {
	e := c.clusters[name]
	if e == nil {
		return nil
	}
	return &ServedCluster{Cluster: served(e.cluster), Endpoints: served(e.endpoints)}
}

// ServedClusters returns the clusters the cache serves for the broker sets it holds, sorted by name. Clusters kept
// only for their retention after their broker set went are left out.
func (c *Cache) ServedClusters() []BrokerSetCluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []BrokerSetCluster
	for hash, names := range c.byHash {
		for _, name := range names {
			if sc := c.clusterLocked(name); sc != nil {
				out = append(out, BrokerSetCluster{BrokerSet: hash, ServedCluster: *sc})
			}
		}
	}
	slices.SortFunc(out, func(a, b BrokerSetCluster) int { return strings.Compare(a.Cluster.Name, b.Cluster.Name) })
	return out
}

// ServedTopic returns what the cache serves for a topic (see ServedTopic.Held); ok is false when it serves no
// route of that name and the table has no such topic.
func (c *Cache) ServedTopic(name string) (ServedTopic, bool) {
	c.mu.Lock()
	if e := c.topics[name]; e != nil {
		defer c.mu.Unlock()
		if e.route == nil {
			return ServedTopic{Held: true}, true // the streams were told it is absent
		}
		return c.servedTopicLocked(true, e.route, e.cluster, e.uses), true
	}
	c.mu.Unlock()
	// Held by no stream: built from the table outside the cache's lock, which every stream needs.
	t := c.table.Topic(name)
	if t == nil {
		return ServedTopic{}, false
	}
	r, err := newResource(name, translate.TopicRoute(t))
	if err != nil {
		return ServedTopic{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servedTopicLocked(false, r, translate.ClusterName(t.BrokerSet), translate.ClusterNames(t.BrokerSet)), true
}

func (c *Cache) servedTopicLocked(held bool, route *resource, cluster string, uses []string) ServedTopic {
	out := ServedTopic{Held: held, Route: servedRef(route)}
	for _, name := range uses {
		sc := c.clusterLocked(name)
		if name == cluster {
			out.Cluster = sc
		} else {
			out.Send = sc
		}
	}
	return out
}

// ClusterName is the name of the cluster the cache serves for a broker set (the catch-all of its topics' routes).
func (c *Cache) ClusterName(set *routing.BrokerSet) string { return translate.ClusterName(set) }
