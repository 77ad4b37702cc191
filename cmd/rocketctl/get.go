package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// getFlags are get's own flags.
type getFlags struct {
	prefix    string
	selector  string
	limit     int
	sortBy    string
	noHeaders bool
}

// view is how get prints, by the global flags and get's.
func (f *getFlags) view(g *globals) *view {
	return &view{globals: g, sortBy: f.sortBy, noHeaders: f.noHeaders}
}

// getKinds are the kinds `get` knows, with their aliases; the Kubernetes ones read the Kubernetes API.
var getKinds = []struct {
	names []string
	run   func(ctx context.Context, g *globals, f *getFlags, names []string) error
}{
	{[]string{"topics", "topic", "t"}, getTopics},
	{[]string{"brokersets", "brokerset", "bs"}, getBrokerSets},
	{[]string{"clusters", "cluster"}, getClusters},
	{[]string{"routes", "route"}, getRoutes},
	{[]string{"proxies", "proxy"}, getProxies},
	{[]string{"sources", "source"}, getSources},
	{[]string{"changes", "change"}, getChanges},
	{[]string{"policies", "policy"}, getPolicies},
	{[]string{"brokers", "broker"}, getBrokers},
	{[]string{"resources", "resource"}, getResources},
	{[]string{"nameserversources", "nameserversource", "nss"}, orConfigFiles("NameServerSource", getNameServerSources)},
	{[]string{"topicroutes", "topicroute", "tr"}, orConfigFiles("TopicRoute", getTopicRoutes)},
	{[]string{"topicbindings", "topicbinding", "tb"}, orConfigFiles("TopicBinding", getTopicBindings)},
}

func newGetCommand(g *globals) *cobra.Command {
	f := &getFlags{}
	var kinds []string
	for _, k := range getKinds {
		kinds = append(kinds, k.names[0])
	}
	cmd := &cobra.Command{
		Use:   "get KIND [NAME...]",
		Short: "List topics, broker sets, clusters, routes, proxies, the sources' status, or rocketpilot's custom resources",
		Long: "get lists one kind: " + strings.Join(kinds, ", ") + ".\n" +
			"All but the last three come from rocketpilot's admin API (--server): sources (the NameServers' health and the\n" +
			"--config files), changes (the change log; NAME... are topics), policies (TopicRoutes and TopicBindings as the\n" +
			"model holds them), brokers (broker groups and their perms), resources (the --config documents, accepted or\n" +
			"why not). The custom-resource kinds come from the Kubernetes API; without a usable kubeconfig, from the\n" +
			"server's --config files.",
		Example: `  rocketctl get topics --prefix demo-orders-
  rocketctl get topics -l broker=broker-a,cluster=DefaultCluster -o wide
  rocketctl get topics -l 'broker notin (broker-b),policy' --sort-by .version
  rocketctl get topics -o custom-columns=NAME:.name,BROKERSET:.brokerSet --no-headers
  rocketctl get clusters -o jsonpath='{.items[*].name}'
  rocketctl get routes TopicTest -o yaml
  rocketctl get sources -o wide
  rocketctl get changes TopicTest
  rocketctl get resources
  rocketctl get topicroutes -A`,
		Args:      cobra.MinimumNArgs(1),
		ValidArgs: kinds,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, k := range getKinds {
				if slices.Contains(k.names, strings.ToLower(args[0])) {
					return k.run(cmd.Context(), g, f, args[1:])
				}
			}
			return fmt.Errorf("unknown kind %q: want one of %s", args[0], strings.Join(kinds, ", "))
		},
	}
	addOutput(cmd, g, "table", "wide", "json", "yaml", "name")
	checkOutput := cmd.PreRunE
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error { // and kubectl's templates
		if strings.HasPrefix(g.output, jsonPathOutput) || strings.HasPrefix(g.output, customColumnsOutput) {
			return nil
		}
		if err := checkOutput(cmd, args); err != nil {
			return fmt.Errorf("%w, jsonpath=TEMPLATE, custom-columns=HEADER:PATH,...", err)
		}
		return nil
	}
	cmd.Flags().StringVar(&f.prefix, "prefix", "", "topics whose name starts with this")
	cmd.Flags().StringVarP(&f.selector, "selector", "l", "", "topics whose route matches, in kubectl's syntax (=, !=, in (...), notin (...), KEY, !KEY) over broker, brokerSet, cluster (broker cluster or served cluster) and policy (NS/NAME); comma-separated, all must hold; the server selects")
	cmd.Flags().IntVar(&f.limit, "limit", 1000, "at most this many topics or routes (0: all)")
	cmd.Flags().StringVar(&f.sortBy, "sort-by", "", "sort by a field of -o json's items, as a JSONPath (.name, {.version})")
	cmd.Flags().BoolVar(&f.noHeaders, "no-headers", false, "tables without their header line")
	return cmd
}

