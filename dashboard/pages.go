package dashboard

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// proxyCounts are connected streams by their worst sync state.
type proxyCounts struct{ Total, Synced, Stale, Nacked int }

// nackRow is one standing NACK: a stream's type whose last response was rejected.
type nackRow struct {
	Node, Type, Error string
	StreamID          int64
}

// streamState is a stream's worst state over its types: NACKED before STALE before SYNCED.
func streamState(s cache.StreamStatus) string {
	state := cache.Synced
	for _, t := range s.Types {
		switch {
		case t.State == cache.Nacked:
			return cache.Nacked
		case t.State == cache.Stale:
			state = cache.Stale
		}
	}
	return state
}

func countStreams(streams []cache.StreamStatus) (proxyCounts, []nackRow) {
	c := proxyCounts{Total: len(streams)}
	var nacks []nackRow
	for _, s := range streams {
		switch streamState(s) {
		case cache.Nacked:
			c.Nacked++
		case cache.Stale:
			c.Stale++
		default:
			c.Synced++
		}
		for _, t := range s.Types {
			if t.NackError != "" {
				nacks = append(nacks, nackRow{Node: s.Node, Type: cache.TypeLabel(t.TypeURL), Error: t.NackError, StreamID: s.ID})
			}
		}
	}
	return c, nacks
}

// sourceRow is one NameServer of a watcher, or one file of the file source.
type sourceRow struct {
	Source, Kind, Target, Status, Error, Mode string
	Healthy                                   bool
	LastSuccess                               time.Time
	Topics, Brokers                           int
	Errors                                    int64
	Latency                                   time.Duration
}

func (d *Dashboard) sourceRows() []sourceRow {
	var rows []sourceRow
	var statuses []watcher.Status
	if d.cfg.Sources != nil {
		statuses = d.cfg.Sources()
	}
	slices.SortStableFunc(statuses, func(a, b watcher.Status) int { return strings.Compare(a.Source, b.Source) })
	for _, s := range statuses {
		for _, ns := range s.NameServers {
			r := sourceRow{Source: s.Source, Kind: "NameServer", Target: ns.Addr, Error: ns.LastError, Mode: string(s.Mode),
				LastSuccess: ns.LastSuccess, Topics: s.Topics, Brokers: ns.Brokers, Errors: ns.Errors, Latency: ns.LastLatency}
			r.Status, r.Healthy = ns.State(), ns.Reachable
			rows = append(rows, r)
		}
	}
	return rows
}

// fileRow is one file of the file source: its documents, accepted or why not.
type fileRow struct {
	File      string
	Documents []controllers.FileResourceStatus
	Rejected  int
}

func (d *Dashboard) fileRows() []fileRow {
	if d.cfg.Files == nil {
		return nil
	}
	var rows []fileRow
	for _, doc := range d.cfg.Files() {
		if len(rows) == 0 || rows[len(rows)-1].File != doc.File {
			rows = append(rows, fileRow{File: doc.File})
		}
		r := &rows[len(rows)-1]
		r.Documents = append(r.Documents, doc)
		if !doc.Accepted {
			r.Rejected++
		}
	}
	return rows
}

type overviewView struct {
	Topics, BrokerSets, Brokers, Policies, Bindings int
	Proxies                                         proxyCounts
	NACKs                                           []nackRow
	Sources                                         []sourceRow
	Files                                           []fileRow
	Changes                                         []server.Change
	Charts                                          []chart
}

func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	a := d.cfg.Admin
	_, topics := a.Table.TopicNames("", "", 1)
	v := overviewView{Topics: topics, BrokerSets: len(a.Table.BrokerSets()), Brokers: len(a.Table.Brokers()),
		Policies: len(a.Table.PolicyNames()), Bindings: len(a.Table.Bindings()), Sources: d.sourceRows(), Files: d.fileRows(),
		Changes: d.recentChanges(10), Charts: d.charts()}
	v.Proxies, v.NACKs = countStreams(a.Cache.StreamStates())
	d.render(w, r, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Live: "change proxies sample", API: "/api/v1/version"}, v)
}

// recentChanges are the change log's last n entries, newest first (all for n = 0).
func (d *Dashboard) recentChanges(n int) []server.Change {
	if d.cfg.Admin.Changes == nil {
		return nil
	}
	all := d.cfg.Admin.Changes.Recent("", 0)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	slices.Reverse(all)
	return all
}

type topicsView struct {
	Query, Selector string
	Error           string
	List            server.TopicList
	// Exact is set when a topic has exactly the searched name.
	Exact string
	// After is the page's start (the continue token it was asked with); Next the next page's.
	After, Next string
}

