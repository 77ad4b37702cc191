package cache

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// Materialisation: the routes of the topics some stream uses (explicitly or through a node's scope), built from
// the table while used, and the clusters and endpoints of every broker set, retained after their set goes.

// topicEntry is one materialised topic: its route and the clusters that route names.
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

// clusterEntry is one served cluster with its endpoints.
type clusterEntry struct {
	cluster, endpoints *resource
	retiredAt          time.Time // when no broker set had this shape any more; zero while live
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