// listTopics returns the topics of --prefix and --selector, at most --limit, the server selecting; a list the
// limit cut says so on stderr.
func listTopics(ctx context.Context, g *globals, f *getFlags) ([]server.TopicSummary, error) {
	q := url.Values{"prefix": {f.prefix}, "limit": {strconv.Itoa(f.limit)}}
	if f.selector != "" {
		q.Set("labelSelector", f.selector)
	}
	var list server.TopicList
	if err := g.getJSON(ctx, "/api/v1/topics", q, &list); err != nil {
		var nf errNotFound
		if f.selector != "" && !errors.As(err, &nf) {
			return nil, fmt.Errorf("--selector: %w", err)
		}
		return nil, err
	}
	if f.selector != "" && list.LabelSelector == "" {
		return nil, fmt.Errorf("--selector: the server at %s does not select topics by label (older than this rocketctl)", g.server)
	}
	if list.Continue != "" {
		more := "more topics match"
		if f.selector == "" {
			more = fmt.Sprintf("%d more topics", list.Total-len(list.Topics))
		}
		fmt.Fprintf(g.errOut, "(%s after %s: --limit %d cut the list; use --limit 0 for all)\n", more, list.Continue, f.limit)
	}
	return list.Topics, nil
}

func getTopics(ctx context.Context, g *globals, f *getFlags, names []string) error {
	if len(names) == 0 {
		topics, err := listTopics(ctx, g, f)
		if err != nil {
			return err
		}
		return printTopics(f.view(g), topics)
	}
	if f.selector != "" || f.prefix != "" {
		return errors.New("names and --selector or --prefix do not go together, as in kubectl")
	}
	var topics []server.TopicSummary
	var missing []string
	for _, n := range names {
		var chain server.TopicChain
		var nf errNotFound
		switch err := g.getJSON(ctx, "/api/v1/topics/"+url.PathEscape(n), nil, &chain); {
		case errors.As(err, &nf):
			missing = append(missing, n)
		case err != nil:
			return err
		default:
			topics = append(topics, chain.Topic)
		}
	}
	if len(topics) > 0 { // found ones first, then the error for the others, as kubectl
		if err := printTopics(f.view(g), topics); err != nil {
			return err
		}
	}
	return missingError("topic", missing)
}

func printTopics(g *view, topics []server.TopicSummary) error {
	if done, err := printData(g, topics, "topic", func(t server.TopicSummary) string { return t.Name }); done {
		return err
	}
	t := &table{headers: []string{"NAME", "CLUSTER", "BROKERS", "VERSION"}}
	if g.output == "wide" {
		t.headers = append(t.headers, "BROKER SET", "TOPICROUTE")
	}
	for _, tp := range topics {
		row := []string{tp.Name, tp.Cluster, strings.Join(tp.Brokers, ","), strconv.FormatUint(tp.Version, 10)}
		if g.output == "wide" {
			row = append(row, tp.BrokerSet, orNone(tp.Policy))
		}
		t.add(row...)
	}
	return g.printTable(t)
}

func getBrokerSets(ctx context.Context, g *globals, f *getFlags, names []string) error {
	return getListed(ctx, f.view(g), "/api/v1/brokersets", "broker set", names, func(r server.BrokerSetRow) string { return r.Hash }, printBrokerSets)
}

// getListed reads a list from the admin API, keeps the rows named (every row when names is empty), prints them,
// and then reports the names not found.
func getListed[T any](ctx context.Context, g *view, path, kind string, names []string, key func(T) string,
	print func(*view, []T) error) error {
	var rows []T
	if err := g.getJSON(ctx, path, nil, &rows); err != nil {
		return err
	}
	return printNamed(g, rows, kind, names, key, print)
}

// printNamed keeps the rows named (every row when names is empty), prints them, and then reports the names not
// found.
func printNamed[T any](g *view, rows []T, kind string, names []string, key func(T) string, print func(*view, []T) error) error {
	rows = slices.DeleteFunc(rows, func(r T) bool { return len(names) > 0 && !slices.Contains(names, key(r)) })
	missing := notFound(names, rows, key)
	if len(rows) > 0 || len(names) == 0 { // names none of which is found: only the error, as kubectl
		if err := print(g, rows); err != nil {
			return err
		}
	}
	return missingError(kind, missing)
}

