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

// CreateDeltaWatch implements cache.ConfigWatcher for delta streams.
// go-control-plane's subscription state (sub) is never read: the cache keeps its own.
func (c *Cache) CreateDeltaWatch(req *gcpcache.DeltaRequest, _ gcpcache.Subscription, ch chan gcpcache.DeltaResponse) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, _ := c.streamOf(req, req.GetNode())
	if !Known(req.GetTypeUrl()) {
		// A type rocketpilot does not serve gets what any unknown name gets, removed_resources for the names asked,
		// rather than an error that would end the client's whole ADS stream; nothing about it is kept but names.
		c.answerUnknownDelta(st, req, ch)
		return func() {}, nil
	}
	w := &watch{typeURL: req.GetTypeUrl(), node: st.node, stream: st, deltaReq: req, deltaCh: ch}
	// A name subscribed again is sent again even if the client has it (it may have dropped it), unless the
	// client declared its version on a new stream (initial_resource_versions): then only a different one is sent.
	var declared map[string]string
	if st.modes[req.GetTypeUrl()] == nil {
		declared = req.GetInitialResourceVersions() // honoured on a type's first request only, as go-control-plane does
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
func (c *Cache) CreateWatch(req *gcpcache.Request, _ gcpcache.Subscription, ch chan gcpcache.Response) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, stale := c.streamOf(req, req.GetNode())
	if !Known(req.GetTypeUrl()) {
		// Answered with no resources, as an unknown name would be. Nothing will change: no watch is kept.
		if req.GetVersionInfo() != emptySotwVersion {
			select {
			case ch <- &gcpcache.PassthroughResponse{Request: req, ReturnedResources: map[string]string{},
				DiscoveryResponse: &discovery.DiscoveryResponse{VersionInfo: emptySotwVersion, TypeUrl: req.GetTypeUrl()}}:
			default:
			}
		}
		return func() {}, nil
	}
	w := &watch{typeURL: req.GetTypeUrl(), node: st.node, stream: st, sotwReq: req, sotwCh: ch}
	if last := st.lastSotw[w.typeURL]; stale && last != nil {
		w.sotwReq = last // ignored: the watch answers as the last current request's would
	} else {
		st.lastSotw[w.typeURL] = req
		c.subscribeSotw(st, req)
	}
	return c.register(w), nil
}

// answerUnknownDelta answers a delta request of a type rocketpilot does not serve: removed_resources for the
// names it subscribed.
func (c *Cache) answerUnknownDelta(st *stream, req *gcpcache.DeltaRequest, ch chan gcpcache.DeltaResponse) {
	removed := st.askUnknown(req.GetTypeUrl(), req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe())
	if len(removed) == 0 {
		return
	}
	select {
	case ch <- &gcpcache.DeltaPassthroughResponse{DeltaRequest: req, NextVersionMap: map[string]string{},
		DeltaDiscoveryResponse: &discovery.DeltaDiscoveryResponse{TypeUrl: req.GetTypeUrl(), SystemVersionInfo: versionString(c.version),
			RemovedResources: removed}}:
	default: // the server drains its queue before each request: not reached
		c.opts.Logger.Warn("xDS response queue full: an unknown type's answer dropped", "node", nodeID(st), "type", req.GetTypeUrl())
	}
}

