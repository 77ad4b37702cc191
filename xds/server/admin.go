package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// Admin serves the admin API: read-only JSON views of the model, the served resources and the streams.
//
//	GET /healthz                  the process is up
//	GET /readyz                   the first sync is done and xDS is served
//	GET /api/v1/topics            topics (?prefix=, ?labelSelector=, ?limit=, default 1000, ?continue=)
//	GET /api/v1/topics/NAME       one topic's chain: route, broker set, served route, cluster and endpoints, streams
//	GET /api/v1/brokersets        broker sets with the cluster each becomes
//	GET /api/v1/clusters          served clusters with their endpoints (each endpoint's broker, id, perm and queues)
//	GET /api/v1/routes/NAME       the RocketMQ route served for a topic
//	GET /api/v1/brokers           broker groups from the NameServers' cluster tables
//	GET /api/v1/proxies           every open stream: node, scope, per type SYNCED / STALE / NACKED
//	GET /api/v1/config_dump?node= the resources one node is served
//	GET /api/v1/sources           what the sources report (the NameServer watchers' status)
//	GET /api/v1/policies          the TopicRoute policies in precedence order, with matched and overridden topics
//	GET /api/v1/resources         the custom resources of the file source (--config), each accepted or why not
//	GET /api/v1/changes           the latest changes of the model (?topic= for one topic's)
//
// Served resources (routes, clusters, endpoints) are read from the cache as it holds and serves them, never
// translated here: the admin API shows what streams were sent.
//
// Each JSON answer is one of the response types below (TopicList, TopicChain, BrokerSetRow, ClusterRow,
// VersionInfo, PolicyRow, ErrorBody), or a type of the package that owns the data (routing's brokers,
// cache.StreamStatus, cache's config dump): defined once, written here and read back by rocketctl.
type Admin struct {
	Table     *routing.Table
	Cache     *cache.Cache
	Sources   func() any
	Resources func() any
	Changes   *ChangeLog // optional: recent changes of the model
	Ready     func() bool
	// Waiting, when set, says what the first sync still waits for while the server is not ready.
	Waiting func() []string
	Version string
	// XDSAddress is the xDS listener's address, for clients that know only the admin API's.
	XDSAddress string
}

// Draining is what a draining server says it waits for: nothing, it is going away.
const Draining = "draining: the server is shutting down"

// WaitingFor is what a server that is not ready waits for: nil when it is ready, a reason when it cannot say.
func (a *Admin) WaitingFor() []string {
	if a.Ready == nil || a.Ready() {
		return nil
	}
	if a.Waiting != nil {
		if w := a.Waiting(); len(w) > 0 {
			return w
		}
	}
	return []string{"the first sync (or the server is draining)"}
}

