package cache

import (
	"slices"
	"time"

	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// watch is one pending request of one stream for one type. It answers at most once.
type watch struct {
	typeURL string
	node    *node
	stream  *stream
	forced  map[string]struct{} // names subscribed by this request: sent even when the client has them
	// dropWildcard: this request unsubscribed the wildcard, so names only it covered are removed.
	dropWildcard bool
	deltaReq     *gcpcache.DeltaRequest
	deltaCh      chan gcpcache.DeltaResponse
	// sotwReq is the state-of-the-world request the watch answers: the stream's latest with a current nonce, which
	// is not the request that created the watch when that one's nonce was stale.
	sotwReq *gcpcache.Request
	sotwCh  chan gcpcache.Response
	done    bool
	// For a config make-before-break holds (gate.go): a node's first config, cut to the topics whose clusters
	// it accepted (nil: the scope's config), and when the change it waits to carry reached the cache.
	firstConfig *resource
	heldSince   time.Time
}

// register records a watch's subscription, answers it at once if it can, and otherwise indexes it until a change
// concerns it. It returns the cancel function.
func (c *Cache) register(w *watch) func() {
	st := w.stream
	ts := st.status(w.typeURL)
	if w.deltaReq != nil {
		c.noteRefused(st, w.typeURL, w.deltaReq.GetResourceNamesSubscribe())
		c.subscribeDelta(st, w.deltaReq)
		wildcard := st.modes[w.typeURL].wildcard
		if ts.wildcard && !wildcard {
			st.dropWildcard[w.typeURL] = true // what only the wildcard covered must be removed
		}
		ts.wildcard = wildcard
	}
	c.materialise() // the routes the request subscribed to
	// Until an answer commits them, a stream keeps what its requests asked for: a watch replaced before it
	// answered (a held ECDS config, a full queue) must not lose a resend or a wildcard drop.
	w.dropWildcard = st.dropWildcard[w.typeURL]
	for name := range w.forced {
		if _, ok := st.subs[w.typeURL][name]; ok { // not if the same request unsubscribed it again
			addName(st.forced, w.typeURL, name)
		}
	}
	w.forced = st.forced[w.typeURL]
	if w.sotwReq != nil && isClusterType(w.typeURL) && st.held[w.typeURL] == nil && w.sotwReq.GetVersionInfo() != "" {
		// A state-of-the-world client back after a reconnect holds some earlier state the server cannot name: until
		// it has been answered, its wildcard answers keep every cluster it may still route to.
		st.resumed[w.typeURL] = true
	}
	answered := c.respond(w)
	if isClusterType(w.typeURL) {
		c.releaseHeld(st.node) // a state-of-the-world request may have shown the client holds what a config waits for
	}
	if answered {
		c.routesSubscribed(w)
		return func() {}
	}
	if old := st.pending[w.typeURL]; old != nil {
		c.forget(old)
	}
	st.pending[w.typeURL] = w
	w.node.watches[w] = struct{}{}
	c.routesSubscribed(w)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.forget(w)
	}
}

func setOf(names []string) map[string]struct{} {
	out := make(map[string]struct{}, len(names))
	for _, name := range names {
		out[name] = struct{}{}
	}
	return out
}

func isClusterType(typeURL string) bool {
	return typeURL == translate.ClusterType || typeURL == translate.EndpointType
}

// routesSubscribed answers, after a route request, the stream's other pending watches that it can change: routes
// subscribed (or unsubscribed) by name add (or drop) clusters in the stream's wildcard cluster and endpoint views
// and in the make-before-break gate of its listener and ECDS config (gate.go).
func (c *Cache) routesSubscribed(w *watch) {
	if w.typeURL != translate.RouteType {
		return
	}
	touched := map[*watch]struct{}{}
	for _, typeURL := range []string{translate.ClusterType, translate.EndpointType, translate.ExtensionType, translate.ListenerType} {
		if p := w.stream.pending[typeURL]; p != nil {
			touched[p] = struct{}{}
		}
	}
	c.respondAll(touched)
}

func (c *Cache) forget(w *watch) {
	w.done = true
	if w.stream.pending[w.typeURL] == w {
		delete(w.stream.pending, w.typeURL)
	}
	delete(w.node.watches, w)
}

// respondAll answers every touched watch that has something to say. Answering clusters releases no config: the
// gate waits for the client to accept them (gate.go).
func (c *Cache) respondAll(touched map[*watch]struct{}) {
	for w := range touched {
		if !w.done && c.respond(w) {
			c.forget(w)
		}
	}
}

// respond sends the watch its answer if the client lacks anything, and reports whether it did.
func (c *Cache) respond(w *watch) bool {
	if w.done || c.holding(w) {
		return false
	}
	if c.gated(w.typeURL) && !c.mayConfigure(w) {
		return false // make before break: the node has not accepted every cluster this config names (gate.go)
	}
	if w.deltaReq != nil {
		return c.respondDelta(w)
	}
	return c.respondSotw(w)
}

// queued records a response handed to the server, for the callback that sees it sent. A state-of-the-world
// response the server dropped (its watch replaced first) leaves an entry the next one sent skips; the list keeps
// the latest maxInflight.
func (c *Cache) queued(w *watch, version string, routes []string, carries *clusterChange) {
	ts := w.stream.status(w.typeURL)
	if len(ts.queued) == maxInflight {
		ts.queued[1].carries = ts.queued[0].carries.then(ts.queued[1].carries) // what accepting a later one implies
		ts.queued = slices.Delete(ts.queued, 0, 1)
	}
	ts.queued = append(ts.queued, queuedResponse{version: version, topics: c.carried(w, routes), pushedAt: c.pushStart, carries: carries})
}

// holding reports whether a stream's type is in its NACK backoff, and arms the timer that answers the watch
// pending when the backoff ends.
func (c *Cache) holding(w *watch) bool {
	ts := w.stream.types[w.typeURL]
	if ts == nil || ts.holdUntil.IsZero() {
		return false
	}
	wait := time.Until(ts.holdUntil)
	if wait <= 0 {
		return false
	}
	if ts.retry == nil {
		st, typeURL := w.stream, w.typeURL
		ts.retry = time.AfterFunc(wait, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			ts.retry = nil
			if c.streams[st.key] != st {
				return
			}
			if pending := st.pending[typeURL]; pending != nil {
				c.respondAll(map[*watch]struct{}{pending: {}})
			}
		})
	}
	return true
}

// carried returns the topics a response of w's type carries: the routes it names, or, for an ECDS config (or a
// listener with its routes inline), every topic of the node's scope.
func (c *Cache) carried(w *watch, routes []string) []string {
	switch {
	case w.typeURL == translate.RouteType:
		return routes
	case w.typeURL == translate.ExtensionType, w.typeURL == translate.ListenerType && c.opts.InlineRoutes:
		return w.node.scope.topics
	}
	return nil
}
