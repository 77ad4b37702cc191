package cache

import (
	"maps"
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// The delta responder: an answer carries what changed against the stream's own record of what the client holds
// (stream.held), and removed_resources for names gone, absent or let go.

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

// respondDelta answers a delta watch from the stream's record of what the client holds, in four steps: the names
// to look at, what to do with each, the response, and, once it is queued, the record. Its cost follows the change,
// not the size of the subscription (but for a wildcard, a pass over what is held).
func (c *Cache) respondDelta(w *watch) bool {
	names, wildcard := c.deltaNames(w)
	a := c.classifyDelta(w, names, wildcard)
	if len(a.send) == 0 && len(a.removed) == 0 {
		c.commitDelta(w, a)
		return false
	}
	resp := c.buildDelta(w, a)
	select {
	case w.deltaCh <- resp:
	default:
		return false // the stream's queue is full: stay pending and answer with the latest state later
	}
	c.commitDelta(w, a)
	w.done = true
	c.queuedDelta(w, a)
	return true
}

// deltaAnswer is what classifyDelta decided for a delta watch, and the records of the stream it changes.
type deltaAnswer struct {
	held   map[string]string   // what the client holds of the type (stream.held)
	absent map[string]struct{} // explicit names answered in removed_resources, until they appear (stream.absent)
	// send and removed are the answer's resources and removed_resources, sorted; nowAbsent the explicit names it
	// answers absent, nowPresent the names looked at that exist.
	send                           []*resource
	removed, nowAbsent, nowPresent []string
}

// deltaNames returns the names that can differ from what the client holds, and whether the type is a wildcard
// subscription: on a stream's first answer of a type, every subscribed name; later, the names subscribed again,
// released or changed since the last answer; plus, for a wildcard subscription, the node's view.
func (c *Cache) deltaNames(w *watch) ([]string, bool) {
	st, typeURL := w.stream, w.typeURL
	explicit, released := st.subs[typeURL], st.released[typeURL]
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
				continue // released and not covered: removed by classifyDelta, as what only a wildcard covered
			}
			names = append(names, name)
		}
	}
	return names, wildcard
}

// classifyDelta decides for each name looked at whether to send it, remove it, answer it absent or keep it as the
// client holds it; under a wildcard (or one just dropped) it also removes what the view no longer covers.
func (c *Cache) classifyDelta(w *watch, names []string, wildcard bool) *deltaAnswer {
	st, typeURL := w.stream, w.typeURL
	explicit, released := st.subs[typeURL], st.released[typeURL]
	a := &deltaAnswer{held: st.held[typeURL], absent: st.absent[typeURL]}
	if a.absent == nil {
		a.absent = map[string]struct{}{}
		st.absent[typeURL] = a.absent
	}
	want := make(map[string]struct{}, len(names))
	for _, name := range names {
		if _, dup := want[name]; dup {
			continue
		}
		want[name] = struct{}{}
		_, forced := w.forced[name]
		_, rel := released[name]
		had, holds := a.held[name]
		if r := c.lookupFor(w, name); r != nil {
			if had != r.version || forced || rel {
				a.send = append(a.send, r)
			}
			a.nowPresent = append(a.nowPresent, name)
			continue
		}
		// Absent. A name subscribed explicitly is answered in removed_resources once (the stream remembers it),
		// and sent when it appears; a wildcard-only name the client holds is removed. A cluster the client holds
		// that this replica does not know is kept for the retention, as connections may still route to it.
		_, isExplicit := explicit[name]
		_, told := a.absent[name]
		switch {
		case holds && !rel && c.keep(st, typeURL, name):
		case isExplicit && (!told || forced):
			a.removed = append(a.removed, name)
			a.nowAbsent = append(a.nowAbsent, name)
		case !isExplicit && holds:
			a.removed = append(a.removed, name)
		}
	}
	if wildcard || w.dropWildcard {
		a.removed = c.uncovered(w, a.held, want, a.removed)
	}
	slices.SortFunc(a.send, func(x, y *resource) int { return compareNames(x.name, y.name) })
	slices.Sort(a.removed)
	return a
}

// uncovered appends to removed the names held that no name looked at (want) or explicit subscription covers: the
// wildcard view no longer does. A cluster that left the node's view stays until its retention ends, as
// connections opened before a change may still use it. A name the client itself let go (released, or covered
// only by a dropped wildcard) goes at once.
func (c *Cache) uncovered(w *watch, held map[string]string, want map[string]struct{}, removed []string) []string {
	st, typeURL := w.stream, w.typeURL
	explicit, released := st.subs[typeURL], st.released[typeURL]
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
	return removed
}

// buildDelta builds the response of a classified answer.
func (c *Cache) buildDelta(w *watch, a *deltaAnswer) *gcpcache.DeltaPassthroughResponse {
	out := &discovery.DeltaDiscoveryResponse{
		TypeUrl:           w.typeURL,
		SystemVersionInfo: versionString(c.version),
		RemovedResources:  a.removed,
	}
	for _, r := range a.send {
		out.Resources = append(out.Resources, r.deltaMember(w.typeURL))
	}
	// go-control-plane keeps NextVersionMap as its own record of the subscription; the cache never reads it back.
	return &gcpcache.DeltaPassthroughResponse{DeltaRequest: w.deltaReq, NextVersionMap: map[string]string{}, DeltaDiscoveryResponse: out}
}

// commitDelta makes the answer the stream's record of what the client holds: once it is queued, or at once when it
// has nothing to send.
func (c *Cache) commitDelta(w *watch, a *deltaAnswer) {
	st, typeURL := w.stream, w.typeURL
	for _, r := range a.send {
		a.held[r.name] = r.version
	}
	for _, name := range a.removed {
		delete(a.held, name)
	}
	for _, name := range a.nowAbsent {
		a.absent[name] = struct{}{}
	}
	for _, name := range a.nowPresent {
		delete(a.absent, name)
	}
	delete(st.forced, typeURL)
	delete(st.dropWildcard, typeURL)
	delete(st.released, typeURL)
	st.seen[typeURL] = true
	delete(st.dirty, typeURL) // everything that changed is with the client now
}

// queuedDelta records a queued delta answer for the callback that sees it sent: the routes it carries, or for
// clusters and endpoints what the client holds once it accepts it.
func (c *Cache) queuedDelta(w *watch, a *deltaAnswer) {
	var routes []string
	var carries *clusterChange
	switch {
	case w.typeURL == translate.RouteType:
		routes = make([]string, len(a.send))
		for i, r := range a.send {
			routes[i] = r.name
		}
	case isClusterType(w.typeURL):
		carries = &clusterChange{set: make(map[string]string, len(a.send)), removed: a.removed}
		for _, r := range a.send {
			carries.set[r.name] = r.version
		}
	}
	c.queued(w, "", routes, carries)
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