func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if waiting := a.WaitingFor(); waiting != nil {
			msg := "not serving xDS yet: waiting for " + strings.Join(waiting, "; ")
			if len(waiting) == 1 && waiting[0] == Draining {
				msg = Draining
			}
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /api/v1/version", func(w http.ResponseWriter, _ *http.Request) {
		waiting := a.WaitingFor()
		writeJSON(w, VersionInfo{Version: a.Version, ModelVersion: a.Table.Version(), Serving: waiting == nil, WaitingFor: waiting,
			XDSAddress: a.XDSAddress})
	})
	mux.HandleFunc("GET /api/v1/topics", a.topics)
	mux.HandleFunc("GET /api/v1/topics/{name}", a.topic)
	mux.HandleFunc("GET /api/v1/brokersets", a.brokerSets)
	mux.HandleFunc("GET /api/v1/clusters", a.clusters)
	mux.HandleFunc("GET /api/v1/routes/{name}", a.route)
	mux.HandleFunc("GET /api/v1/brokers", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Table.Brokers()) })
	mux.HandleFunc("GET /api/v1/proxies", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Cache.Streams()) })
	mux.HandleFunc("GET /api/v1/config_dump", a.configDump)
	mux.HandleFunc("GET /api/v1/policies", func(w http.ResponseWriter, _ *http.Request) {
		out := []PolicyRow{}
		for _, n := range a.Table.PolicyNames() {
			out = append(out, PolicyRow{Name: n, PolicyStatus: a.Table.PolicyStatus(n)})
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /api/v1/changes", func(w http.ResponseWriter, r *http.Request) {
		out := []Change{}
		if a.Changes != nil {
			var version uint64
			if name := r.URL.Query().Get("topic"); name != "" {
				if t := a.Table.Topic(name); t != nil {
					version = t.Version
				}
			}
			out = append(out, a.Changes.Recent(r.URL.Query().Get("topic"), version)...)
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /api/v1/resources", func(w http.ResponseWriter, _ *http.Request) {
		if a.Resources == nil {
			writeJSON(w, []any{})
			return
		}
		writeJSON(w, a.Resources())
	})
	mux.HandleFunc("GET /api/v1/sources", func(w http.ResponseWriter, _ *http.Request) {
		if a.Sources == nil {
			writeJSON(w, []any{})
			return
		}
		writeJSON(w, a.Sources())
	})
	mux.HandleFunc("GET /api/v1/analyze", a.analyzeModel)
	// Any other path under /api/ (an empty name, an endpoint this server does not have) is a JSON 404 too, so
	// that a client can tell rocketpilot's "no such path" from another server's page.
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	mux.HandleFunc("GET /api/v1/names/{kind}", a.names)
	mux.HandleFunc("GET /api/v1/policies/rules", a.policyRules)
	mux.HandleFunc("GET /api/v1/bindings", a.bindings)
	mux.HandleFunc("GET /api/v1/proxies/{node}", a.proxy)
	mux.HandleFunc("GET /api/v1/brokersets/{hash}", a.brokerSet)
	mux.HandleFunc("GET /api/v1/clusters/{name}", a.cluster)
	mux.HandleFunc("GET /api/v1/policies/{namespace}/{name}", a.policy)
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(ErrorBody{Error: msg})
}

// The admin API's responses. The fields of the ones that were maps once (VersionInfo, TopicChain, TopicPolicy)
// are in the order of their JSON names, a map's order: the answers keep their bytes.

// ErrorBody is the body of every answer but 200 OK.
type ErrorBody struct {
	Error string `json:"error"`
}

// VersionInfo is GET /api/v1/version: the server's version and the model's.
type VersionInfo struct {
	ModelVersion uint64 `json:"modelVersion"`
	Version      string `json:"version"`
	// Serving is false while the server holds xDS back (its first sync is not done) or drains; WaitingFor then
	// says what it waits for.
	Serving    bool     `json:"serving"`
	WaitingFor []string `json:"waitingFor,omitempty"`
	// XDSAddress is where the server serves xDS (its listener's address).
	XDSAddress string `json:"xdsAddress,omitempty"`
}

// PolicyRow is one TopicRoute policy in GET /api/v1/policies.
type PolicyRow struct {
	Name string `json:"name"`
	routing.PolicyStatus
}

// TopicList is GET /api/v1/topics: a page of topics and how many match the prefix in all. Continue is set when the
// page was cut by the limit and more topics are selected: the last name, to pass as ?continue= for the next page.
// LabelSelector is the labelSelector applied, as parsed (see selector.go); a client that sent one and finds it
// empty talks to a server that does not select.
type TopicList struct {
	Total         int            `json:"total"`
	Topics        []TopicSummary `json:"topics"`
	Continue      string         `json:"continue,omitempty"`
	LabelSelector string         `json:"labelSelector,omitempty"`
}

// TopicSummary is one row of the topic list.
type TopicSummary struct {
	Name      string   `json:"name"`
	Cluster   string   `json:"cluster"`
	BrokerSet string   `json:"brokerSet"`
	Brokers   []string `json:"brokers"`
	Version   uint64   `json:"version"`
	// Policy is the TopicRoute the topic follows, if any.
	Policy string `json:"policy,omitempty"`
}

func (a *Admin) summarize(t *routing.Topic) TopicSummary {
	s := TopicSummary{Name: t.Name, Cluster: a.Cache.ClusterName(t.BrokerSet), BrokerSet: t.BrokerSet.Hash, Version: t.Version}
	s.Policy, _ = a.Table.TopicPolicy(t.Name)
	for _, m := range t.BrokerSet.Members {
		s.Brokers = append(s.Brokers, m.BrokerName)
	}
	return s
}

func (a *Admin) topics(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	limit := 1000
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "limit must be a non-negative integer")
			return
		}
		limit = n
	}
	sel, err := a.ParseTopicSelector(r.URL.Query().Get("labelSelector"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "labelSelector: "+err.Error())
		return
	}
	writeJSON(w, a.TopicPage(r.Context(), prefix, r.URL.Query().Get("continue"), sel, limit))
}

