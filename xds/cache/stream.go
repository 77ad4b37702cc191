package cache

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// streamKey identifies a stream: go-control-plane's delta and state-of-the-world servers number their streams
// independently, so an id alone is ambiguous.
type streamKey struct {
	delta bool
	id    int64
}

// stream is what the cache knows of one xDS stream, learned through the server callbacks.
type stream struct {
	key     streamKey
	id      int64
	delta   bool
	opened  time.Time
	node    *node
	types   map[string]*typeStatus
	subs    map[string]map[string]struct{} // type → names subscribed by name
	dirty   map[string]map[string]struct{} // type → subscribed names changed since the last answer
	pending map[string]*watch              // type → the watch waiting for a change
	seen    map[string]bool                // type → evaluated in full once; later answers look only at dirty names
	absent  map[string]map[string]struct{} // type → explicit names answered in removed_resources, until they appear
	sent    map[string]map[string]struct{} // cluster and endpoint names last sent (make-before-break)
	resumed map[string]bool                // SotW type whose first request carried a version: state unknown
	// forced and dropWildcard carry a request's asks (resend these names; remove what only the wildcard covered)
	// until an answer commits them.
	forced       map[string]map[string]struct{}
	dropWildcard map[string]bool
	// leftAt records when a live cluster left the stream's wildcard view (its topics moved to other broker sets
	// while others still use it): the stream keeps it for the retention, as it keeps a retired one.
	leftAt map[string]time.Time
}

func (s *stream) markDirty(typeURL, name string) {
	d := s.dirty[typeURL]
	if d == nil {
		d = map[string]struct{}{}
		s.dirty[typeURL] = d
	}
	d[name] = struct{}{}
}

// typeStatus is one stream's exchange of one type.
type typeStatus struct {
	wildcard     bool
	sentNonce    string
	sentVersion  string
	sentAt       time.Time
	ackedVersion string
	ackedNonce   string
	nackNonce    string
	nackError    string
	pushedAt     time.Time // when the change behind the response queued last reached the cache; zero for a request's
	// NACK backoff: NACKs in a row, no response before holdUntil, and the timer that answers when it passes.
	nacks     int
	holdUntil time.Time
	retry     *time.Timer
	// The topics the response queued last and the one sent last carry (routes by name; a listener or ECDS config
	// every topic of its scope), and those of the response rejected: a NACK is reported against them.
	queuedTopics, sentTopics, rejectedTopics []string
}

func (s *stream) status(typeURL string) *typeStatus {
	ts := s.types[typeURL]
	if ts == nil {
		ts = &typeStatus{}
		s.types[typeURL] = ts
	}
	return ts
}

func (s *stream) lastSentVersion(typeURL string) string {
	if ts := s.types[typeURL]; ts != nil {
		return ts.sentVersion
	}
	return ""
}

// streamOf finds the stream a request arrived on (recorded by the request callback) and binds it to its node.
// Requests that arrive without the callbacks (a cache used on its own) get a stream of their own.
func (c *Cache) streamOf(req any, p *corev3.Node) *stream {
	key, ok := c.pending[req]
	delete(c.pending, req)
	st := c.streams[key]
	if !ok || st == nil {
		st = c.newStream(streamKey{id: c.nextAnon()}, false)
	}
	if st.node == nil {
		st.node = c.nodeFor(p)
		st.node.streams[st] = struct{}{}
	}
	return st
}

func (c *Cache) nextAnon() int64 {
	c.anon--
	return c.anon
}

func (c *Cache) newStream(key streamKey, delta bool) *stream {
	st := &stream{key: key, id: key.id, delta: delta, opened: time.Now(), types: map[string]*typeStatus{},
		subs: map[string]map[string]struct{}{}, dirty: map[string]map[string]struct{}{}, pending: map[string]*watch{},
		seen: map[string]bool{}, absent: map[string]map[string]struct{}{}, sent: map[string]map[string]struct{}{},
		resumed: map[string]bool{}, forced: map[string]map[string]struct{}{}, dropWildcard: map[string]bool{},
		leftAt: map[string]time.Time{}}
	c.streams[key] = st
	return st
}