func (d *Dashboard) topics(w http.ResponseWriter, r *http.Request) {
	a := d.cfg.Admin
	q := r.URL.Query()
	v := topicsView{Query: strings.TrimSpace(q.Get("q")), Selector: q.Get("selector"), After: q.Get("after")}
	sel, err := a.ParseTopicSelector(v.Selector)
	code := http.StatusOK
	if err != nil {
		v.Error, code = "label selector: "+err.Error(), http.StatusBadRequest
	} else {
		v.List = a.TopicPage(r.Context(), v.Query, v.After, sel, d.cfg.PageSize)
		v.Next = v.List.Continue
		if v.Query != "" && a.Table.Topic(v.Query) != nil {
			v.Exact = v.Query
		}
	}
	p := page{Title: "Topics", Nav: "topics", Live: "change", API: "/api/v1/topics"}
	if v.Selector != "" {
		// A selector that matches few topics walks far for its page: such a page is not re-rendered at every change.
		p.Live = ""
	}
	d.render(w, r, code, "topics", p, v)
}

// ruleRow is one route of the topic's table with the brokers its subset reaches.
type ruleRow struct {
	translate.Rule
	Brokers []string
}

// condition is a TopicRoute condition as its status would have it.
type condition struct {
	Type, Status, Message string
	Bad                   bool
}

type topicView struct {
	Chain      server.TopicChain
	Rules      []ruleRow
	Diagram    any // template.HTML
	Conditions []condition
	// Proxies are the first maxTopicProxies of those holding the topic; MoreProxies how many are left out.
	Proxies     []proxyRow
	MoreProxies int
	// Changes are the topic's changes, newest first.
	Changes []server.Change
}

// maxTopicProxies is how many of the proxies holding a topic its page lists.
const maxTopicProxies = 50

func (d *Dashboard) topic(w http.ResponseWriter, r *http.Request) {
	a := d.cfg.Admin
	name := r.PathValue("name")
	chain, ok := a.TopicChain(name)
	if !ok {
		d.render(w, r, http.StatusNotFound, "notfound", page{Title: "Topic not found", Nav: "topics", Live: "change"},
			notFound{What: "topic " + strconv.Quote(name), Hint: "It may not exist at the NameServers yet: this page shows it once it does."})
		return
	}
	v := topicView{Chain: chain, Changes: slices.Clone(chain.Changes)}
	slices.Reverse(v.Changes)
	// The rules are read from the route in the chain itself, so that table and diagram show one served version.
	var rc rmqv3.RouteConfiguration
	if len(chain.Route) > 0 && string(chain.Route) != "null" && protojson.Unmarshal(chain.Route, &rc) == nil {
		for _, rule := range translate.Rules(&rc) {
			v.Rules = append(v.Rules, ruleRow{Rule: rule, Brokers: reached(rule, chain.Members)})
		}
	}
	if p := chain.Policy; p != nil {
		v.Conditions = d.conditions(p.TopicRoute, name)
	}
	for i, s := range chain.Proxies {
		if i == maxTopicProxies {
			v.MoreProxies = len(chain.Proxies) - i
			break
		}
		v.Proxies = append(v.Proxies, proxyRowOf(s))
	}
	v.Diagram = chainDiagram(chain, v.Rules, v.Proxies, len(chain.Proxies))
	d.render(w, r, http.StatusOK, "topic", page{Title: "Topic " + name, Nav: "topics", Live: "change proxies", API: "/api/v1/topics/" + url.PathEscape(name)}, v)
}

// reached are the broker groups a rule's subset selects among a topic's members (every member for the whole
// cluster).
func reached(rule translate.Rule, members []routing.Member) []string {
	var out []string
	for i := range members {
		m := &members[i]
		ok := true
		switch {
		case rule.Subset == translate.SubsetWritable:
			ok = m.Writable()
		case rule.Subset == translate.SubsetReadable:
			ok = m.Readable()
		case strings.HasPrefix(rule.Subset, translate.SubsetBrokerName+"="):
			ok = rule.Subset == translate.SubsetBrokerName+"="+m.BrokerName
		case rule.Kind == "send" && rule.Subset == "": // a weighted send cluster: the writable masters
			ok = m.Writable()
		}
		if ok {
			out = append(out, m.BrokerName)
		}
	}
	return out
}

// conditions are a TopicRoute's conditions as the leader writes them to its status (controllers), derived from the
// same model: Resolved, Conflicted, and Rejected when a proxy rejected a response carrying the topic.
func (d *Dashboard) conditions(policy, topic string) []condition {
	a := d.cfg.Admin
	ps := a.Table.PolicyStatus(policy)
	out := []condition{{Type: "Resolved", Status: "True", Message: "every backend names a known broker cluster or group"}}
	if len(ps.UnknownBackends) > 0 {
		out[0] = condition{Type: "Resolved", Status: "False", Bad: true, Message: "no broker cluster or group of that name: " + strings.Join(ps.UnknownBackends, ", ")}
	}
	if ps.Overridden > 0 {
		out = append(out, condition{Type: "Conflicted", Status: "True", Bad: true,
			Message: strconv.Itoa(ps.Overridden) + " matched topics follow an older TopicRoute: " + strings.Join(ps.OverriddenBy, ", ")})
	} else {
		out = append(out, condition{Type: "Conflicted", Status: "False", Message: "no older TopicRoute claims its topics"})
	}
	var rejected []string
	for _, rej := range a.Cache.Rejections() {
		if slices.Contains(rej.Topics, topic) {
			rejected = append(rejected, rej.Node+" ("+cache.TypeLabel(rej.TypeURL)+"): "+rej.Error)
		}
	}
	if len(rejected) > 0 {
		out = append(out, condition{Type: "Rejected", Status: "True", Bad: true, Message: strings.Join(rejected, "; ")})
	}
	return out
}