// TopicPage is a page of at most limit topics whose names start with prefix, after the name after, that sel
// selects (nil: every topic), and how many topics have the prefix in all: GET /api/v1/topics and the dashboard's
// topics page. Its cost is that of the page (a walk of the sorted names), not of the table, unless sel is
// selective.
func (a *Admin) TopicPage(ctx context.Context, prefix, after string, sel *TopicSelector, limit int) TopicList {
	_, total := a.Table.TopicNames(prefix, "", 1)
	out := TopicList{Total: total}
	if sel != nil {
		out.LabelSelector = sel.text
	}
	var more bool
	if out.Topics, more = a.selectTopics(ctx, prefix, after, sel, limit); more {
		out.Continue = out.Topics[len(out.Topics)-1].Name
	}
	return out
}

// pathTopic returns the topic named by the request path, or answers 404 and returns nil.
func (a *Admin) pathTopic(w http.ResponseWriter, r *http.Request) *routing.Topic {
	name, ok := validPathTopic(w, r)
	if !ok {
		return nil
	}
	t := a.Table.Topic(name)
	if t == nil {
		topicNotFound(w, name)
	}
	return t
}

// validPathTopic is the path's topic name, or a 400 when no topic can have it (not "not found").
func validPathTopic(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if err := routing.ValidTopic(name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return name, true
}

func topicNotFound(w http.ResponseWriter, name string) {
	writeError(w, http.StatusNotFound, "topic "+strconv.Quote(name)+" not found")
}

// TopicChain is GET /api/v1/topics/NAME: one topic's chain from the model to the streams. Route, Cluster,
// Endpoints and SendEndpoints are the served resources in protobuf's JSON; Cluster and Endpoints are null while the
// cache serves no cluster for the topic, SendEndpoints is there when a weighted TopicRoute gives it a send cluster.
type TopicChain struct {
	// Changes are the change log's entries for the topic (always null without a change log).
	Changes   []Change         `json:"changes"`
	Cluster   json.RawMessage  `json:"cluster"`
	Endpoints json.RawMessage  `json:"endpoints"`
	Members   []routing.Member `json:"members"`
	Policy    *TopicPolicy     `json:"policy,omitempty"`
	// Preview is set when no stream holds the topic: Route and the clusters are then what a stream subscribing
	// now would be sent, not what one was.
	Preview       bool                  `json:"preview,omitempty"`
	Proxies       []cache.StreamStatus  `json:"proxies"`
	Route         json.RawMessage       `json:"route"`
	SendEndpoints json.RawMessage       `json:"sendEndpoints,omitempty"`
	Sources       []routing.SourceRoute `json:"sources"`
	Topic         TopicSummary          `json:"topic"`
}

// TopicPolicy is the TopicRoute a topic follows, and the older ones that also match it; Pop is its pop rule, the
// consumer groups Go sidecars put in Pop mode for the topic.
type TopicPolicy struct {
	Overridden []string           `json:"overridden"`
	Pop        *routing.PopPolicy `json:"pop,omitempty"`
	TopicRoute string             `json:"topicRoute"`
}

func (a *Admin) topic(w http.ResponseWriter, r *http.Request) {
	name, ok := validPathTopic(w, r)
	if !ok {
		return
	}
	out, found := a.TopicChain(name)
	if !found {
		topicNotFound(w, name)
		return
	}
	writeJSON(w, out)
}

// TopicChain is one topic's chain (GET /api/v1/topics/NAME, the dashboard's topic page); false when the model has
// no such topic.
func (a *Admin) TopicChain(name string) (TopicChain, bool) {
	t := a.Table.Topic(name)
	if t == nil {
		return TopicChain{}, false
	}
	// The route, cluster and endpoints are those the cache serves: what the streams holding the topic were sent,
	// which may lag the table by a change not applied yet.
	served, _ := a.Cache.ServedTopic(t.Name) // a topic gone meanwhile renders no route
	out := TopicChain{
		Topic:   a.summarize(t),
		Members: t.BrokerSet.Members,
		Route:   rawServed(translate.RouteType, served.Route),
		Preview: served.Route != nil && !served.Held,
		Sources: a.Table.TopicSources(t.Name),
	}
	if c := served.Cluster; c != nil {
		out.Cluster, out.Endpoints = rawServed(translate.ClusterType, &c.Cluster), rawServed(translate.EndpointType, &c.Endpoints)
	}
	if c := served.Send; c != nil {
		out.SendEndpoints = rawServed(translate.EndpointType, &c.Endpoints)
	}
	if policy, overridden := a.Table.TopicPolicy(t.Name); policy != "" {
		out.Policy = &TopicPolicy{TopicRoute: policy, Overridden: overridden, Pop: t.Pop}
	}
	if a.Changes != nil {
		out.Changes = a.Changes.Recent(t.Name, t.Version)
	}
	// The streams holding the topic: through their node's scope, or subscribed to its route by name.
	for _, s := range a.Cache.Streams() {
		held := slices.Contains(s.Scope, t.Name)
		for _, ts := range s.Types {
			held = held || ts.TypeURL == translate.RouteType && slices.Contains(ts.Subscribed, t.Name)
		}
		if held {
			out.Proxies = append(out.Proxies, s)
		}
	}
	return out, true
}

// BrokerSetRow is one broker set in GET /api/v1/brokersets, with the cluster it becomes.
type BrokerSetRow struct {
	Hash    string           `json:"hash"`
	Cluster string           `json:"cluster"`
	Members []routing.Member `json:"members"`
}

func (a *Admin) brokerSets(w http.ResponseWriter, _ *http.Request) {
	var out []BrokerSetRow
	for _, s := range a.Table.BrokerSets() {
		out = append(out, BrokerSetRow{Hash: s.Hash, Cluster: a.Cache.ClusterName(s), Members: s.Members})
	}
	slices.SortFunc(out, func(x, y BrokerSetRow) int { return strings.Compare(x.Cluster, y.Cluster) })
	writeJSON(w, out)
}

func (a *Admin) configDump(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("node")
	if node == "" {
		writeError(w, http.StatusBadRequest, "config_dump needs ?node=NODE_ID: the node whose resources to dump (GET /api/v1/proxies lists them)")
		return
	}
	dump, ok := a.Cache.ConfigDump(node)
	if !ok {
		writeError(w, http.StatusNotFound, "no stream of node "+strconv.Quote(node))
		return
	}
	writeJSON(w, dump)
}

// rawServed renders a resource the cache serves, a message of typeURL, as JSON inside a JSON document.
func rawServed(typeURL string, r *cache.Served) json.RawMessage {
	if r == nil {
		return json.RawMessage("null")
	}
	m, err := (&anypb.Any{TypeUrl: typeURL, Value: r.Body}).UnmarshalNew()
	if err != nil {
		return json.RawMessage(strconv.Quote(err.Error()))
	}
	b, err := protojson.Marshal(m)
	if err != nil {
		return json.RawMessage(strconv.Quote(err.Error()))
	}
	return b
}

// ClusterRow is one served cluster in GET /api/v1/clusters.
type ClusterRow struct {
	Name      string            `json:"name"`
	BrokerSet string            `json:"brokerSet"`
	Endpoints []ClusterEndpoint `json:"endpoints"`
}

// ClusterEndpoint is one endpoint of a ClusterRow: the broker and what Envoy's filter reads of it.
type ClusterEndpoint struct {
	Address    string `json:"address"`
	BrokerName string `json:"brokerName"`
	BrokerID   int64  `json:"brokerId"`
	Perm       int32  `json:"perm"`
	ReadQueues int32  `json:"readQueueNums"`
	Write      int32  `json:"writeQueueNums"`
	Weight     uint32 `json:"weight,omitempty"`
}

// clusters lists the clusters the cache serves, with their endpoints as served.
func (a *Admin) clusters(w http.ResponseWriter, _ *http.Request) {
	out := []ClusterRow{}
	for _, sc := range a.Cache.ServedClusters() {
		var cla endpointv3.ClusterLoadAssignment
		if err := proto.Unmarshal(sc.Endpoints.Body, &cla); err != nil {
			writeError(w, http.StatusInternalServerError, "endpoints of "+sc.Endpoints.Name+": "+err.Error())
			return
		}
		r := ClusterRow{Name: sc.Cluster.Name, BrokerSet: sc.BrokerSet}
		for _, loc := range cla.GetEndpoints() {
			for _, lb := range loc.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				f := lb.GetMetadata().GetFilterMetadata()[translate.FilterNamespace].GetFields()
				r.Endpoints = append(r.Endpoints, ClusterEndpoint{
					Address:    net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)),
					BrokerName: f[translate.KeyBrokerName].GetStringValue(),
					BrokerID:   int64(f[translate.KeyBrokerID].GetNumberValue()),
					Perm:       int32(f[translate.KeyPerm].GetNumberValue()),
					ReadQueues: int32(f[translate.KeyReadQueueNum].GetNumberValue()),
					Write:      int32(f[translate.KeyWriteQueueNum].GetNumberValue()),
					Weight:     lb.GetLoadBalancingWeight().GetValue(),
				})
			}
		}
		out = append(out, r)
	}
	writeJSON(w, out)
}

