package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// watch is one pending request of one stream for one type. It answers at most once.
type watch struct {
	typeURL string
	node    *node
	stream  *stream
	sub     gcpcache.Subscription
	forced  map[string]struct{} // names subscribed by this request: sent even when the client has them
	// dropWildcard: this request unsubscribed the wildcard, so names only it covered are removed.
	dropWildcard bool
	deltaReq     *gcpcache.DeltaRequest
	deltaCh      chan gcpcache.DeltaResponse
	sotwReq      *gcpcache.Request
	sotwCh       chan gcpcache.Response
	done         bool
}

// CreateDeltaWatch implements cache.ConfigWatcher for delta streams.
func (c *Cache) CreateDeltaWatch(req *gcpcache.DeltaRequest, sub gcpcache.Subscription, ch chan gcpcache.DeltaResponse) (func(), error) {
	// A type rocketpilot does not serve gets what any unknown name gets (removed_resources for explicit names),
	// rather than an error that would end the client's whole ADS stream.
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streamOf(req, req.GetNode())
	w := &watch{typeURL: req.GetTypeUrl(), node: st.node, stream: st, sub: sub, deltaReq: req, deltaCh: ch}
	// A name subscribed again is sent again even if the client has it (it may have dropped it), unless the
	// client declared its version on a new stream (initial_resource_versions): then only a different one is sent.
	declared := req.GetInitialResourceVersions()
	if st.seen[req.GetTypeUrl()] {
		declared = nil // go-control-plane honours declared versions only on a type's first request
	}
	for _, name := range req.GetResourceNamesSubscribe() {
		if _, ok := declared[name]; ok {
			continue
		}
		if w.forced == nil {
			w.forced = make(map[string]struct{}, len(req.GetResourceNamesSubscribe()))
		}
		w.forced[name] = struct{}{}
	}
	return c.register(w), nil
}

// CreateWatch implements cache.ConfigWatcher for state-of-the-world streams.
func (c *Cache) CreateWatch(req *gcpcache.Request, sub gcpcache.Subscription, ch chan gcpcache.Response) (func(), error) {
	c.mu.Lock() // an unknown type is answered with no resources, as an unknown name would be
	defer c.mu.Unlock()
	st := c.streamOf(req, req.GetNode())
	w := &watch{typeURL: req.GetTypeUrl(), node: st.node, stream: st, sub: sub, sotwReq: req, sotwCh: ch}
	return c.register(w), nil
}

