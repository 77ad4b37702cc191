package cache

import (
	"time"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// Cluster retention. Envoy applies a new route table to new connections only, so a connection opened before a
// change keeps routing to the clusters it started with: a cluster stays with a node for ClusterRetention from the
// moment it left the node's view (its topics moved elsewhere, or its broker set went away), whatever happens to
// the node's streams meanwhile. The record is per node (id and metadata) and outlives its streams, so a client
// that reconnects keeps what it held for the rest of the period and no longer; a cluster a client declares
// (initial_resource_versions) that this replica never knew, one another replica served it, is kept for the period
// from the reconnect, since its connections may still use it.

// Bounds on the records of declared clusters this replica never served: client-chosen names (any name of the
// cluster-name shape) under client-chosen node ids would otherwise hold memory for twice the retention. Past
// either bound such a name is removed at once, as any unknown name is; a real node declares a few.
const (
	maxDeclaredPerNode = 1_000
	maxDeclared        = 100_000
)

// nodeRetention is one node's record: when each cluster left its view.
type nodeRetention struct {
	left     map[string]leftView
	declared int // records of clusters this replica never served
}

type leftView struct {
	at       time.Time
	declared bool // a cluster this replica never served, declared by the client
}

// keep reports whether a stream keeps a cluster or endpoint name that is neither in its wildcard view nor
// subscribed: a live cluster that left the node's view, a retired one, or one this replica never served (as a
// fresh replica), each until its retention ends. The first time it records when the name left the node's view.
func (c *Cache) keep(st *stream, typeURL, name string) bool {
	if !isClusterType(typeURL) {
		return false
	}
	if !c.swept[name].IsZero() {
		return false // retired here and removed when its retention ended, which no node's began before
	}
	rec := c.retention[st.node.key]
	l, ok := rec.lookup(name)
	if !ok {
		e := c.clusters[name]
		switch {
		case e != nil && !e.retiredAt.IsZero():
			l.at = e.retiredAt
		case e != nil:
			l.at = time.Now()
		case !translate.IsClusterName(name):
			return false // no broker set of any replica has this name
		case rec != nil && rec.declared >= maxDeclaredPerNode, c.declared >= maxDeclared:
			return false
		default:
			l = leftView{at: time.Now(), declared: true} // a broker set another replica served: connections may still use it
		}
		if rec == nil {
			rec = &nodeRetention{left: map[string]leftView{}}
			c.retention[st.node.key] = rec
		}
		c.record(rec, name, l)
	}
	return time.Since(l.at) < c.opts.ClusterRetention
}

func (r *nodeRetention) lookup(name string) (leftView, bool) {
	if r == nil {
		return leftView{}, false
	}
	l, ok := r.left[name]
	return l, ok
}

func (c *Cache) record(r *nodeRetention, name string, l leftView) {
	r.left[name] = l
	if l.declared {
		r.declared++
		c.declared++
	}
}

func (c *Cache) forgetRecord(key string, r *nodeRetention, name string) {
	if l, ok := r.left[name]; ok {
		delete(r.left, name)
		if l.declared {
			r.declared--
			c.declared--
		}
	}
	if len(r.left) == 0 {
		delete(c.retention, key)
	}
}

// inView notes that names are in a stream's wildcard view (again): their retention no longer runs.
func (c *Cache) inView(st *stream, names []string) {
	rec := c.retention[st.node.key]
	if rec == nil {
		return
	}
	for _, name := range names {
		c.forgetRecord(st.node.key, rec, name)
	}
}

// mayStillRoute returns the clusters a state-of-the-world client back after a reconnect may still route to, whose
// retention has not ended: every retired cluster, and the live ones that left its node's view. Such a client does
// not say what it holds, so its wildcard answers keep them all until it has been answered once.
func (c *Cache) mayStillRoute(st *stream) []string {
	var out []string
	for name, e := range c.clusters {
		if !e.retiredAt.IsZero() {
			out = append(out, name)
		}
	}
	if rec := c.retention[st.node.key]; rec != nil {
		for name, l := range rec.left {
			if e := c.clusters[name]; e != nil && e.retiredAt.IsZero() && time.Since(l.at) < c.opts.ClusterRetention {
				out = append(out, name)
			}
		}
	}
	return out
}

// sweepRetention finds the retentions that ended and collects the watches of the streams that must drop those
// clusters. A record whose retention ended stays for one more period while no stream holds the name, so that a
// client reconnecting then, declaring it, has it removed at once; then it goes.
func (c *Cache) sweepRetention(touched map[*watch]struct{}) {
	r := c.opts.ClusterRetention
	for name, at := range c.swept {
		if time.Since(at) >= r {
			delete(c.swept, name)
		}
	}
	for key, rec := range c.retention {
		n := c.nodes[key]
		for name, l := range rec.left {
			age := time.Since(l.at)
			if age < r {
				continue
			}
			held := false
			if n != nil {
				for st := range n.streams {
					for _, typeURL := range []string{translate.ClusterType, translate.EndpointType} {
						if _, ok := st.held[typeURL][name]; !ok {
							continue
						}
						held = true
						st.markDirty(typeURL, name) // an explicit subscription looks at it again too
						if w := st.pending[typeURL]; w != nil {
							touched[w] = struct{}{}
						}
					}
				}
			}
			if !held && age >= 2*r {
				c.forgetRecord(key, rec, name)
			}
		}
	}
}

// retentionRecords counts the (node, cluster) records, those of declared clusters this replica never served apart.
func (c *Cache) retentionRecords() (left, declared int) {
	for _, rec := range c.retention {
		left += len(rec.left)
	}
	return left - c.declared, c.declared
}
