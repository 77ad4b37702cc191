package cache

import (
	"maps"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// streamKey identifies a stream: go-control-plane's delta and state-of-the-world servers number their streams
// independently, so an id alone is ambiguous.
type streamKey struct {
	delta bool
	id    int64
}

// stream is what the cache knows of one xDS stream, learned through the server callbacks. Everything in it is the
// cache's own record: go-control-plane's subscription state is updated on the server's goroutine when it sends a
// response, which can be after the cache computed the next one (issue 14), so the cache never reads it back.
type stream struct {
	key    streamKey
	id     int64
	delta  bool
	opened time.Time
	node   *node
	// defaultType is the type of a per-type service's stream ("" for ADS): its requests may leave type_url out.
	defaultType string
	types       map[string]*typeStatus
	subs        map[string]map[string]struct{} // type → names subscribed by name
	dirty       map[string]map[string]struct{} // type → subscribed names changed since the last answer
	pending     map[string]*watch              // type → the watch waiting for a change
	// requests are the stream's requests in c.pending (between the request callback and the watch): kept here so
	// that a stream clears its own without a pass over every stream's (10,000 streams ACK a change at once).
	requests []any
	seen     map[string]bool                // type → evaluated in full once; later answers look only at dirty names
	absent   map[string]map[string]struct{} // type → explicit names answered in removed_resources, until they appear
	// held is what the client holds, type → name → version, as of the last response the cache queued: for delta
	// streams every type (from initial_resource_versions, then each response and unsubscribe), for state-of-the-world
	// streams clusters and endpoints (make-before-break). A type is present once the stream asked for it (delta) or
	// was answered (state of the world).
	held map[string]map[string]string
	// accepted is what the client has acknowledged of clusters and endpoints, type → name → version: make-before-break
	// sends a config that names a cluster only once the node accepted the cluster and its endpoints (gate.go).
	accepted map[string]map[string]string
	resumed  map[string]bool // SotW type whose first request carried a version: state unknown
	// lastSotw is a state-of-the-world type's latest request with a current nonce: a request with a stale nonce is
	// ignored, and its watch answers as this one would.
	lastSotw map[string]*gcpcache.Request
	// What requests asked for, kept until an answer commits it (a watch replaced before it answers, in a NACK
	// backoff or behind make-before-break, must not lose it): names to send even if held (subscribed again),
	// whether the wildcard was dropped (what only it covered goes), and names unsubscribed under a wildcard
	// (sent again if the wildcard covers them, removed at once if not).
	forced       map[string]map[string]struct{}
	dropWildcard map[string]bool
	released     map[string]map[string]struct{}
	// modes follow go-control-plane's subscription rules per type (legacy wildcard and wildcard), so that the cache
	// needs nothing of its subscription state.
	modes map[string]*subMode
	// unknown names are the types rocketpilot does not serve that the stream asked for (at most MaxUnknownTypes),
	// with their names (for the subscription limit); nothing else is kept for them.
	unknown map[string]map[string]struct{}
}

// subMode is one type's subscription mode, following go-control-plane's stream.Subscription.
type subMode struct {
	legacy   bool // the type's first request named nothing: wildcard until a request names something
	wildcard bool
}

func (s *stream) markDirty(typeURL, name string) {
	d := s.dirty[typeURL]
	if d == nil {
		d = map[string]struct{}{}
		s.dirty[typeURL] = d
	}
	d[name] = struct{}{}
}

func addName(m map[string]map[string]struct{}, typeURL, name string) {
	names := m[typeURL]
	if names == nil {
		names = map[string]struct{}{}
		m[typeURL] = names
	}
	names[name] = struct{}{}
}

// typeStatus is one stream's exchange of one type.
type typeStatus struct {
	wildcard     bool
	sentNonce    string
	sentVersion  string
	sentAt       time.Time
	ackedVersion string
	ackedNonce   string
	// The rejection that stands: the nonce, error, version and topics of the response the client rejected; only
	// the acceptance of a response sent after the NACK arrived (sequence number above nackSeq) clears it.
	nackNonce, nackError, rejectedVersion string
	rejectedTopics                        []string
	nackSeq                               uint64
	// missingExtension is, when the standing rejection says the client lacks an extension, that extension.
	missingExtension string
	// NACK backoff: NACKs in a row, no response before holdUntil, and the timer that answers when it passes.
	nacks     int
	holdUntil time.Time
	retry     *time.Timer
	// queued are the responses handed to the server and not yet sent, in order; inflight those sent and not yet
	// acknowledged or rejected (the latest maxInflight): a client may decide on a response after a newer one of
	// the type went out.
	queued   []queuedResponse
	inflight []sentResponse
	seq      uint64 // responses of this type sent on the stream
}

// maxInflight bounds the sent responses a stream's type remembers until the client decides on them.
const maxInflight = 16

// queuedResponse is what the cache knows of a response it queued: the topics it carries (routes by name; a
// listener or ECDS config every topic of its scope), when the change behind it reached the cache (zero for a
// request's answer), for state of the world its version, which identifies it, and for clusters and endpoints what
// the client holds once it accepts it.
type queuedResponse struct {
	version  string
	topics   []string
	pushedAt time.Time
	carries  *clusterChange
}

type sentResponse struct {
	nonce, version string
	seq            uint64
	topics         []string
	carries        *clusterChange
	rejected       bool // the client rejected it: an ACK of a later response does not accept it
}

// clusterChange is what a response of clusters or endpoints does to what the client holds: a state-of-the-world
// response replaces it all (whole), a delta response sets some names and removes others.
type clusterChange struct {
	whole   bool
	set     map[string]string
	removed []string
}

// then returns the change of c followed by next: what a client that accepts both holds.
func (c *clusterChange) then(next *clusterChange) *clusterChange {
	switch {
	case c == nil, next != nil && next.whole:
		return next
	case next == nil:
		return c
	}
	out := &clusterChange{whole: c.whole, set: maps.Clone(c.set)}
	if out.set == nil {
		out.set = map[string]string{}
	}
	for _, name := range c.removed {
		if _, ok := next.set[name]; !ok {
			out.removed = append(out.removed, name)
		}
	}
	for _, name := range next.removed {
		delete(out.set, name)
		out.removed = append(out.removed, name)
	}
	maps.Copy(out.set, next.set)
	return out
}

// cdsRejected starts the error Envoy's CDS gives when it rejects clusters of a response: each one it rejects
// follows as "name: reason", joined by ", " (CdsApiHelper::onConfigUpdate, source/common/upstream/cds_api_helper.cc,
// which applies every other cluster of the response and the removals).
const cdsRejected = "Error adding/updating cluster(s) "

// appliedDespite returns what a client that rejected a response of clusters with errorDetail holds of it: the
// clusters the error does not name, and the removals; a cluster it names keeps the version held before (in
// held). Nil when the error is not Envoy's per-cluster one: nothing of the response can be counted.
func (c *clusterChange) appliedDespite(errorDetail string, held map[string]string) *clusterChange {
	if c == nil || !strings.Contains(errorDetail, cdsRejected) {
		return nil
	}
	out := &clusterChange{whole: c.whole, set: map[string]string{}, removed: c.removed}
	for name, version := range c.set {
		switch v, had := held[name]; {
		case !strings.Contains(errorDetail, name+": "):
			out.set[name] = version
		case c.whole && had:
			out.set[name] = v // a state-of-the-world update keeps the rejected cluster's earlier version
		}
	}
	return out
}

// applyTo makes held what a client that held it holds after accepting c.
func (c *clusterChange) applyTo(held map[string]string) map[string]string {
	if c.whole || held == nil {
		held = make(map[string]string, len(c.set))
	}
	for _, name := range c.removed {
		delete(held, name)
	}
	maps.Copy(held, c.set)
	return held
}

func (s *stream) status(typeURL string) *typeStatus {
	ts := s.types[typeURL]
	if ts == nil {
		ts = &typeStatus{}
		s.types[typeURL] = ts
	}
	return ts
}

// pendingRequest is a request between the request callback and its watch.
type pendingRequest struct {
	key   streamKey
	stale bool // a state-of-the-world request whose nonce is not the latest sent for its type
}

// streamOf finds the stream a request arrived on (recorded by the request callback) and binds it to its node.
// Requests that arrive without the callbacks (a cache used on its own) get a stream of their own.
func (c *Cache) streamOf(req any, p *corev3.Node) (*stream, bool) {
	pr, ok := c.pending[req]
	delete(c.pending, req)
	st := c.streams[pr.key]
	if ok && st != nil {
		st.dropRequest(req)
	}
	if !ok || st == nil {
		st, pr.stale = c.newStream(streamKey{id: c.nextAnon()}, false), false
	}
	if st.node == nil {
		st.node = c.nodeFor(p)
		st.node.streams[st] = struct{}{}
	}
	return st, pr.stale
}

func (c *Cache) nextAnon() int64 {
	c.anon--
	return c.anon
}

func (c *Cache) newStream(key streamKey, delta bool) *stream {
	st := &stream{key: key, id: key.id, delta: delta, opened: time.Now(), types: map[string]*typeStatus{},
		subs: map[string]map[string]struct{}{}, dirty: map[string]map[string]struct{}{}, pending: map[string]*watch{},
		seen: map[string]bool{}, absent: map[string]map[string]struct{}{}, held: map[string]map[string]string{},
		accepted: map[string]map[string]string{}, resumed: map[string]bool{}, lastSotw: map[string]*gcpcache.Request{}, forced: map[string]map[string]struct{}{},
		dropWildcard: map[string]bool{}, released: map[string]map[string]struct{}{}, modes: map[string]*subMode{},
		unknown: map[string]map[string]struct{}{}}
	c.streams[key] = st
	if key.id > 0 { // a server's stream; the cache's own (Fetch, Preview) are not shown
		c.noteStreams()
	}
	return st
}

// subscribe records that a stream asks for a name explicitly. Routes are materialised while subscribed.
func (c *Cache) subscribe(st *stream, typeURL, name string) {
	if _, ok := st.subs[typeURL][name]; ok {
		return
	}
	addName(st.subs, typeURL, name)
	k := nameKey{typeURL, name}
	if c.subscribers[k] == nil {
		c.subscribers[k] = map[*stream]struct{}{}
	}
	c.subscribers[k][st] = struct{}{}
	// A name RocketMQ would refuse as a topic is answered as absent and never reaches the model: no route is
	// built for it and no NameServer is asked about it.
	if typeURL == translate.RouteType && routing.ValidTopic(name) == nil {
		c.ref(name).nodes[st.node]++
	}
}

func (c *Cache) unsubscribe(st *stream, typeURL, name string) {
	if _, ok := st.subs[typeURL][name]; !ok {
		return
	}
	delete(st.subs[typeURL], name)
	delete(st.dirty[typeURL], name)
	delete(st.absent[typeURL], name)
	delete(st.forced[typeURL], name)
	k := nameKey{typeURL, name}
	delete(c.subscribers[k], st)
	if len(c.subscribers[k]) == 0 {
		delete(c.subscribers, k)
	}
	if typeURL == translate.RouteType && routing.ValidTopic(name) == nil {
		if e := c.topics[name]; e != nil {
			if e.nodes[st.node]--; e.nodes[st.node] <= 0 {
				delete(e.nodes, st.node)
			}
		}
		c.unref(name)
	}
}

// subscribeDelta applies a delta request's subscription changes, work proportional to the request, following
// go-control-plane's rules (stream.Subscription) so that the cache's record of what the client holds matches the
// protocol: initial_resource_versions count on a type's first request only; while a type is a legacy wildcard (its
// first request named nothing), requests that name nothing change nothing; subscriptions apply before
// unsubscriptions, in order; a name unsubscribed under a wildcard is released (the next answer says whether the
// wildcard still covers it), any other is forgotten (the client drops it).
func (c *Cache) subscribeDelta(st *stream, req *gcpcache.DeltaRequest) {
	typeURL := req.GetTypeUrl()
	sub, subs := st.modes[typeURL], req.GetResourceNamesSubscribe()
	if sub == nil {
		sub = &subMode{legacy: true, wildcard: len(subs) == 0}
		st.modes[typeURL] = sub
		held := make(map[string]string, len(req.GetInitialResourceVersions()))
		for name, v := range req.GetInitialResourceVersions() {
			if v != "" {
				held[name] = v
			}
		}
		st.held[typeURL] = held
		if isClusterType(typeURL) {
			st.accepted[typeURL] = maps.Clone(held) // a client declares only what it accepted
		}
	}
	if sub.legacy {
		if len(subs) == 0 {
			return
		}
		sub.legacy = false
	}
	for _, name := range subs {
		if name == "*" {
			sub.wildcard = true
		} else {
			c.subscribe(st, typeURL, name)
		}
	}
	held := st.held[typeURL]
	for _, name := range req.GetResourceNamesUnsubscribe() {
		if name == "*" {
			sub.wildcard = false
			continue
		}
		if _, explicit := st.subs[typeURL][name]; explicit && sub.wildcard {
			addName(st.released, typeURL, name)
		} else {
			delete(held, name)
			delete(st.accepted[typeURL], name)
		}
		c.unsubscribe(st, typeURL, name)
	}
}

// subscribeSotw makes a stream's explicit names those of a state-of-the-world request, which lists them all, and
// sets whether it is a wildcard subscription, by go-control-plane's rules: a type whose first request names nothing
// is a legacy wildcard until a request names something; then "*" makes a wildcard.
func (c *Cache) subscribeSotw(st *stream, req *gcpcache.Request) {
	typeURL, names := req.GetTypeUrl(), req.GetResourceNames()
	mode := st.modes[typeURL]
	if mode == nil {
		mode = &subMode{legacy: true, wildcard: len(names) == 0}
		st.modes[typeURL] = mode
	}
	if !mode.legacy || len(names) > 0 {
		mode.legacy, mode.wildcard = false, slices.Contains(names, "*")
	}
	st.status(typeURL).wildcard = mode.wildcard
	want := map[string]struct{}{}
	for _, name := range req.GetResourceNames() {
		if name != "*" {
			want[name] = struct{}{}
			c.subscribe(st, req.GetTypeUrl(), name)
		}
	}
	for name := range st.subs[req.GetTypeUrl()] {
		if _, ok := want[name]; !ok {
			c.unsubscribe(st, req.GetTypeUrl(), name)
		}
	}
}

// askUnknown records the names a request of a type rocketpilot does not serve subscribes to (for the
// subscription limit only) and returns those to answer in removed_resources: the names this request subscribed.
func (st *stream) askUnknown(typeURL string, subscribe, unsubscribe []string) []string {
	names := st.unknown[typeURL] // made by the request callback, which counts the types
	if names == nil {
		names = map[string]struct{}{}
		st.unknown[typeURL] = names
	}
	var answer []string
	for _, name := range subscribe {
		if name != "*" {
			names[name] = struct{}{}
			answer = append(answer, name)
		}
	}
	for _, name := range unsubscribe {
		delete(names, name)
		answer = slices.DeleteFunc(answer, func(n string) bool { return n == name })
	}
	slices.Sort(answer)
	return slices.Compact(answer)
}

func (c *Cache) closeStream(key streamKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.streams[key]; st != nil {
		c.closeStreamLocked(st)
	}
}

// dropRequest forgets a request the stream's watch took from c.pending.
func (st *stream) dropRequest(req any) {
	for i, r := range st.requests {
		if r == req {
			st.requests = slices.Delete(st.requests, i, i+1)
			return
		}
	}
}

func (c *Cache) closeStreamLocked(st *stream) {
	delete(c.streams, st.key)
	if st.id > 0 {
		c.noteStreams()
	}
	for _, req := range st.requests {
		delete(c.pending, req)
	}
	st.requests = nil
	for _, w := range st.pending {
		c.forget(w)
	}
	for _, ts := range st.types {
		if ts.retry != nil {
			ts.retry.Stop()
		}
		if ts.nackNonce != "" {
			c.noteRejections()
		}
	}
	if st.node == nil {
		return
	}
	for typeURL, names := range st.subs {
		for name := range names {
			c.unsubscribe(st, typeURL, name)
		}
	}
	delete(st.node.streams, st)
	c.releaseNode(st.node)
	c.releaseHeld(st.node) // the node's other streams may now decide its gate (gate.go)
}
