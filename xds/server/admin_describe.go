package server

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// The detail views rocketctl describe reads, one object each:
//
//	GET /api/v1/proxies/NODE             one connected node: metadata, bindings, scope, what it holds, its streams
//	GET /api/v1/brokersets/HASH          one broker set: members, the clusters it renders to, the topics using it
//	GET /api/v1/clusters/NAME            the same view, of the broker set a served cluster renders
//	GET /api/v1/policies/NAMESPACE/NAME  one TopicRoute: its rules, the topics it governs and those it lost
//
// Lists in them (topics, names held) are cut at ?limit= (describeLimit by default, 0 for all), with the full count
// beside. A broker set's and a policy's topics are found by one pass over the table (Range: passChunk topics per
// hold of its read lock), as analyze does: a describe costs a pass, never a lock held across it.

// describeLimit is how many topics or names a detail view lists by default.
const describeLimit = 20

// firstN appends name to names while fewer than limit are kept (0: no limit).
func firstN(names []string, limit int, name string) []string {
	if limit == 0 || len(names) < limit {
		names = append(names, name)
	}
	return names
}

// ProxyDetail is GET /api/v1/proxies/NODE: a connected node as the control plane sees it.
type ProxyDetail struct {
	Node string `json:"node"`
	// Namespace and Labels are its pod's, from its node metadata (what TopicBindings select on).
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Bindings are the TopicBindings that select it.
	Bindings []string `json:"bindings"`
	// Scope is how many topics its scope holds (its bindings' and its metadata's), ScopeTopics the first of them.
	Scope       int      `json:"scope"`
	ScopeTopics []string `json:"scopeTopics"`
	// Subscribed is how many routes it subscribed to by name, on its newest stream.
	Subscribed int `json:"subscribed"`
	// Holds is what its newest stream is served, per resource type it uses (the config dump's counts and first
	// names).
	Holds []HeldResources `json:"holds"`
	// Streams are its open streams with their sync state per type, as GET /api/v1/proxies reports them.
	Streams []cache.StreamStatus `json:"streams"`
}

// HeldResources is what a node is served of one resource type.
type HeldResources struct {
	TypeURL string   `json:"typeUrl"`
	Count   int      `json:"count"`
	Names   []string `json:"names"`
}

func (a *Admin) proxy(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	limit, ok := limitParam(w, r, describeLimit)
	if !ok {
		return
	}
	out, found := a.ProxyDetail(node, limit)
	if !found {
		writeError(w, http.StatusNotFound, "no connected proxy has node id "+strconv.Quote(node)+" (GET /api/v1/proxies lists them)")
		return
	}
	writeJSON(w, out)
}

// ProxyDetail is a connected node as the control plane sees it (GET /api/v1/proxies/NODE, the dashboard's proxy
// page), its lists cut at limit (0: all); false when no open stream has the node id.
func (a *Admin) ProxyDetail(node string, limit int) (ProxyDetail, bool) {
	out := ProxyDetail{Node: node, Bindings: []string{}, ScopeTopics: []string{}, Holds: []HeldResources{}}
	for _, s := range a.Cache.Streams() {
		if s.Node == node {
			out.Streams = append(out.Streams, s)
		}
	}
	dump, found := a.Cache.ConfigDump(node)
	if len(out.Streams) == 0 || !found {
		return out, false
	}
	newest := out.Streams[len(out.Streams)-1] // Streams are by id: the newest last, the one ConfigDump reads
	out.Scope = len(newest.Scope)
	for _, t := range newest.Scope {
		out.ScopeTopics = firstN(out.ScopeTopics, limit, t)
	}
	for _, ts := range newest.Types {
		if ts.TypeURL == translate.RouteType {
			out.Subscribed = len(ts.Subscribed)
		}
	}
	for _, ts := range newest.Types { // the types the node uses: the dump has every type a node could be served
		h := HeldResources{TypeURL: ts.TypeURL, Count: len(dump[ts.TypeURL]), Names: []string{}}
		for _, d := range dump[ts.TypeURL] {
			h.Names = firstN(h.Names, limit, d.Name)
		}
		out.Holds = append(out.Holds, h)
	}
	// The node's metadata as bindings see it: the table's registry of connected proxies has it (the cache
	// registers each node with ProxyOf); Count is its only reader, so the match records and counts nothing.
	proxy := routing.Proxy{ID: node}
	a.Table.Proxies().Count(func(p routing.Proxy) bool {
		if p.ID == node {
			proxy = p
		}
		return false
	})
	out.Namespace, out.Labels = proxy.Namespace, proxy.Labels
	for _, b := range a.Table.Bindings() {
		if b.Selects != nil && b.Selects(proxy) {
			out.Bindings = append(out.Bindings, b.Name)
		}
	}
	return out, true
}