// subscribe records that a stream asks for a name explicitly. Routes are materialised while subscribed.
func (c *Cache) subscribe(st *stream, typeURL, name string) {
	names := st.subs[typeURL]
	if names == nil {
		names = map[string]struct{}{}
		st.subs[typeURL] = names
	}
	if _, ok := names[name]; ok {
		return
	}
	names[name] = struct{}{}
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

// subscribeDelta applies a delta request's subscription changes: work proportional to the request.
func (c *Cache) subscribeDelta(st *stream, req *gcpcache.DeltaRequest) {
	for _, name := range req.GetResourceNamesSubscribe() {
		if name != "*" {
			c.subscribe(st, req.GetTypeUrl(), name)
		}
	}
	for _, name := range req.GetResourceNamesUnsubscribe() {
		if name != "*" {
			c.unsubscribe(st, req.GetTypeUrl(), name)
		}
	}
}

// subscribeSotw makes a stream's explicit names those of a state-of-the-world request, which lists them all.
func (c *Cache) subscribeSotw(st *stream, req *gcpcache.Request) {
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

func (c *Cache) closeStream(key streamKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.streams[key]; st != nil {
		c.closeStreamLocked(st)
	}
}

func (c *Cache) closeStreamLocked(st *stream) {
	delete(c.streams, st.key)
	for req, key := range c.pending {
		if key == st.key {
			delete(c.pending, req)
		}
	}
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
}

// asked is what a request subscribes to, unsubscribes from and declares it holds.
type asked struct {
	subscribe, unsubscribe []string
	initial                map[string]string
}

func (c *Cache) onRequest(key streamKey, req any, typeURL, nonce string, errorDetail string, hasError bool, names asked) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[key]
	if st == nil {
		return nil
	}
	if err := c.checkLocked(st, typeURL, names); err != nil {
		return err
	}
	for r, k := range c.pending { // a request the server skipped (a stale nonce) never reached CreateWatch
		if k == key {
			delete(c.pending, r)
		}
	}
	c.pending[req] = key
	ts := st.status(typeURL)
	if nonce != "" && nonce == ts.sentNonce {
		if hasError {
			ts.nackNonce, ts.nackError, ts.rejectedTopics = nonce, errorDetail, ts.sentTopics
			ts.nacks++
			ts.holdUntil = time.Now().Add(c.opts.NackBackoff << min(ts.nacks-1, 5))
			c.metrics.of(typeURL).nacks.Inc()
			c.noteRejections()
			c.opts.Logger.Warn("xDS response rejected", "node", nodeID(st), "type", typeURL, "version", ts.sentVersion, "error", errorDetail,
				"nacksInARow", ts.nacks, "retryIn", time.Until(ts.holdUntil).Round(time.Millisecond))
		} else {
			if ts.nackNonce != "" {
				c.noteRejections()
			}
			ts.ackedVersion, ts.ackedNonce, ts.nackNonce, ts.nackError, ts.rejectedTopics = ts.sentVersion, nonce, "", "", nil
			ts.nacks, ts.holdUntil = 0, time.Time{}
		}
	}
	return nil
}

// checkLocked refuses a request that would take a stream past its limits: more than MaxSubscriptions names of
// one type, or a name longer than MaxNameLength. The error ends the stream with its gRPC code.
func (c *Cache) checkLocked(st *stream, typeURL string, names asked) error {
	for _, name := range names.subscribe {
		if len(name) > MaxNameLength {
			return status.Errorf(codes.InvalidArgument, "resource name of %d bytes: the limit is %d", len(name), MaxNameLength)
		}
	}
	limit := c.opts.MaxSubscriptions
	if len(names.initial) > limit {
		return status.Errorf(codes.ResourceExhausted, "%d initial resource versions of %s: the limit is %d", len(names.initial), typeURL, limit)
	}
	var held map[string]struct{} // a delta request changes what the stream holds; a state-of-the-world one replaces it
	if st.delta {
		held = st.subs[typeURL]
	}
	if len(held)+len(names.subscribe) <= limit {
		return nil // the common case, decided without counting
	}
	want := make(map[string]struct{}, len(held)+len(names.subscribe))
	for name := range held {
		want[name] = struct{}{}
	}
	for _, name := range names.subscribe {
		if name != "*" {
			want[name] = struct{}{}
		}
	}
	for _, name := range names.unsubscribe {
		delete(want, name)
	}
	if len(want) > limit {
		return status.Errorf(codes.ResourceExhausted, "%d subscribed names of %s on one stream: the limit is %d", len(want), typeURL, limit)
	}
	return nil
}

func nodeID(st *stream) string {
	if st.node == nil {
		return ""
	}
	return st.node.id
}

func (c *Cache) onResponse(key streamKey, typeURL, nonce, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.streams[key]; st != nil {
		ts := st.status(typeURL)
		ts.sentNonce, ts.sentVersion, ts.sentAt = nonce, version, time.Now()
		ts.sentTopics, ts.queuedTopics = ts.queuedTopics, nil
		c.metrics.sent(typeURL, ts.pushedAt)
		ts.pushedAt = time.Time{}
	}
}

// Callbacks for go-control-plane's delta and state-of-the-world servers.

func (c *Cache) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.newStream(streamKey{delta: true, id: id}, true)
	return nil
}