func printBrokerSets(g *view, rows []server.BrokerSetRow) error {
	if done, err := printData(g, rows, "brokerset", func(r server.BrokerSetRow) string { return r.Hash }); done {
		return err
	}
	t := &table{headers: []string{"HASH", "CLUSTER", "GROUPS"}}
	if g.output == "wide" {
		t.headers = append(t.headers, "ADDRESSES")
	}
	for _, r := range rows {
		var groups, addrs []string
		for _, m := range r.Members {
			groups = append(groups, fmt.Sprintf("%s(%s,%d/%d)", m.BrokerName, remoting.PermString(m.Perm), m.ReadQueueNums, m.WriteQueueNums))
			for _, a := range m.Addrs {
				addrs = append(addrs, fmt.Sprintf("%s/%d=%s", m.BrokerName, a.ID, a.Addr))
			}
		}
		row := []string{r.Hash, r.Cluster, strings.Join(groups, " ")}
		if g.output == "wide" {
			row = append(row, strings.Join(addrs, ","))
		}
		t.add(row...)
	}
	return g.printTable(t)
}

func getClusters(ctx context.Context, g *globals, f *getFlags, names []string) error {
	return getListed(ctx, f.view(g), "/api/v1/clusters", "cluster", names, func(r server.ClusterRow) string { return r.Name }, printClusters)
}

func printClusters(g *view, rows []server.ClusterRow) error {
	if done, err := printData(g, rows, "cluster", func(r server.ClusterRow) string { return r.Name }); done {
		return err
	}
	t := &table{headers: []string{"NAME", "BROKER SET", "ENDPOINTS"}}
	if g.output == "wide" {
		t.headers = append(t.headers, "HOSTS")
	}
	for _, r := range rows {
		row := []string{r.Name, r.BrokerSet, strconv.Itoa(len(r.Endpoints))}
		if g.output == "wide" {
			var hosts []string
			for _, e := range r.Endpoints {
				host := fmt.Sprintf("%s/%d=%s(%s,%d/%d)", e.BrokerName, e.BrokerID, e.Address, remoting.PermString(e.Perm), e.ReadQueues, e.Write)
				if e.Weight > 0 {
					host += fmt.Sprintf("*%d", e.Weight)
				}
				hosts = append(hosts, host)
			}
			row = append(row, strings.Join(hosts, ","))
		}
		t.add(row...)
	}
	return g.printTable(t)
}

// routeRow is a topic's served RocketMQ route, and its rules summarized: rocketctl's own rows, derived from the
// route the admin API serves (GET /api/v1/routes/NAME, a RouteConfiguration in protobuf's JSON).
type routeRow struct {
	Topic   string          `json:"topic"`
	Cluster string          `json:"cluster"`
	Rules   []routeRule     `json:"rules"`
	Route   json.RawMessage `json:"route"`
}

type routeRule struct {
	Cluster string `json:"cluster"`
	Codes   string `json:"codes"`
	Headers string `json:"headers,omitempty"`
	Subset  string `json:"subset,omitempty"`
}

func getRoutes(ctx context.Context, g *globals, f *getFlags, names []string) error {
	if len(names) == 0 {
		topics, err := listTopics(ctx, g, f)
		if err != nil {
			return err
		}
		for _, t := range topics {
			names = append(names, t.Name)
		}
	}
	var rows []routeRow
	var missing []string
	for _, n := range names {
		var raw json.RawMessage
		if err := g.getJSON(ctx, "/api/v1/routes/"+url.PathEscape(n), nil, &raw); err != nil {
			var nf errNotFound
			if errors.As(err, &nf) { // the others first, then the error (as kubectl)
				missing = append(missing, n)
				continue
			}
			return err
		}
		row, err := summarizeRoute(n, raw)
		if err != nil {
			return err
		}
		rows = append(rows, row)
	}
	if len(rows) > 0 || len(missing) == 0 {
		if err := printRoutes(f.view(g), rows); err != nil {
			return err
		}
	}
	return missingError("route", missing)
}