// BrokerSetDetail is GET /api/v1/brokersets/HASH and GET /api/v1/clusters/NAME: one broker set, the clusters it
// renders to (the cluster and, under a weighted TopicRoute, its send cluster) with their endpoints as served, and
// the topics that use it (Topics of them; Names, the first in name order).
type BrokerSetDetail struct {
	Hash     string             `json:"hash"`
	Members  []routing.Member   `json:"members"`
	Clusters []DescribedCluster `json:"clusters"`
	Topics   int                `json:"topics"`
	Names    []string           `json:"names"`
}

// DescribedCluster is a served cluster and its endpoints in protobuf's JSON, as TopicChain has them.
type DescribedCluster struct {
	Name      string          `json:"name"`
	Cluster   json.RawMessage `json:"cluster"`
	Endpoints json.RawMessage `json:"endpoints"`
}

func (a *Admin) brokerSet(w http.ResponseWriter, r *http.Request) {
	hash := r.PathValue("hash")
	set := a.Table.BrokerSet(hash)
	if set == nil {
		writeError(w, http.StatusNotFound, "broker set "+strconv.Quote(hash)+" not found (GET /api/v1/brokersets lists them)")
		return
	}
	a.describeBrokerSet(w, r, set)
}

func (a *Admin) cluster(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, sc := range a.Cache.ServedClusters() {
		if sc.Cluster.Name == name {
			if set := a.Table.BrokerSet(sc.BrokerSet); set != nil {
				a.describeBrokerSet(w, r, set)
				return
			}
		}
	}
	writeError(w, http.StatusNotFound, "cluster "+strconv.Quote(name)+" not found (GET /api/v1/clusters lists them)")
}

func (a *Admin) describeBrokerSet(w http.ResponseWriter, r *http.Request, set *routing.BrokerSet) {
	limit, ok := limitParam(w, r, describeLimit)
	if !ok {
		return
	}
	out := BrokerSetDetail{Hash: set.Hash, Members: set.Members, Clusters: []DescribedCluster{}, Names: []string{}}
	for _, sc := range a.Cache.ServedClusters() {
		if sc.BrokerSet == set.Hash {
			out.Clusters = append(out.Clusters, DescribedCluster{Name: sc.Cluster.Name,
				Cluster: rawServed(translate.ClusterType, &sc.Cluster), Endpoints: rawServed(translate.EndpointType, &sc.Endpoints)})
		}
	}
	gone := clientGone(r.Context())
	a.Table.Range(func(t *routing.Topic) bool {
		if t.BrokerSet.Hash == set.Hash {
			out.Topics++
			out.Names = firstN(out.Names, limit, t.Name)
		}
		return !gone()
	})
	if r.Context().Err() != nil {
		return // nobody to answer: the pass stopped when the client went
	}
	writeJSON(w, out)
}

// clientGone returns a check of ctx for a pass over the model, cheap enough to call per topic: it looks at ctx
// every 4096 calls. A pass over 1M topics stops soon after the client that asked for it gives up.
func clientGone(ctx context.Context) func() bool {
	n := 0
	return func() bool {
		n++
		return n%4096 == 0 && ctx.Err() != nil
	}
}