// route answers the route the cache serves for a topic (ServedTopic: what a stream was sent, or would be).
func (a *Admin) route(w http.ResponseWriter, r *http.Request) {
	name, valid := validPathTopic(w, r)
	if !valid {
		return
	}
	served, ok := a.Cache.ServedTopic(name)
	if !ok {
		topicNotFound(w, name)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(rawServed(translate.RouteType, served.Route))
}

// AdminGuard is the admin API's access rule. /healthz, /readyz and /metrics are open (probes and scrapers need no
// identity); a workload's certificate (a spiffe:// identity) opens nothing else. Debug endpoints (/debug/: profiles, the log level) and every write (a method other than GET or HEAD)
// need an authenticated client: one whose certificate the listener verified against --tls-client-ca, and, when
// operators is not empty, whose common name or a DNS name is in it (sidecars get certificates from the same CA:
// being verified must not be enough to profile the process or change its log level). Without a client CA they
// are refused. With one, the read-only API needs a verified certificate too: mutual TLS covers the whole admin API
// but the probes.
func AdminGuard(next http.Handler, mutualTLS bool, operators []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			next.ServeHTTP(w, r)
			return
		}
		sensitive := strings.HasPrefix(r.URL.Path, "/debug/") || (r.Method != http.MethodGet && r.Method != http.MethodHead)
		switch {
		case authenticated(r) && workload(r):
			writeError(w, http.StatusForbidden, "a workload's certificate (a spiffe:// identity, as the workload CA issues every sidecar) is for xDS, not the admin API")
		case authenticated(r) && (!sensitive || operator(r, operators)):
			next.ServeHTTP(w, r)
		case authenticated(r):
			writeError(w, http.StatusForbidden, fmt.Sprintf("client %q is not one of the operators (--admin-operators) allowed debug and write endpoints", ClientName(r)))
		case sensitive && !mutualTLS:
			writeError(w, http.StatusForbidden, "debug and write endpoints need an authenticated client: serve with --tls-cert, --tls-key and --tls-client-ca, and present a client certificate")
		case sensitive || mutualTLS:
			writeError(w, http.StatusUnauthorized, "this endpoint needs a client certificate signed by the --tls-client-ca")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// operator reports whether an authenticated request's certificate names one of operators (any, when empty).
func operator(r *http.Request, operators []string) bool {
	if len(operators) == 0 {
		return true
	}
	leaf := r.TLS.VerifiedChains[0][0]
	return slices.Contains(operators, leaf.Subject.CommonName) || slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return slices.Contains(operators, n) })
}

func authenticated(r *http.Request) bool { return r.TLS != nil && len(r.TLS.VerifiedChains) > 0 }

// workload reports whether an authenticated request's certificate is a workload's: one naming a spiffe:// identity.
// The workload CA gives one to any service account that asks, so it must open nothing but xDS.
func workload(r *http.Request) bool {
	return slices.ContainsFunc(r.TLS.VerifiedChains[0][0].URIs, func(u *url.URL) bool { return u.Scheme == "spiffe" })
}

// ClientName is the common name of a request's verified client certificate, or "anonymous".
func ClientName(r *http.Request) string {
	if authenticated(r) {
		return r.TLS.VerifiedChains[0][0].Subject.CommonName
	}
	return "anonymous"
}
