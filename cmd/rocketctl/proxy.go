package main

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

var statusTypes = []string{translate.ClusterType, translate.EndpointType, translate.ListenerType, translate.ExtensionType, translate.RouteType}

func newProxyStatusCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy-status [NODE]",
		Short: "Every connected sidecar, per resource type SYNCED, STALE or NACKED (with the NACK error)",
		Example: `  rocketctl proxy-status
  rocketctl proxy-status orders-7f9c`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var streams []cache.StreamStatus
			if err := g.getJSON(cmd.Context(), "/api/v1/proxies", nil, &streams); err != nil {
				return err
			}
			if len(args) == 1 {
				streams = slices.DeleteFunc(streams, func(s cache.StreamStatus) bool { return s.Node != args[0] })
				if len(streams) == 0 {
					return fmt.Errorf("no connected proxy has node id %q", args[0])
				}
			}
			slices.SortFunc(streams, func(a, b cache.StreamStatus) int {
				if c := strings.Compare(a.Node, b.Node); c != 0 {
					return c
				}
				return int(a.ID - b.ID)
			})
			switch g.output {
			case "json":
				return printJSON(g.out, streams)
			case "yaml":
				return printYAML(g.out, streams)
			}
			if len(args) == 1 {
				return printProxyDetail(g, streams, time.Now())
			}
			if len(streams) == 0 {
				return noResources(g)
			}
			return printProxyStatus(g, streams, time.Now())
		},
	}
	addOutput(cmd, g, "table", "json", "yaml")
	return cmd
}

// printProxyStatus is one line per stream, one column per type, as istioctl proxy-status; NACK errors follow.
func printProxyStatus(g *globals, streams []cache.StreamStatus, now time.Time) error {
	t := &table{headers: []string{"NODE", "STREAM"}}
	for _, ty := range statusTypes {
		t.headers = append(t.headers, shortType(ty))
	}
	t.headers = append(t.headers, "AGE")
	for _, s := range streams {
		row := []string{s.Node, fmt.Sprint(s.ID)}
		for _, ty := range statusTypes {
			state := "-"
			for _, ts := range s.Types {
				if ts.TypeURL == ty {
					state = ts.State
				}
			}
			row = append(row, state)
		}
		t.add(append(row, age(s.Opened, now))...)
	}
	if len(t.rows) == 0 {
		return noResources(g)
	}
	if err := t.print(g.out); err != nil {
		return err
	}
	printProxyNotes(g, streams)
	return nil
}

// printProxyNotes lists, after a status table, the NACKs (a sidecar that lacks an extension said apart: it is not
// the configuration's fault) and the configs make-before-break holds back, with the clusters they wait for.
func printProxyNotes(g *globals, streams []cache.StreamStatus) {
	var nacks, held []string
	for _, s := range streams {
		for _, ty := range statusTypes {
			for _, ts := range s.Types {
				if ts.TypeURL != ty {
					continue
				}
				where := fmt.Sprintf("%s stream %d %s", s.Node, s.ID, shortType(ty))
				switch {
				case ts.MissingExtension != "":
					nacks = append(nacks, fmt.Sprintf("%s: the sidecar lacks %s; run Envoy 1.28 or later with the contrib RocketMQ filter (%s)",
						where, ts.MissingExtension, ts.NackError))
				case ts.NackError != "":
					nacks = append(nacks, fmt.Sprintf("%s: %s", where, ts.NackError))
				}
				if len(ts.WaitingFor) > 0 {
					held = append(held, fmt.Sprintf("%s: waits for the node to accept these clusters and their endpoints: %s", where, strings.Join(ts.WaitingFor, ", ")))
				}
			}
		}
	}
	for _, section := range []struct {
		title string
		lines []string
	}{{"NACKs:", nacks}, {"Held until the node accepts their clusters (make-before-break):", held}} {
		if len(section.lines) > 0 {
			fmt.Fprintln(g.out, "\n"+section.title)
			for _, line := range section.lines {
				fmt.Fprintln(g.out, "  "+line)
			}
		}
	}
}