// PolicyDetail is GET /api/v1/policies/NAMESPACE/NAME: one TopicRoute as the model holds it. Governs counts the
// topics that follow it (Topics, the first of them); Lost the topics it matches that follow an older TopicRoute
// (LostTopics, the first of them, each with the winner). The counts are a pass over the table's topics now;
// Matched and Overridden, the table's running counts, say the same once no change is under way.
type PolicyDetail struct {
	Name string `json:"name"`
	routing.PolicyStatus
	Version    string             `json:"version,omitempty"`
	Created    time.Time          `json:"created,omitzero"`
	Match      PolicyMatch        `json:"match"`
	RouteQuery []PolicyBackend    `json:"routeQuery,omitempty"`
	Send       []PolicyBackend    `json:"send,omitempty"`
	Consume    []PolicyBackend    `json:"consume,omitempty"`
	Ack        []PolicyBackend    `json:"ack,omitempty"`
	Drain      []string           `json:"drain,omitempty"`
	Ordered    bool               `json:"ordered,omitempty"`
	Pop        *routing.PopPolicy `json:"pop,omitempty"`
	Governs    int                `json:"governs"`
	Topics     []string           `json:"topics"`
	Lost       int                `json:"lost"`
	LostTopics []LostTopic        `json:"lostTopics"`
}

// PolicyMatch is a TopicRoute's topic match.
type PolicyMatch struct {
	Exact  []string `json:"exact,omitempty"`
	Prefix []string `json:"prefix,omitempty"`
	Regex  string   `json:"regex,omitempty"`
}

// PolicyBackend is one backend of a rule; Resolved is false when a broker cluster or group it names is not in the
// model (PolicyStatus.UnknownBackends lists those).
type PolicyBackend struct {
	BrokerCluster string   `json:"brokerCluster,omitempty"`
	BrokerNames   []string `json:"brokerNames,omitempty"`
	Weight        *int32   `json:"weight,omitempty"`
	Resolved      bool     `json:"resolved"`
}

// LostTopic is a topic a TopicRoute matches that follows another, older one.
type LostTopic struct {
	Topic string `json:"topic"`
	To    string `json:"to"`
}

func (a *Admin) policy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("namespace") + "/" + r.PathValue("name")
	limit, ok := limitParam(w, r, describeLimit)
	if !ok {
		return
	}
	policies := a.Table.Policies()
	i := slices.IndexFunc(policies, func(p routing.Policy) bool { return p.Name == name })
	if i < 0 {
		writeError(w, http.StatusNotFound, "topicroute "+strconv.Quote(name)+" not found (GET /api/v1/policies lists them)")
		return
	}
	p := policies[i]
	out := PolicyDetail{Name: name, PolicyStatus: a.Table.PolicyStatus(name), Version: p.Version, Created: p.Created,
		Match: PolicyMatch{Exact: p.Match.Exact, Prefix: p.Match.Prefix}, Drain: p.Drain, Ordered: p.Ordered, Pop: p.Pop,
		Topics: []string{}, LostTopics: []LostTopic{}}
	if p.Match.Regex != nil {
		out.Match.Regex = p.Match.Regex.String()
	}
	backends := func(rule []routing.Backend) []PolicyBackend {
		var bs []PolicyBackend
		for _, b := range rule {
			pb := PolicyBackend{BrokerCluster: b.BrokerCluster, BrokerNames: b.BrokerNames, Resolved: true}
			if b.Weighted {
				pb.Weight = &b.Weight
			}
			if b.BrokerCluster != "" {
				pb.Resolved = !slices.Contains(out.UnknownBackends, "brokerCluster "+b.BrokerCluster)
			}
			for _, n := range b.BrokerNames {
				pb.Resolved = pb.Resolved && !slices.Contains(out.UnknownBackends, "broker "+n)
			}
			bs = append(bs, pb)
		}
		return bs
	}
	out.RouteQuery, out.Send, out.Consume, out.Ack = backends(p.RouteQuery), backends(p.Send), backends(p.Consume), backends(p.Ack)
	gone := clientGone(r.Context())
	a.Table.Range(func(t *routing.Topic) bool {
		if gone() {
			return false
		}
		if !p.Match.Matches(t.Name) {
			return true
		}
		follows, overridden := a.Table.TopicPolicy(t.Name)
		switch {
		case follows == name:
			out.Governs++
			out.Topics = firstN(out.Topics, limit, t.Name)
		case slices.Contains(overridden, name):
			out.Lost++
			if limit == 0 || len(out.LostTopics) < limit {
				out.LostTopics = append(out.LostTopics, LostTopic{Topic: t.Name, To: follows})
			}
		}
		return true
	})
	if r.Context().Err() != nil {
		return // nobody to answer: the pass stopped when the client went
	}
	writeJSON(w, out)
}