func (c *Cache) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.closeStream(streamKey{delta: true, id: id})
}

func (c *Cache) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	return c.onRequest(streamKey{delta: true, id: id}, req, req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(),
		req.GetErrorDetail() != nil, asked{req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(), req.GetInitialResourceVersions()})
}

func (c *Cache) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.onResponse(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

func (c *Cache) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.newStream(streamKey{id: id}, false)
	return nil
}

func (c *Cache) OnStreamClosed(id int64, _ *corev3.Node) { c.closeStream(streamKey{id: id}) }

func (c *Cache) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	return c.onRequest(streamKey{id: id}, req, req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(),
		req.GetErrorDetail() != nil, asked{subscribe: req.GetResourceNames()})
}

func (c *Cache) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.onResponse(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (c *Cache) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error { return nil }

func (c *Cache) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

// Rejections returns the responses open streams rejected and have not accepted a later one of, by node and type.
func (c *Cache) Rejections() []routing.Rejection {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []routing.Rejection
	for _, st := range c.streams {
		for typeURL, ts := range st.types {
			if ts.nackNonce != "" && st.id > 0 {
				out = append(out, routing.Rejection{Node: nodeID(st), TypeURL: typeURL, Version: ts.sentVersion,
					Error: ts.nackError, Topics: ts.rejectedTopics})
			}
		}
	}
	slices.SortFunc(out, func(a, b routing.Rejection) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), strings.Compare(a.TypeURL, b.TypeURL))
	})
	return out
}

// RejectionsChanged returns a channel closed when Rejections next changes.
func (c *Cache) RejectionsChanged() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rejected
}

func (c *Cache) noteRejections() {
	close(c.rejected)
	c.rejected = make(chan struct{})
}

// Sync states of a stream's type, as rocketctl proxy-status shows them.
const (
	Synced = "SYNCED" // the last response was acknowledged
	Stale  = "STALE"  // a response is not acknowledged yet
	Nacked = "NACKED" // the last response was rejected; the client keeps its last good state
)

// TypeStatus is one stream's exchange of one resource type.
type TypeStatus struct {
	TypeURL      string    `json:"typeUrl"`
	State        string    `json:"state"`
	Subscribed   []string  `json:"subscribed,omitempty"`
	Wildcard     bool      `json:"wildcard"`
	SentVersion  string    `json:"sentVersion,omitempty"`
	SentAt       time.Time `json:"sentAt,omitzero"`
	AckedVersion string    `json:"ackedVersion,omitempty"`
	NackError    string    `json:"nackError,omitempty"`
}

// StreamStatus is one stream as the admin API reports it.
type StreamStatus struct {
	ID     int64        `json:"id"`
	Node   string       `json:"node"`
	Delta  bool         `json:"delta"`
	Opened time.Time    `json:"opened"`
	Scope  []string     `json:"scope,omitempty"`
	Types  []TypeStatus `json:"types"`
}