// printProxyDetail is one line per type of each of a node's streams.
func printProxyDetail(g *globals, streams []cache.StreamStatus, now time.Time) error {
	t := &table{headers: []string{"STREAM", "TYPE", "STATE", "SUBSCRIBED", "SENT VERSION", "ACKED VERSION", "SENT", "ERROR"}}
	for _, s := range streams {
		for _, ts := range s.Types {
			sub := fmt.Sprint(len(ts.Subscribed))
			if ts.Wildcard {
				sub = "* +" + sub
			}
			sent := "-"
			if !ts.SentAt.IsZero() {
				sent = age(ts.SentAt, now) + " ago"
			}
			t.add(fmt.Sprint(s.ID), shortType(ts.TypeURL), ts.State, sub, orNone(ts.SentVersion), orNone(ts.AckedVersion), sent, orNone(ts.NackError))
		}
	}
	if len(t.rows) == 0 {
		return noResources(g)
	}
	if err := t.print(g.out); err != nil {
		return err
	}
	printProxyNotes(g, streams)
	return nil
}

// configKinds are proxy-config's types, in the order "all" prints them.
var configKinds = []struct{ name, typeURL string }{
	{"listeners", translate.ListenerType}, {"ecds", translate.ExtensionType}, {"routes", translate.RouteType},
	{"clusters", translate.ClusterType}, {"endpoints", translate.EndpointType},
}

func configKindNames() []string {
	var names []string
	for _, k := range configKinds {
		names = append(names, k.name)
	}
	return append(names, "all")
}

func newProxyConfigCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy-config NODE [listeners|ecds|routes|clusters|endpoints|all]",
		Short: "What a connected node is served, by resource type: tables, or the resources with -o yaml|json",
		Long: `proxy-config shows what the newest stream of a connected node is served, one table per resource type
(as istioctl proxy-config): listeners, ECDS, routes (each topic's clusters by request code), clusters (endpoints
and load balancing) and endpoints (each broker's address, name, id and perm). Only the types the node subscribes
to are shown: a Go sidecar asks for routes and endpoints, an Envoy for every type. -o yaml|json prints the
resources themselves, each with its version.`,
		Example: `  rocketctl proxy-config orders-7f9c
  rocketctl proxy-config orders-7f9c endpoints
  rocketctl proxy-config orders-7f9c ecds -o yaml
  rocketctl proxy-config orders-7f9c all -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := "all"
			if len(args) == 2 {
				kind = strings.ToLower(args[1])
			}
			if !slices.Contains(configKindNames(), kind) {
				return fmt.Errorf("unknown config kind %q: want %s", args[1], strings.Join(configKindNames(), ", "))
			}
			var dump map[string][]cache.DumpedResource
			if err := g.getJSON(cmd.Context(), "/api/v1/config_dump", url.Values{"node": {args[0]}}, &dump); err != nil {
				return err
			}
			subscribed, err := subscribedTypes(cmd, g, args[0])
			if err != nil {
				return err
			}
			return printProxyConfig(g, dump, subscribed, args[0], kind)
		},
	}
	addOutput(cmd, g, "table", "yaml", "json")
	return cmd
}

// subscribedTypes are the resource types the newest stream of a node subscribes to; nil when the node has no
// stream any more (its dump is then shown whole).
func subscribedTypes(cmd *cobra.Command, g *globals, node string) (map[string]bool, error) {
	var streams []cache.StreamStatus
	if err := g.getJSON(cmd.Context(), "/api/v1/proxies", nil, &streams); err != nil {
		return nil, err
	}
	var newest *cache.StreamStatus
	for i, s := range streams {
		if s.Node == node && (newest == nil || s.ID > newest.ID) {
			newest = &streams[i]
		}
	}
	if newest == nil {
		return nil, nil
	}
	types := map[string]bool{}
	for _, ts := range newest.Types {
		types[ts.TypeURL] = true
	}
	return types, nil
}

// printProxyConfig prints a node's dump: of one kind, or "all" of the types it subscribes to (nil: every type).
func printProxyConfig(g *globals, dump map[string][]cache.DumpedResource, subscribed map[string]bool, node, kind string) error {
	var kinds []string // type URLs to show
	for _, k := range configKinds {
		if kind == k.name || (kind == "all" && (subscribed == nil || subscribed[k.typeURL])) {
			kinds = append(kinds, k.typeURL)
		}
	}
	unsubscribed := kind != "all" && subscribed != nil && !subscribed[kinds[0]]
	if g.output == "json" || g.output == "yaml" {
		var out any
		if kind == "all" {
			m := map[string][]cache.DumpedResource{}
			for _, ty := range kinds {
				m[ty] = orEmpty(dump[ty])
			}
			out = m
		} else {
			out = orEmpty(dump[kinds[0]])
			if unsubscribed {
				out = []cache.DumpedResource{}
			}
		}
		if g.output == "json" {
			return printJSON(g.out, out)
		}
		return printYAML(g.out, out)
	}
	if unsubscribed {
		fmt.Fprintf(g.errOut, "Node %s does not subscribe to %s (%s); it subscribes to %s.\n", node, kind, shortType(kinds[0]), typeList(subscribed))
		return nil
	}
	if len(kinds) == 0 {
		fmt.Fprintf(g.errOut, "Node %s subscribes to no resource type yet.\n", node)
		return nil
	}
	for i, ty := range kinds {
		t, err := configTable(ty, dump)
		if err != nil {
			return err
		}
		if len(t.rows) == 0 { // as kubectl: on stderr
			if err := noResources(g); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(g.out)
		}
		if err := t.print(g.out); err != nil {
			return err
		}
	}
	return nil
}

func orEmpty(rs []cache.DumpedResource) []cache.DumpedResource {
	if rs == nil {
		return []cache.DumpedResource{}
	}
	return rs
}

// typeList names the types of a set in proxy-status's order and words.
func typeList(types map[string]bool) string {
	var names []string
	for _, ty := range statusTypes {
		if types[ty] {
			names = append(names, shortType(ty))
		}
	}
	if len(names) == 0 {
		return "nothing"
	}
	return strings.Join(names, ", ")
}

// configTable is one type of a dump as a table: the fields of each resource that matter to RocketMQ routing.
func configTable(typeURL string, dump map[string][]cache.DumpedResource) (*table, error) {
	decode := protojson.UnmarshalOptions{DiscardUnknown: true} // the resource's "@type" is not a field
	var t *table
	for _, r := range dump[typeURL] {
		var err error
		switch typeURL {
		case translate.ListenerType:
			t = orTable(t, "NAME", "ADDRESS", "FILTERS", "VERSION")
			var l listenerv3.Listener
			if err = decode.Unmarshal(r.Resource, &l); err == nil {
				t.add(r.Name, socketAddress(l.GetAddress()), listenerFilters(&l), r.Version)
			}
		case translate.ExtensionType:
			t = orTable(t, "NAME", "TYPE", "TOPICS", "ROUTES", "VERSION")
			var e corev3.TypedExtensionConfig
			if err = decode.Unmarshal(r.Resource, &e); err == nil {
				var p rmqv3.RocketmqProxy
				topics := map[string]bool{}
				if e.GetTypedConfig().MessageIs(&p) {
					if err = e.GetTypedConfig().UnmarshalTo(&p); err == nil {
						for _, rt := range p.GetRouteConfig().GetRoutes() {
							topics[rt.GetMatch().GetTopic().GetExact()] = true
						}
					}
				}
				typeName := e.GetTypedConfig().GetTypeUrl()
				t.add(r.Name, typeName[strings.LastIndex(typeName, ".")+1:], strconv.Itoa(len(topics)),
					strconv.Itoa(len(p.GetRouteConfig().GetRoutes())), r.Version)
			}
		case translate.RouteType:
			t = orTable(t, "TOPIC", "CLUSTERS BY CODE", "VERSION")
			var rc rmqv3.RouteConfiguration
			if err = decode.Unmarshal(r.Resource, &rc); err == nil {
				t.add(r.Name, clustersByCode(&rc), r.Version)
			}
		case translate.ClusterType:
			t = orTable(t, "NAME", "ENDPOINTS", "LB", "SUBSET KEYS", "VERSION")
			var c clusterv3.Cluster
			if err = decode.Unmarshal(r.Resource, &c); err == nil {
				t.add(r.Name, endpointCount(dump, c.GetEdsClusterConfig().GetServiceName(), r.Name), c.GetLbPolicy().String(),
					subsetKeys(&c), r.Version)
			}
		case translate.EndpointType:
			t = orTable(t, "CLUSTER", "ADDRESS", "BROKER", "ID", "PERM", "QUEUES R/W", "VERSION")
			var cla endpointv3.ClusterLoadAssignment
			if err = decode.Unmarshal(r.Resource, &cla); err == nil {
				for _, loc := range cla.GetEndpoints() {
					for _, lb := range loc.GetLbEndpoints() {
						f := lb.GetMetadata().GetFilterMetadata()[translate.FilterNamespace].GetFields()
						num := func(key string) string { return strconv.FormatFloat(f[key].GetNumberValue(), 'f', -1, 64) }
						t.add(r.Name, socketAddress(lb.GetEndpoint().GetAddress()), f[translate.KeyBrokerName].GetStringValue(),
							num(translate.KeyBrokerID), remoting.PermString(int32(f[translate.KeyPerm].GetNumberValue())),
							num(translate.KeyReadQueueNum)+"/"+num(translate.KeyWriteQueueNum), r.Version)
					}
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", shortType(typeURL), r.Name, err)
		}
	}
	if t == nil {
		t = &table{} // prints "No resources found."
	}
	return t, nil
}

func orTable(t *table, headers ...string) *table {
	if t == nil {
		return &table{headers: headers}
	}
	return t
}

func socketAddress(a *corev3.Address) string {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "-"
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
}

// listenerFilters names a listener's network filters, "(ECDS)" after one whose config comes from ECDS.
func listenerFilters(l *listenerv3.Listener) string {
	var names []string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			name := f.GetName()
			if f.GetConfigDiscovery() != nil {
				name += " (ECDS)"
			}
			names = append(names, name)
		}
	}
	return orNone(strings.Join(names, ","))
}

// clustersByCode is a topic's route rules as the clusters they send to, each with its request codes in rule
// order: "rmq-X-send(10|310) rmq-X(50,51,not 51)".
func clustersByCode(rc *rmqv3.RouteConfiguration) string {
	var clusters []string
	codes := map[string][]string{}
	for _, r := range rc.GetRoutes() {
		code := "any"
		for _, h := range r.GetMatch().GetHeaders() {
			if h.GetName() != translate.HeaderCode {
				continue
			}
			code = h.GetStringMatch().GetExact()
			if re := h.GetStringMatch().GetSafeRegex().GetRegex(); re != "" {
				code = re
			}
			if h.GetInvertMatch() {
				code = "not " + code
			}
		}
		c := r.GetRoute().GetCluster()
		if _, ok := codes[c]; !ok {
			clusters = append(clusters, c)
		}
		if !slices.Contains(codes[c], code) {
			codes[c] = append(codes[c], code)
		}
	}
	var out []string
	for _, c := range clusters {
		out = append(out, c+"("+strings.Join(codes[c], ",")+")")
	}
	return orNone(strings.Join(out, " "))
}

// endpointCount is how many endpoints the dump's assignment of a cluster has ("-" when it holds none).
func endpointCount(dump map[string][]cache.DumpedResource, names ...string) string {
	for _, r := range dump[translate.EndpointType] {
		if !slices.Contains(names, r.Name) {
			continue
		}
		var cla endpointv3.ClusterLoadAssignment
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(r.Resource, &cla); err != nil {
			return "?"
		}
		n := 0
		for _, loc := range cla.GetEndpoints() {
			n += len(loc.GetLbEndpoints())
		}
		return strconv.Itoa(n)
	}
	return "-"
}

// subsetKeys are the keys of a cluster's subset selectors, "|" between the keys of one selector.
func subsetKeys(c *clusterv3.Cluster) string {
	var sel []string
	for _, s := range c.GetLbSubsetConfig().GetSubsetSelectors() {
		sel = append(sel, strings.Join(s.GetKeys(), "|"))
	}
	return orNone(strings.Join(sel, ","))
}