// register records a watch's subscription, answers it at once if it can, and otherwise indexes it until a change
// concerns it. It returns the cancel function.
func (c *Cache) register(w *watch) func() {
	st := w.stream
	if w.deltaReq != nil {
		c.subscribeDelta(st, w.deltaReq)
	} else {
		c.subscribeSotw(st, w.sotwReq)
	}
	ts := st.status(w.typeURL)
	// Until an answer commits them, a stream keeps what its requests asked for: a watch replaced before it
	// answered (a held ECDS config, a full queue) must not lose a resend or a wildcard drop.
	if ts.wildcard && !w.sub.IsWildcard() {
		st.dropWildcard[w.typeURL] = true // what only the wildcard covered must be removed
	}
	w.dropWildcard = st.dropWildcard[w.typeURL]
	if len(w.forced) > 0 {
		if st.forced[w.typeURL] == nil {
			st.forced[w.typeURL] = map[string]struct{}{}
		}
		for name := range w.forced {
			if _, ok := st.subs[w.typeURL][name]; ok { // not if the same request unsubscribed it again
				st.forced[w.typeURL][name] = struct{}{}
			}
		}
	}
	w.forced = st.forced[w.typeURL]
	ts.wildcard = w.sub.IsWildcard()
	if w.typeURL == translate.ClusterType || w.typeURL == translate.EndpointType {
		switch {
		case w.deltaReq != nil:
			// What the client holds, as go-control-plane tracks it (declared versions, sends, unsubscribes).
			st.noteSent(w.typeURL, w.sub.ReturnedResources())
		case st.sent[w.typeURL] == nil && w.sotwReq.GetVersionInfo() != "":
			// A state-of-the-world client back after a reconnect holds some earlier state the server cannot
			// name: until it has been answered, its wildcard answers keep every retained cluster.
			st.resumed[w.typeURL] = true
		}
	}
	if c.respond(w) {
		if w.typeURL == translate.ClusterType || w.typeURL == translate.EndpointType {
			c.respondAll(c.waitingOnClusters(st)) // configs held back for these clusters may go now
		}
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

// routesSubscribed answers, after a route request, the stream's other pending watches that it can change: routes
// subscribed (or unsubscribed) by name add (or drop) clusters in the stream's wildcard cluster and endpoint views
// and in the make-before-break gate of its listener and ECDS config.
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

// noteSent records the cluster or endpoint names a stream holds, for make-before-break. It copies: the maps
// go-control-plane hands over stay its own and change under its lock, not ours.
func (st *stream) noteSent(typeURL string, versions map[string]string) {
	names := make(map[string]struct{}, len(versions))
	for name, v := range versions {
		if v != "" {
			names[name] = struct{}{}
		}
	}
	st.sent[typeURL] = names
}

// respondAll answers every touched watch that has something to say; answering clusters can release a node's
// waiting listener and ECDS watches, which are then tried again.
func (c *Cache) respondAll(touched map[*watch]struct{}) {
	for len(touched) > 0 {
		next := map[*watch]struct{}{}
		for w := range touched {
			if w.done {
				continue
			}
			if c.respond(w) {
				c.forget(w)
				if w.typeURL == translate.ClusterType || w.typeURL == translate.EndpointType {
					maps.Copy(next, c.waitingOnClusters(w.stream))
				}
			}
		}
		touched = next
	}
}

// waitingOnClusters returns a stream's listener and ECDS watches, which make-before-break may be holding back.
func (c *Cache) waitingOnClusters(st *stream) map[*watch]struct{} {
	out := map[*watch]struct{}{}
	for _, typeURL := range []string{translate.ExtensionType, translate.ListenerType} {
		if w := st.pending[typeURL]; w != nil {
			out[w] = struct{}{}
		}
	}
	return out
}

// respond sends the watch its answer if the client lacks anything, and reports whether it did.
func (c *Cache) respond(w *watch) bool {
	if w.done || c.holding(w) {
		return false
	}
	if (w.typeURL == translate.ExtensionType || w.typeURL == translate.ListenerType) && !c.clustersSent(w.stream) {
		return false // make before break: the clusters this config names are not with the node yet
	}
	if w.deltaReq != nil {
		return c.respondDelta(w)
	}
	names := slices.Collect(maps.Keys(w.sub.SubscribedResources()))
	if w.sub.IsWildcard() {
		view := c.wildcard(w.typeURL, w.stream)
		for _, name := range view {
			delete(w.stream.leftAt, name)
		}
		names = append(names, view...)
		if w.stream.resumed[w.typeURL] {
			names = append(names, c.retainedNames()...)
		} else {
			for name := range w.stream.sent[w.typeURL] {
				if c.keep(w.stream, w.typeURL, name) { // a state-of-the-world answer that left it out would remove it
					names = append(names, name)
				}
			}
		}
	}
	resp, ok := c.sotwResponse(w, names, false)
	if !ok {
		return false
	}
	select {
	case w.sotwCh <- resp:
	default:
		return false
	}
	w.done = true
	ts := w.stream.status(w.typeURL)
	ts.pushedAt = c.pushStart
	var routes []string
	if w.typeURL == translate.RouteType {
		routes = slices.Collect(maps.Keys(resp.GetReturnedResources()))
	}
	ts.queuedTopics = c.carried(w, routes)
	if w.typeURL == translate.ClusterType || w.typeURL == translate.EndpointType {
		w.stream.noteSent(w.typeURL, resp.GetReturnedResources())
		delete(w.stream.resumed, w.typeURL)
	}
	return true
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

// clustersSent reports whether every cluster a stream uses has been sent to its cluster and endpoint
// subscriptions. A stream that subscribes to neither gets its config without waiting.
func (c *Cache) clustersSent(st *stream) bool {
	used := c.used(st)
	for _, typeURL := range []string{translate.ClusterType, translate.EndpointType} {
		sent, subscribed := st.sent[typeURL]
		if !subscribed {
			continue
		}
		for name := range used {
			if _, ok := sent[name]; !ok {
				return false
			}
		}
	}
	return true
}

// respondDelta answers a delta watch. It looks at the names that can differ from what the client holds: on a
// stream's first answer of a type, every subscribed name; later, the names subscribed by this request and those
// changed since the last answer; plus, for a wildcard subscription, the node's view. Its cost follows the change,
// not the size of the subscription.
func (c *Cache) respondDelta(w *watch) bool {
	st := w.stream
	returned := w.sub.ReturnedResources()
	explicit := w.sub.SubscribedResources()
	var names []string
	if !st.seen[w.typeURL] {
		names = slices.Collect(maps.Keys(explicit))
	} else {
		names = slices.Collect(maps.Keys(w.forced))
		for name := range st.dirty[w.typeURL] {
			// Only names the stream subscribes to by name: a change marks a node's listener and ECDS config on all
			// its streams, subscribed or not, and the wildcard view (below) adds what the wildcard covers.
			if _, ok := explicit[name]; ok {
				names = append(names, name)
			}
		}
	}
	wildcard := w.sub.IsWildcard()
	if wildcard {
		names = append(names, c.wildcard(w.typeURL, st)...)
	}
	absent := st.absent[w.typeURL]
	if absent == nil {
		absent = map[string]struct{}{}
		st.absent[w.typeURL] = absent
	}
	next := make(map[string]string, len(returned)+len(names))
	maps.Copy(next, returned)
	want := make(map[string]struct{}, len(names))
	var send []*resource
	var removed []string
	var nowAbsent, nowPresent []string
	for _, name := range names {
		if _, dup := want[name]; dup {
			continue
		}
		want[name] = struct{}{}
		delete(st.leftAt, name) // in the view (again)
		_, forced := w.forced[name]
		had, known := returned[name]
		if r := c.lookup(w.typeURL, name, w.node); r != nil {
			if had != r.version || forced {
				send = append(send, r)
				next[name] = r.version
			}
			nowPresent = append(nowPresent, name)
			continue
		}
		// Absent. A name subscribed explicitly is answered in removed_resources once (the stream remembers it),
		// and sent when it appears; a wildcard-only name the client holds is removed.
		_, isExplicit := explicit[name]
		_, told := absent[name]
		switch {
		case isExplicit && (!told || forced):
			removed = append(removed, name)
			next[name] = ""
			nowAbsent = append(nowAbsent, name)
		case !isExplicit && known:
			removed = append(removed, name)
			delete(next, name)
		}
	}
	if wildcard || w.dropWildcard {
		// Names the wildcard view no longer covers, and no explicit subscription holds, are removed; retained
		// clusters stay until their retention ends, as connections opened before a change may still use them.
		for name := range returned {
			if _, ok := want[name]; ok {
				continue
			}
			if _, ok := explicit[name]; ok {
				continue
			}
			// A name the client itself let go (unsubscribed, or the wildcard dropped) goes at once; one the model
			// moved the node's topics away from is kept for the retention.
			dropped := w.dropWildcard || slices.Contains(w.deltaReq.GetResourceNamesUnsubscribe(), name)
			if !dropped && c.keep(st, w.typeURL, name) { // keep covers retained clusters too
				continue
			}
			removed = append(removed, name)
			delete(next, name)
		}
	}
	commit := func() {
		for _, name := range nowAbsent {
			absent[name] = struct{}{}
		}
		for _, name := range nowPresent {
			delete(absent, name)
		}
		delete(st.forced, w.typeURL)
		delete(st.dropWildcard, w.typeURL)
	}
	if len(send) == 0 && len(removed) == 0 {
		commit()
		st.seen[w.typeURL] = true
		delete(st.dirty, w.typeURL) // everything that changed is already with the client
		return false
	}
	slices.SortFunc(send, func(a, b *resource) int { return compareNames(a.name, b.name) })
	slices.Sort(removed)
	out := &discovery.DeltaDiscoveryResponse{
		TypeUrl:           w.typeURL,
		SystemVersionInfo: versionString(c.version),
		RemovedResources:  removed,
	}
	for _, r := range send {
		out.Resources = append(out.Resources, &discovery.Resource{
			Name:     r.name,
			Version:  r.version,
			Resource: &anypb.Any{TypeUrl: w.typeURL, Value: r.body},
		})
	}
	resp := &gcpcache.DeltaPassthroughResponse{DeltaRequest: w.deltaReq, NextVersionMap: next, DeltaDiscoveryResponse: out}
	select {
	case w.deltaCh <- resp:
	default:
		return false // the stream's queue is full: stay pending and answer with the latest state later
	}
	commit()
	st.seen[w.typeURL] = true
	delete(st.dirty, w.typeURL)
	w.done = true
	ts := st.status(w.typeURL)
	ts.pushedAt = c.pushStart
	if w.typeURL == translate.RouteType {
		names := make([]string, len(send))
		for i, r := range send {
			names[i] = r.name
		}
		ts.queuedTopics = names
	} else {
		ts.queuedTopics = c.carried(w, nil)
	}
	if w.typeURL == translate.ClusterType || w.typeURL == translate.EndpointType {
		st.noteSent(w.typeURL, next)
	}
	return true
}

// retainedNames returns every cluster kept after its broker set went away.
func (c *Cache) retainedNames() []string {
	var out []string
	for name, e := range c.clusters {
		if !e.retiredAt.IsZero() {
			out = append(out, name)
		}
	}
	return out
}

// keep reports whether a stream keeps a cluster or endpoint name its wildcard view no longer covers: a cluster
// retired from the model (retained), or a live one that left the stream's view less than the retention ago.
// Connections opened before the change may still route to either.
func (c *Cache) keep(st *stream, typeURL, name string) bool {
	if c.retained(typeURL, name) {
		return true
	}
	if typeURL != translate.ClusterType && typeURL != translate.EndpointType || c.clusters[name] == nil {
		return false
	}
	left, ok := st.leftAt[name]
	if !ok {
		st.leftAt[name] = time.Now()
		return true
	}
	return time.Since(left) < c.opts.ClusterRetention
}

// retained reports whether a cluster or endpoint name belongs to a cluster kept after its broker set went away.
func (c *Cache) retained(typeURL, name string) bool {
	if typeURL != translate.ClusterType && typeURL != translate.EndpointType {
		return false
	}
	e := c.clusters[name]
	return e != nil && !e.retiredAt.IsZero()
}

func compareNames(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sotwResponse builds the state-of-the-world answer for names. Unless always, it reports false when the client
// already has this exact state (its version_info matches), or when the client rejected this very state.
func (c *Cache) sotwResponse(w *watch, names []string, always bool) (gcpcache.Response, bool) {
	slices.Sort(names)
	names = slices.Compact(names)
	var rs []*resource
	h := sha256.New()
	for _, name := range names {
		if r := c.lookup(w.typeURL, name, w.node); r != nil {
			rs = append(rs, r)
			h.Write([]byte(r.name))
			h.Write([]byte{0})
			h.Write([]byte(r.version))
			h.Write([]byte{0})
		}
	}
	version := hex.EncodeToString(h.Sum(nil)[:8])
	if !always {
		if w.sotwReq.GetVersionInfo() == version {
			if w.typeURL == translate.ClusterType || w.typeURL == translate.EndpointType {
				held := make(map[string]string, len(rs)) // the client provably holds exactly these
				for _, r := range rs {
					held[r.name] = r.version
				}
				w.stream.noteSent(w.typeURL, held)
			}
			return nil, false
		}
		if w.sotwReq.GetErrorDetail() != nil && w.stream.lastSentVersion(w.typeURL) == version {
			return nil, false // rejected: keep the last good state until something changes
		}
	}
	out := &discovery.DiscoveryResponse{VersionInfo: version, TypeUrl: w.typeURL}
	returned := make(map[string]string, len(rs))
	for _, r := range rs {
		out.Resources = append(out.Resources, &anypb.Any{TypeUrl: w.typeURL, Value: r.body})
		returned[r.name] = r.version
	}
	return &gcpcache.PassthroughResponse{Request: w.sotwReq, DiscoveryResponse: out, ReturnedResources: returned}, true
}