func summarizeRoute(topic string, raw json.RawMessage) (routeRow, error) {
	var rc rmqv3.RouteConfiguration
	if err := protojson.Unmarshal(raw, &rc); err != nil {
		return routeRow{}, fmt.Errorf("route of %s: %w", topic, err)
	}
	row := routeRow{Topic: topic, Route: raw}
	rules := translate.Rules(&rc) // one per route, in order
	for i, r := range rc.GetRoutes() {
		rule := routeRule{Codes: rules[i].Codes, Headers: strings.Join(rules[i].Headers, ",")}
		switch {
		case rule.Codes == "":
			rule.Codes = "any"
		case rules[i].Inverted:
			rule.Codes = "not " + rule.Codes
		}
		var subset []string
		for _, ns := range []string{translate.LBNamespace, translate.PopNamespace} { // a pop route's invisible time too
			for k, v := range r.GetRoute().GetMetadataMatch().GetFilterMetadata()[ns].GetFields() {
				b, _ := protojson.Marshal(v)
				subset = append(subset, k+"="+string(b))
			}
		}
		slices.Sort(subset)
		rule.Subset = strings.Join(subset, ",")
		rule.Cluster = r.GetRoute().GetCluster()
		row.Cluster = rule.Cluster // the last, the catch-all: the topic's cluster
		row.Rules = append(row.Rules, rule)
	}
	return row, nil
}

func printRoutes(g *view, rows []routeRow) error {
	if done, err := printData(g, rows, "route", func(r routeRow) string { return r.Topic }); done {
		return err
	}
	if g.output == "wide" {
		t := &table{headers: []string{"TOPIC", "CLUSTER", "CODES", "HEADERS", "SUBSET"}}
		for _, r := range rows {
			for _, rule := range r.Rules {
				t.add(r.Topic, rule.Cluster, rule.Codes, orNone(rule.Headers), orNone(rule.Subset))
			}
		}
		return g.printTable(t)
	}
	t := &table{headers: []string{"TOPIC", "CLUSTER", "RULES"}}
	for _, r := range rows {
		t.add(r.Topic, r.Cluster, strconv.Itoa(len(r.Rules)))
	}
	return g.printTable(t)
}

func getProxies(ctx context.Context, g *globals, f *getFlags, names []string) error {
	var streams []cache.StreamStatus
	if err := g.getJSON(ctx, "/api/v1/proxies", nil, &streams); err != nil {
		return err
	}
	streams = slices.DeleteFunc(streams, func(s cache.StreamStatus) bool { return len(names) > 0 && !slices.Contains(names, s.Node) })
	missing := notFound(names, streams, func(s cache.StreamStatus) string { return s.Node })
	slices.SortFunc(streams, func(a, b cache.StreamStatus) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return int(a.ID - b.ID)
	})
	if len(streams) > 0 || len(missing) == 0 { // the connected ones first, then the error (as kubectl)
		if err := printProxies(f.view(g), streams, time.Now()); err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no connected proxy has node id %s", quoteNames(missing))
	}
	return nil
}

func printProxies(g *view, streams []cache.StreamStatus, now time.Time) error {
	if done, err := printData(g, streams, "proxy", func(s cache.StreamStatus) string { return s.Node }); done {
		return err
	}
	t := &table{headers: []string{"NODE", "STREAM", "PROTOCOL", "TOPICS", "TYPES", "AGE"}}
	if g.output == "wide" {
		t.headers = append(t.headers, "SCOPE")
	}
	for _, s := range streams {
		protocol := "sotw"
		if s.Delta {
			protocol = "delta"
		}
		topics := len(s.Scope)
		var types []string
		for _, ts := range s.Types {
			if ts.TypeURL == translate.RouteType {
				topics = max(topics, len(ts.Subscribed))
			}
			types = append(types, shortType(ts.TypeURL))
		}
		slices.Sort(types)
		row := []string{s.Node, strconv.FormatInt(s.ID, 10), protocol, strconv.Itoa(topics), strings.Join(types, ","), age(s.Opened, now)}
		if g.output == "wide" {
			row = append(row, orNone(strings.Join(s.Scope, ",")))
		}
		t.add(row...)
	}
	return g.printTable(t)
}

// shortType names a type URL as proxy-status and proxy-config do.
func shortType(typeURL string) string {
	switch typeURL {
	case translate.ClusterType:
		return "CDS"
	case translate.EndpointType:
		return "EDS"
	case translate.ListenerType:
		return "LDS"
	case translate.ExtensionType:
		return "ECDS"
	case translate.RouteType:
		return "ROUTES"
	}
	return typeURL[strings.LastIndex(typeURL, ".")+1:]
}

// notFound returns the names no row has.
func notFound[T any](names []string, rows []T, name func(T) string) []string {
	var out []string
	for _, n := range names {
		if !slices.ContainsFunc(rows, func(r T) bool { return name(r) == n }) {
			out = append(out, n)
		}
	}
	return out
}

// missingError is the error for names not found, after what was found is printed (as kubectl does).
func missingError(kind string, missing []string) error {
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%s %s not found", kind, quoteNames(missing))
}

// quoteNames quotes names as describe quotes a name (a name may hold spaces, or be empty), comma-separated.
func quoteNames(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	return strings.Join(quoted, ", ")
}
