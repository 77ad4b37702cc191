package cache

import (
	"slices"

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
// The gate is per node: Envoy's per-type services carry clusters, endpoints and the config on different streams
// of the same node (for each type, the node's newest stream that asks for it counts). A node that takes clusters
// by CDS waits for their endpoints too, even before it asked for them: every cluster rocketpilot serves is an EDS
// cluster, and Envoy asks for its endpoints only once it took the cluster (on the per-type services, on a stream
// of its own). A node that asks for neither type waits for nothing (a library that asks only for routes and the
// config).

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

// releaseHeld answers the node's configs that the gate may be holding back, if it no longer does.
func (c *Cache) releaseHeld(n *node) {
	if n == nil {
		return
	}
	held := map[*watch]struct{}{}
	for st := range n.streams {
		for typeURL, w := range st.pending {
			if c.gated(typeURL) {
				held[w] = struct{}{}
			}
		}
	}
	c.respondAll(held)
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
