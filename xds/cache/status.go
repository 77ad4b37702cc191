package cache

import (
	"cmp"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// Sync states of a stream's type, as rocketctl proxy-status shows them.
const (
	Synced = "SYNCED" // the last response was acknowledged
	Stale  = "STALE"  // a response is not acknowledged yet
	Nacked = "NACKED" // a response was rejected and none sent since was accepted; the client keeps its last good state
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
	// BackoffUntil is when the NACK backoff lets the next response of the type go, while it holds it.
	BackoffUntil time.Time `json:"backoffUntil,omitzero"`
	// WaitingFor are the clusters a config held back by make-before-break waits for the node to accept, with their
	// endpoints (docs/xds.md, "Make-before-break").
	WaitingFor []string `json:"waitingFor,omitempty"`
	// MissingExtension is set when the standing NACK says the sidecar lacks an extension the config needs (an
	// Envoy without the contrib RocketMQ filter): a problem of the sidecar, not of the configuration.
	MissingExtension string `json:"missingExtension,omitempty"`
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

// Streams returns the status of every open stream, by id. The lock is held only to copy: sorting (every
// subscribed name of every stream) happens after, so that pushes do not wait for it.
func (c *Cache) Streams() []StreamStatus { return c.streamStatuses(true) }

// StreamStates is Streams without each type's subscribed names (left nil): the sync state of every stream at the
// cost of the streams and their types, not of their subscriptions, for views that count or list states (the
// dashboard's overview and proxies pages, re-read as streams change).
func (c *Cache) StreamStates() []StreamStatus { return c.streamStatuses(false) }

func (c *Cache) streamStatuses(subscriptions bool) []StreamStatus {
	out := c.streamsUnsorted(subscriptions)
	for _, s := range out {
		for _, t := range s.Types {
			slices.Sort(t.Subscribed)
		}
		slices.SortFunc(s.Types, func(a, b TypeStatus) int { return strings.Compare(a.TypeURL, b.TypeURL) })
	}
	slices.SortFunc(out, func(a, b StreamStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (c *Cache) streamsUnsorted(subscriptions bool) []StreamStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	out := make([]StreamStatus, 0, len(c.streams))
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
				AckedVersion: ts.ackedVersion, NackError: ts.nackError, MissingExtension: ts.missingExtension,
				WaitingFor: c.waitingFor(st, typeURL)}
			if now.Before(ts.holdUntil) {
				t.BackoffUntil = ts.holdUntil
			}
			if subscriptions {
				t.Subscribed = slices.Collect(maps.Keys(st.subs[typeURL]))
			}
			// By nonce: a delta response's version is the model's, shared by many responses.
			switch {
			case ts.nackNonce != "":
				t.State = Nacked
			case ts.sentNonce == "":
				t.State = Synced // nothing sent yet
			case ts.ackedNonce == ts.sentNonce:
				t.State = Synced
			default:
				t.State = Stale
			}
			s.Types = append(s.Types, t)
		}
		out = append(out, s)
	}
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
	c.materialise()
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

// Rejections returns the responses open streams rejected and have not accepted a later one of, by node and type:
// the configuration's faults. A rejection because the sidecar lacks an extension is the sidecar's, and is left
// out (proxy-status and rocketpilot_xds_sidecars_missing_extension show it).
func (c *Cache) Rejections() []routing.Rejection {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []routing.Rejection
	for _, st := range c.streams {
		for typeURL, ts := range st.types {
			if ts.nackNonce != "" && ts.missingExtension == "" && st.id > 0 {
				out = append(out, routing.Rejection{Node: nodeID(st), TypeURL: typeURL, Version: ts.rejectedVersion,
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