// register records a watch's subscription, answers it at once if it can, and otherwise indexes it until a change
// concerns it. It returns the cancel function.
func (c *Cache) register(w *watch) func() {
	st := w.stream
	ts := st.status(w.typeURL)
	if w.deltaReq != nil {
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
	st := w.stream
	names := slices.Collect(maps.Keys(st.subs[w.typeURL]))
	if st.status(w.typeURL).wildcard {
		view := c.wildcard(w.typeURL, st)
		c.inView(st, view)
		names = append(names, view...)
		if st.resumed[w.typeURL] {
			names = append(names, c.mayStillRoute(st)...)
		} else if held := st.held[w.typeURL]; len(held) > 0 {
			inView := setOf(view)
			for name := range held {
				if _, ok := inView[name]; !ok && c.keep(st, w.typeURL, name) { // an answer that left it out would remove it
					names = append(names, name)
				}
			}
		}
	}
	resp, version, returned, ok := c.sotwResponse(w, names, false)
	if !ok {
		return false
	}
	select {
	case w.sotwCh <- resp:
	default:
		return false
	}
	w.done = true // from here on resp is the server's: the cache reads only its own copies
	var routes []string
	var carries *clusterChange
	switch {
	case w.typeURL == translate.RouteType:
		routes = slices.Collect(maps.Keys(returned))
	case isClusterType(w.typeURL):
		carries = &clusterChange{whole: true, set: maps.Clone(returned)}
	}
	c.queued(w, version, routes, carries)
	if isClusterType(w.typeURL) {
		st.held[w.typeURL] = returned
		delete(st.resumed, w.typeURL)
	}
	return true
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

// respondDelta answers a delta watch from the stream's record of what the client holds. It looks at the names
// that can differ from that: on a stream's first answer of a type, every subscribed name; later, the names
// subscribed again, released or changed since the last answer; plus, for a wildcard subscription, the node's view.
// Its cost follows the change, not the size of the subscription (but for a wildcard, a pass over what is held).
func (c *Cache) respondDelta(w *watch) bool {
	st, typeURL := w.stream, w.typeURL
	held, explicit, released := st.held[typeURL], st.subs[typeURL], st.released[typeURL]
	var names []string
	if !st.seen[typeURL] {
		names = slices.Collect(maps.Keys(explicit))
	} else {
		names = slices.Collect(maps.Keys(w.forced))
		for name := range st.dirty[typeURL] {
			// Only names the stream subscribes to by name: a change marks a node's listener and ECDS config on all
			// its streams, subscribed or not, and the wildcard view (below) adds what the wildcard covers.
			if _, ok := explicit[name]; ok {
				names = append(names, name)
			}
		}
	}
	wildcard := st.status(typeURL).wildcard
	var view []string
	if wildcard {
		view = c.wildcard(typeURL, st)
		c.inView(st, view)
	}
	names = append(names, view...)
	if len(released) > 0 {
		inView := setOf(view)
		for name := range released {
			_, isExplicit := explicit[name]
			if _, ok := inView[name]; !ok && !isExplicit {
				continue // released and not covered: removed below, as what only a wildcard covered
			}
			names = append(names, name)
		}
	}
	absent := st.absent[typeURL]
	if absent == nil {
		absent = map[string]struct{}{}
		st.absent[typeURL] = absent
	}
	want := make(map[string]struct{}, len(names))
	var send []*resource
	var removed, nowAbsent, nowPresent []string
	for _, name := range names {
		if _, dup := want[name]; dup {
			continue
		}
		want[name] = struct{}{}
		_, forced := w.forced[name]
		_, rel := released[name]
		had, holds := held[name]
		if r := c.lookupFor(w, name); r != nil {
			if had != r.version || forced || rel {
				send = append(send, r)
			}
			nowPresent = append(nowPresent, name)
			continue
		}
		// Absent. A name subscribed explicitly is answered in removed_resources once (the stream remembers it),
		// and sent when it appears; a wildcard-only name the client holds is removed. A cluster the client holds
		// that this replica does not know is kept for the retention, as connections may still route to it.
		_, isExplicit := explicit[name]
		_, told := absent[name]
		switch {
		case holds && !rel && c.keep(st, typeURL, name):
		case isExplicit && (!told || forced):
			removed = append(removed, name)
			nowAbsent = append(nowAbsent, name)
		case !isExplicit && holds:
			removed = append(removed, name)
		}
	}
	if wildcard || w.dropWildcard {
		// Names the wildcard view no longer covers, and no explicit subscription holds, are removed; a cluster that
		// left the node's view stays until its retention ends, as connections opened before a change may still use
		// it. A name the client itself let go (released, or covered only by a dropped wildcard) goes at once.
		for name := range held {
			if _, ok := want[name]; ok {
				continue
			}
			if _, ok := explicit[name]; ok {
				continue
			}
			if _, rel := released[name]; !rel && !w.dropWildcard && c.keep(st, typeURL, name) {
				continue
			}
			removed = append(removed, name)
		}
	}
	commit := func() {
		for _, r := range send {
			held[r.name] = r.version
		}
		for _, name := range removed {
			delete(held, name)
		}
		for _, name := range nowAbsent {
			absent[name] = struct{}{}
		}
		for _, name := range nowPresent {
			delete(absent, name)
		}
		delete(st.forced, typeURL)
		delete(st.dropWildcard, typeURL)
		delete(st.released, typeURL)
		st.seen[typeURL] = true
		delete(st.dirty, typeURL) // everything that changed is with the client now
	}
	if len(send) == 0 && len(removed) == 0 {
		commit()
		return false
	}
	slices.SortFunc(send, func(a, b *resource) int { return compareNames(a.name, b.name) })
	slices.Sort(removed)
	out := &discovery.DeltaDiscoveryResponse{
		TypeUrl:           typeURL,
		SystemVersionInfo: versionString(c.version),
		RemovedResources:  removed,
	}
	for _, r := range send {
		out.Resources = append(out.Resources, &discovery.Resource{
			Name:     r.name,
			Version:  r.version,
			Resource: &anypb.Any{TypeUrl: typeURL, Value: r.body},
		})
	}
	// go-control-plane keeps NextVersionMap as its own record of the subscription; the cache never reads it back.
	resp := &gcpcache.DeltaPassthroughResponse{DeltaRequest: w.deltaReq, NextVersionMap: map[string]string{}, DeltaDiscoveryResponse: out}
	select {
	case w.deltaCh <- resp:
	default:
		return false // the stream's queue is full: stay pending and answer with the latest state later
	}
	commit()
	w.done = true
	var routes []string
	var carries *clusterChange
	switch {
	case typeURL == translate.RouteType:
		routes = make([]string, len(send))
		for i, r := range send {
			routes[i] = r.name
		}
	case isClusterType(typeURL):
		carries = &clusterChange{set: make(map[string]string, len(send)), removed: removed}
		for _, r := range send {
			carries.set[r.name] = r.version
		}
	}
	c.queued(w, "", routes, carries)
	return true
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

// emptySotwVersion is the version of a state-of-the-world answer with no resources.
var emptySotwVersion = sotwVersion(nil)

// sotwVersion is a state-of-the-world answer's version_info: a hash of its resources' names and versions.
func sotwVersion(rs []*resource) string {
	h := sha256.New()
	for _, r := range rs {
		h.Write([]byte(r.name))
		h.Write([]byte{0})
		h.Write([]byte(r.version))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// sotwResponse builds the state-of-the-world answer for names, with its version and a copy of the names and versions
// it returns. Unless always, it reports false when the client already has this exact state (its version_info
// matches), or when this is the state the client rejected.
func (c *Cache) sotwResponse(w *watch, names []string, always bool) (gcpcache.Response, string, map[string]string, bool) {
	slices.Sort(names)
	names = slices.Compact(names)
	var rs []*resource
	for _, name := range names {
		if r := c.lookupFor(w, name); r != nil {
			rs = append(rs, r)
		}
	}
	version := sotwVersion(rs)
	if !always {
		if w.sotwReq.GetVersionInfo() == version {
			if isClusterType(w.typeURL) {
				held := make(map[string]string, len(rs)) // the client provably holds exactly these
				for _, r := range rs {
					held[r.name] = r.version
				}
				w.stream.held[w.typeURL] = held
				w.stream.accepted[w.typeURL] = maps.Clone(held) // its request names the version: it accepted it
				delete(w.stream.resumed, w.typeURL)
			}
			return nil, "", nil, false
		}
		if ts := w.stream.status(w.typeURL); ts.nackNonce != "" && ts.rejectedVersion == version {
			return nil, "", nil, false // rejected: keep the last good state until something changes
		}
	}
	out := &discovery.DiscoveryResponse{VersionInfo: version, TypeUrl: w.typeURL}
	returned := make(map[string]string, len(rs))
	for _, r := range rs {
		out.Resources = append(out.Resources, &anypb.Any{TypeUrl: w.typeURL, Value: r.body})
		returned[r.name] = r.version
	}
	resp := &gcpcache.PassthroughResponse{Request: w.sotwReq, DiscoveryResponse: out, ReturnedResources: maps.Clone(returned)}
	return resp, version, returned, true
}