// Streams returns the status of every open stream, by id.
func (c *Cache) Streams() []StreamStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []StreamStatus
	for _, st := range c.streams {
		if st.id < 0 {
			continue
		}
		s := StreamStatus{ID: st.id, Node: nodeID(st), Delta: st.delta, Opened: st.opened}
		if st.node != nil {
			s.Scope = st.node.scope.topics
		}
		for typeURL, ts := range st.types {
			t := TypeStatus{TypeURL: typeURL, Wildcard: ts.wildcard, SentVersion: ts.sentVersion, SentAt: ts.sentAt,
				AckedVersion: ts.ackedVersion, NackError: ts.nackError}
			for n := range st.subs[typeURL] {
				t.Subscribed = append(t.Subscribed, n)
			}
			sort.Strings(t.Subscribed)
			// By nonce: a delta response's version is the model's, shared by many responses.
			switch {
			case ts.sentNonce == "":
				t.State = Synced // nothing sent yet
			case ts.nackNonce == ts.sentNonce:
				t.State = Nacked
			case ts.ackedNonce == ts.sentNonce:
				t.State = Synced
			default:
				t.State = Stale
			}
			s.Types = append(s.Types, t)
		}
		sort.Slice(s.Types, func(i, j int) bool { return s.Types[i].TypeURL < s.Types[j].TypeURL })
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ConfigDump returns what a node is served, by type URL, each resource rendered as JSON with its version. ok is
// false when no open stream belongs to the node.
func (c *Cache) ConfigDump(nodeID string) (map[string][]DumpedResource, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var streams []*stream
	for _, st := range c.streams {
		if st.node != nil && st.node.id == nodeID && st.key.id > 0 {
			streams = append(streams, st)
		}
	}
	if len(streams) == 0 {
		return nil, false
	}
	slices.SortFunc(streams, func(a, b *stream) int { return int(a.id - b.id) })
	return c.dumpLocked(streams[len(streams)-1]), true // the newest stream of the node
}

// Preview returns what a node would be served if it connected now and subscribed to the given topics' routes:
// the resources of ConfigDump, computed by the same code, with no stream left behind. Offline tools
// (rocketctl x translate) use it to show what a running server serves.
func (c *Cache) Preview(node *corev3.Node, topics []string) map[string][]DumpedResource {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.newStream(streamKey{id: c.nextAnon()}, true)
	st.node = c.nodeFor(node)
	st.node.streams[st] = struct{}{}
	defer c.closeStreamLocked(st)
	for _, t := range topics {
		c.subscribe(st, translate.RouteType, t)
	}
	return c.dumpLocked(st)
}

// dumpLocked renders what a stream's node is served: its listener and ECDS config, the clusters and endpoints
// its topics use, and the routes of its scope and of the topics it subscribed to.
func (c *Cache) dumpLocked(st *stream) map[string][]DumpedResource {
	n := st.node
	out := map[string][]DumpedResource{}
	add := func(typeURL string, names []string) {
		slices.Sort(names)
		for _, name := range names {
			if r := c.lookup(typeURL, name, n); r != nil {
				out[typeURL] = append(out[typeURL], dump(typeURL, r))
			}
		}
	}
	topics := slices.Clone(n.scope.topics)
	for t := range st.subs[translate.RouteType] {
		if !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	used := slices.Collect(maps.Keys(c.used(st)))
	add(translate.ListenerType, []string{translate.ListenerName})
	add(translate.ExtensionType, []string{translate.ExtensionConfigName})
	add(translate.ClusterType, slices.Clone(used))
	add(translate.EndpointType, used)
	add(translate.RouteType, topics)
	return out
}

// DumpedResource is one served resource in a config dump.
type DumpedResource struct {
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	Resource json.RawMessage `json:"resource"`
}

func dump(typeURL string, r *resource) DumpedResource {
	b, err := protojson.Marshal(&anypb.Any{TypeUrl: typeURL, Value: r.body})
	if err != nil {
		b, _ = json.Marshal(err.Error())
	}
	return DumpedResource{Name: r.name, Version: r.version, Resource: b}
}