// proxyRow is one stream as the proxies page lists it.
type proxyRow struct {
	cache.StreamStatus
	State string
	// Types are the stream's types by short name, with their state.
	Types []typeRow
	NACK  string
}

type typeRow struct {
	Label string
	cache.TypeStatus
}

func proxyRowOf(s cache.StreamStatus) proxyRow {
	p := proxyRow{StreamStatus: s, State: streamState(s)}
	for _, t := range s.Types {
		p.Types = append(p.Types, typeRow{Label: cache.TypeLabel(t.TypeURL), TypeStatus: t})
		if t.NackError != "" && p.NACK == "" {
			p.NACK = t.NackError
		}
	}
	return p
}

type proxiesView struct {
	Counts proxyCounts
	Rows   []proxyRow
	// Offset is the page's first row; Prev and Next the neighbours' (-1: none).
	Offset, Prev, Next int
	State              string
}

func (d *Dashboard) proxies(w http.ResponseWriter, r *http.Request) {
	streams := d.cfg.Admin.Cache.StreamStates()
	slices.SortStableFunc(streams, func(a, b cache.StreamStatus) int { return cmp.Compare(a.Node, b.Node) })
	v := proxiesView{State: r.URL.Query().Get("state"), Prev: -1, Next: -1}
	v.Counts, _ = countStreams(streams)
	if v.State != "" {
		streams = slices.DeleteFunc(streams, func(s cache.StreamStatus) bool { return streamState(s) != v.State })
	}
	v.Offset, _ = strconv.Atoi(r.URL.Query().Get("offset"))
	v.Offset = max(0, min(v.Offset, len(streams)))
	end := min(len(streams), v.Offset+d.cfg.PageSize)
	for _, s := range streams[v.Offset:end] {
		v.Rows = append(v.Rows, proxyRowOf(s))
	}
	if v.Offset > 0 {
		v.Prev = max(0, v.Offset-d.cfg.PageSize)
	}
	if end < len(streams) {
		v.Next = end
	}
	d.render(w, r, http.StatusOK, "proxies", page{Title: "Proxies", Nav: "proxies", Live: "proxies", API: "/api/v1/proxies"}, v)
}

type proxyView struct {
	Detail server.ProxyDetail
	Rows   []proxyRow
}

func (d *Dashboard) proxy(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	detail, ok := d.cfg.Admin.ProxyDetail(node, 200)
	if !ok {
		d.render(w, r, http.StatusNotFound, "notfound", page{Title: "Proxy not found", Nav: "proxies", Live: "proxies"},
			notFound{What: "proxy " + strconv.Quote(node), Hint: "No open stream has this node id; this page shows it when one connects."})
		return
	}
	v := proxyView{Detail: detail}
	for _, s := range detail.Streams {
		v.Rows = append(v.Rows, proxyRowOf(s))
	}
	d.render(w, r, http.StatusOK, "proxy", page{Title: "Proxy " + node, Nav: "proxies", Live: "proxies", API: "/api/v1/proxies/" + url.PathEscape(node)}, v)
}

// policyRow is one TopicRoute with its status.
type policyRow struct {
	Name string
	routing.PolicyStatus
}

type sourcesView struct {
	NameServers []sourceRow
	Files       []fileRow
	Policies    []policyRow
	Bindings    []string
}

func (d *Dashboard) sources(w http.ResponseWriter, r *http.Request) {
	a := d.cfg.Admin
	v := sourcesView{NameServers: d.sourceRows(), Files: d.fileRows()}
	for _, n := range a.Table.PolicyNames() {
		v.Policies = append(v.Policies, policyRow{Name: n, PolicyStatus: a.Table.PolicyStatus(n)})
	}
	for _, b := range a.Table.Bindings() {
		v.Bindings = append(v.Bindings, b.Name)
	}
	d.render(w, r, http.StatusOK, "sources", page{Title: "Sources", Nav: "sources", Live: "change sample", API: "/api/v1/sources"}, v)
}

type changesView struct {
	Changes []server.Change
	Charts  []chart
}

func (d *Dashboard) changes(w http.ResponseWriter, r *http.Request) {
	v := changesView{Changes: d.recentChanges(0), Charts: d.charts()}
	d.render(w, r, http.StatusOK, "changes", page{Title: "Changes", Nav: "changes", Live: "change sample", API: "/api/v1/changes"}, v)
}
