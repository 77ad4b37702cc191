package cache

import (
	"slices"
	"time"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// Make-before-break. A config that names a cluster (the ECDS filter config, or the listener when routes are
// inline) reaches a node only once the node has accepted that cluster and its endpoints: an Envoy cluster warms
// until its endpoints arrive, and a route to a warming or unknown cluster fails. Sending the clusters first is not
// enough: the per-type services order nothing between CDS, EDS and ECDS, go-control-plane's state-of-the-world ADS
// loop sends the types it has ready in random order, and a rejected cluster would leave the new config pointing at
// nothing. So the gate waits for the client's ACK, which costs one round trip, and only when a config names a
// cluster new to that client.
//
// The gate is per node: a node's clusters, endpoints and config may come on different streams (an Envoy takes
// endpoints and the config on its ADS stream, as rocketpilot's clusters and listener name it, and clusters and the
// listener by ADS or by the per-type services its bootstrap names; other clients may use a stream per type). For
// each type, the node's newest stream that asks for it counts. A node that takes clusters by CDS waits for their
// endpoints too, even before it asked for them: every cluster rocketpilot serves is an EDS cluster, and Envoy asks
// for a cluster's endpoints only once it took the cluster (and after its ACK of the clusters when they come on
// another stream). A node that asks for neither type waits for nothing (a library that asks only for routes and
// the config).

// gated reports whether responses of a type wait for the clusters they name.
func (c *Cache) gated(typeURL string) bool {
	return typeURL == translate.ExtensionType || typeURL == translate.ListenerType && c.opts.InlineRoutes
}

// unaccepted returns the clusters a stream's config names that its node has not accepted yet, with their
// endpoints, sorted; nil when the config may go.
func (c *Cache) unaccepted(st *stream) []string {
	var missing []string
	used := c.used(st)
	clusters := false // the node takes clusters by CDS: they are EDS clusters, so it will ask for their endpoints
	for _, typeURL := range []string{translate.ClusterType, translate.EndpointType} {
		var accepted, held map[string]string
		from := st.node.newest(typeURL)
		if from != nil {
			accepted, held = from.accepted[typeURL], from.held[typeURL]
		}
		if typeURL == translate.ClusterType {
			clusters = from != nil
		}
		if from == nil && !clusters {
			continue // the node does not ask for this type
		}
		for name := range used {
			// Accepted, and not removed since by a response still in flight (the client let it go).
			_, ok := accepted[name]
			if _, kept := held[name]; !ok || !kept {
				missing = append(missing, name)
			}
		}
	}
	slices.Sort(missing)
	return slices.Compact(missing)
}

// accept records that a stream's client accepted a response of clusters or endpoints, and the responses sent
// before it that it passed over without a decision (a client decides in order), then lets go what the node's
// configs were waiting for.
func (c *Cache) accept(st *stream, typeURL string, passed []sentResponse, r sentResponse) {
	var change *clusterChange
	for _, p := range passed {
		if !p.rejected {
			change = change.then(p.carries)
		}
	}
	if change = change.then(r.carries); change == nil {
		return
	}
	st.accepted[typeURL] = change.applyTo(st.accepted[typeURL])
	c.releaseHeld(st.node)
}

// releaseHeld answers the node's configs that the gate may be holding back, if it no longer does. A config
// released counts as a push from when the change it carries reached the cache, the round trip included.
func (c *Cache) releaseHeld(n *node) {
	if n == nil {
		return
	}
	for st := range n.streams {
		for typeURL, w := range st.pending {
			if !c.gated(typeURL) || w.done {
				continue
			}
			start := c.pushStart
			if start.IsZero() {
				c.pushStart = w.heldSince
			}
			if c.respond(w) {
				c.forget(w)
			}
			c.pushStart = start
		}
	}
}

// mayConfigure reports whether a gated watch may answer: the node accepted every cluster its config names, or
// this is the node's first config and the node rejected a cluster or endpoints it names: then the config goes
// at once, cut to the topics whose clusters the node accepted. Envoy keeps a listener warming until its first
// config (initial_fetch_timeout 0s), and before its workers start a warming listener holds the whole server's
// initialization: one cluster the node rejects must not keep every listener of that Envoy down. A first config
// waiting for ACKs still on their way waits; a later config is held whole (the node routes by the one it has).
func (c *Cache) mayConfigure(w *watch) bool {
	w.firstConfig = nil
	missing := c.unaccepted(w.stream)
	if missing == nil {
		w.heldSince = time.Time{}
		return true
	}
	if w.heldSince.IsZero() {
		w.heldSince = c.pushStart
		// Held by the answer to a request: it carries a change if the scope changed since the last config went.
		if ts := w.stream.types[w.typeURL]; w.heldSince.IsZero() && ts != nil && !ts.sentAt.IsZero() && w.node.scope.changedAt.After(ts.sentAt) {
			w.heldSince = w.node.scope.changedAt
		}
	}
	if w.typeURL != translate.ExtensionType || !c.firstOfNode(w) || !rejecting(w.stream.node) {
		return false
	}
	first, err := c.ecdsOf(w.node.scope.topics, func(e *topicEntry) bool {
		return !slices.ContainsFunc(e.uses, func(cluster string) bool { _, ok := slices.BinarySearch(missing, cluster); return ok })
	})
	if err != nil {
		c.opts.Logger.Error("translate a first config", "node", w.node.id, "err", err)
		return false
	}
	w.firstConfig = first
	return true
}

// rejecting reports whether the node's newest cluster or endpoint stream stands on a rejection.
func rejecting(n *node) bool {
	for _, typeURL := range []string{translate.ClusterType, translate.EndpointType} {
		if st := n.newest(typeURL); st != nil && st.types[typeURL] != nil && st.types[typeURL].nackNonce != "" {
			return true
		}
	}
	return false
}

// firstOfNode reports whether a watch's stream holds no config of its type: a delta stream that neither was sent
// one nor declared one, a state-of-the-world stream that was sent none and asks with no version.
func (c *Cache) firstOfNode(w *watch) bool {
	st := w.stream
	if st.delta {
		_, has := st.held[w.typeURL][translate.ExtensionConfigName]
		return !has
	}
	return st.status(w.typeURL).sentNonce == "" && w.sotwReq.GetVersionInfo() == ""
}

// lookupFor is lookup for a watch: its first config when the gate cut one.
func (c *Cache) lookupFor(w *watch, name string) *resource {
	if w.firstConfig != nil && name == translate.ExtensionConfigName {
		return w.firstConfig
	}
	return c.lookup(w.typeURL, name, w.node)
}

// newest returns the node's latest stream that asks for a type. Only it counts: an older one may be the dead
// connection of an earlier incarnation of the same node (an Envoy restarted with its node id), which the server
// has not seen close yet, and what that one accepted the new one does not hold.
func (n *node) newest(typeURL string) *stream {
	var out *stream
	for st := range n.streams {
		if st.modes[typeURL] == nil {
			continue
		}
		if out == nil || st.opened.After(out.opened) || st.opened.Equal(out.opened) && st.id > out.id {
			out = st
		}
	}
	return out
}

// waitingFor returns, for the status of a stream's type, the clusters its pending config waits for.
func (c *Cache) waitingFor(st *stream, typeURL string) []string {
	if !c.gated(typeURL) || st.pending[typeURL] == nil || st.node == nil {
		return nil
	}
	return c.unaccepted(st)
}
