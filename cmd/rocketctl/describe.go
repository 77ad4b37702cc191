package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

func newDescribeCommand(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "describe (topic NAME | proxy NODE | brokerset HASH | cluster NAME | topicroute [NAMESPACE/]NAME | sidecar)",
		Short: "Show one object whole: a topic's chain, a proxy, a broker set or cluster, a TopicRoute, or a Go sidecar",
		Long: `describe shows one object from rocketpilot's admin API, as kubectl describe does:
  topic NAME          its whole chain: NameServer route, policy, served route, cluster, endpoints, proxies, changes
  proxy NODE          a connected node (alias node): metadata, bindings, scope, what it holds, sync state, NACKs
  brokerset HASH      a broker set (alias bs): members, the clusters it renders to, the topics using it
  cluster NAME        the same, of the broker set a served cluster renders
  topicroute NAME     a TopicRoute (alias tr; NAMESPACE/NAME, or NAME in -n's namespace, "default" without -n):
                      its rules, the topics it governs and those it lost to older TopicRoutes
describe sidecar shows one Go sidecar from its own admin listener: --server is then the sidecar's --admin-address.`,
		Example: `  rocketctl describe topic TopicTest
  rocketctl describe topic TopicTest -o yaml
  rocketctl describe proxy orders-7f9c
  rocketctl describe cluster rmq-DefaultCluster-993f94162441f865
  rocketctl describe tr inventory-migration -n default
  rocketctl describe sidecar --server 127.0.0.1:15000`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := strings.ToLower(args[0])
			d, ok := describers[kind]
			if !ok {
				return fmt.Errorf("describe knows topics, proxies, brokersets, clusters, topicroutes and sidecars, not %q", args[0])
			}
			if d.named != (len(args) == 2) {
				if d.named {
					return usageError{fmt.Errorf("describe %s needs the %s's name", d.kind, d.kind)}
				}
				return fmt.Errorf("describe %s takes no name: it describes the sidecar whose admin address --server is", d.kind)
			}
			var name string
			if d.named {
				name = args[1]
			}
			v, describe, err := d.describe(cmd.Context(), g, name, url.Values{"limit": {strconv.Itoa(limit)}})
			if err != nil {
				return err
			}
			switch g.output {
			case "json":
				return printJSON(g.out, v)
			case "yaml":
				return printYAML(g.out, v)
			}
			return describe()
		},
	}
	addOutput(cmd, g, "text", "json", "yaml")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many topics (or names) a proxy, broker set, cluster or TopicRoute lists; 0 for all")
	return cmd
}

// describer is one kind describe knows: it reads the object and returns it as data (-o json|yaml) and its text.
type describer struct {
	kind     string
	named    bool
	describe func(ctx context.Context, g *globals, name string, query url.Values) (any, func() error, error)
}

// describers are the kinds describe knows, by every name they go by.
var describers = map[string]describer{}

func addDescriber(d describer, names ...string) {
	for _, n := range names {
		describers[n] = d
	}
}

func init() {
	addDescriber(describer{kind: "sidecar", describe: describeSidecarAt}, "sidecar", "sidecars")
	addDescriber(describer{kind: "topic", named: true, describe: describeTopicAt}, "topic", "topics", "t")
	addDescriber(describer{kind: "proxy", named: true, describe: describeProxyAt}, "proxy", "proxies", "node", "nodes")
	addDescriber(describer{kind: "brokerset", named: true, describe: describeBrokerSetAt("brokersets")}, "brokerset", "brokersets", "bs")
	addDescriber(describer{kind: "cluster", named: true, describe: describeBrokerSetAt("clusters")}, "cluster", "clusters")
	addDescriber(describer{kind: "topicroute", named: true, describe: describeTopicRouteAt}, "topicroute", "topicroutes", "tr")
}

func describeSidecarAt(ctx context.Context, g *globals, _ string, _ url.Values) (any, func() error, error) {
	s, err := g.sidecarStatus(ctx)
	if err != nil {
		return nil, nil, err
	}
	return s, func() error { return describeSidecar(g.out, s) }, nil
}

func describeTopicAt(ctx context.Context, g *globals, name string, _ url.Values) (any, func() error, error) {
	if err := routing.ValidTopic(name); err != nil {
		return nil, nil, err
	}
	return describeFrom(ctx, g, "/api/v1/topics/"+url.PathEscape(name), nil, func(c *server.TopicChain) error {
		return describeTopic(g.out, c, time.Now())
	})
}

// describeFrom reads one object of the admin API, and returns it as data and its text: a name not found on a
// server that has not synced yet says what it waits for.
func describeFrom[T any](ctx context.Context, g *globals, path string, query url.Values, text func(*T) error) (any, func() error, error) {
	var v T
	if err := g.getJSON(ctx, path, query, &v); err != nil {
		return nil, nil, g.unsyncedHint(ctx, err)
	}
	return v, func() error { return text(&v) }, nil
}

// describeTopic writes the chain as kubectl describe does: fields, then sections.
func describeTopic(w io.Writer, c *server.TopicChain, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	p("Name:\t%s", c.Topic.Name)
	p("Cluster:\t%s", c.Topic.Cluster)
	p("Broker set:\t%s", c.Topic.BrokerSet)
	// The topic's version is the model version at which it last changed: one of the versions the Events rows cover.
	p("Model version:\t%d (of the topic's last change)", c.Topic.Version)
	policy := "<none>"
	if c.Policy != nil {
		policy = c.Policy.TopicRoute
		if len(c.Policy.Overridden) > 0 {
			policy += " (overrides " + strings.Join(c.Policy.Overridden, ", ") + ")"
		}
	}
	p("TopicRoute:\t%s", policy)
	if c.Policy != nil && c.Policy.Pop != nil { // Go sidecars turn these groups' pulls into pops
		p("Pop mode:\t%s (invisible time %s)", strings.Join(c.Policy.Pop.ConsumerGroups, ", "), c.Policy.Pop.InvisibleTime)
	}
	p("NameServer route:")
	p("  SOURCE\tGROUP\tBROKER CLUSTER\tPERM\tREAD\tWRITE\tBROKERS")
	for _, s := range c.Sources {
		for _, m := range s.Members {
			p("  %s\t%s\t%s\t%s\t%d\t%d\t%s", s.Source, m.BrokerName, m.Cluster, remoting.PermString(m.Perm), m.ReadQueueNums, m.WriteQueueNums, addrs(m))
		}
	}
	p("Served route:")
	p("  GROUP\tBROKER CLUSTER\tPERM\tREAD\tWRITE\tSEND SHARE\tACKS")
	var total int64
	sends := func(m routing.Member) bool { return m.Weight > 0 && m.Writable() && m.Master() != "" } // in the send cluster
	for _, m := range c.Members {
		if sends(m) {
			total += int64(m.Weight)
		}
	}
	for _, m := range c.Members {
		weight := "-" // no weights: sends spread over the writable groups' queues
		if sends(m) && total > 0 {
			weight = strconv.FormatFloat(100*float64(m.Weight)/float64(total), 'f', 1, 64) + "%"
		}
		acks := "no"
		if m.AcksReadable() {
			acks = "yes"
		}
		p("  %s\t%s\t%s\t%d\t%d\t%s\t%s", m.BrokerName, m.Cluster, remoting.PermString(m.Perm), m.ReadQueueNums, m.WriteQueueNums, weight, acks)
	}
	if row, err := summarizeRoute(c.Topic.Name, c.Route); err == nil {
		p("Rules:")
		p("  CODES\tHEADERS\tCLUSTER\tSUBSET")
		for _, r := range row.Rules {
			cluster := "the cluster"
			if r.Cluster != c.Topic.Cluster {
				cluster = r.Cluster
			}
			p("  %s\t%s\t%s\t%s", r.Codes, orNone(r.Headers), cluster, orNone(r.Subset))
		}
	}
	p("Endpoints (%s):", c.Topic.Cluster)
	printEndpoints(p, c.Endpoints)
	if len(c.SendEndpoints) > 0 {
		p("Send endpoints (%s-send, weighted):", c.Topic.Cluster)
		printEndpoints(p, c.SendEndpoints)
	}
	p("Proxies:")
	if len(c.Proxies) == 0 {
		p("  <none>")
	} else {
		p("  NODE\tSTREAM\tHOLDS IT BY\tAGE")
		for _, s := range c.Proxies {
			by := "subscription"
			for _, t := range s.Scope {
				if t == c.Topic.Name {
					by = "scope"
				}
			}
			p("  %s\t%d\t%s\t%s", s.Node, s.ID, by, age(s.Opened, now))
		}
	}
	p("Events:")
	if len(c.Changes) == 0 {
		p("  <none in the change log>")
	} else {
		// Each row is one change of the model: the writes made while the change log was busy coalesce into one,
		// which covers the model versions FROM-TO.
		p("  AGE\tMODEL VERSION\tCHANGE")
		covered := false
		for _, ch := range c.Changes {
			what := fmt.Sprintf("%d topics changed", ch.Topics)
			if ch.Topics == 1 {
				what = "route changed"
			}
			version := strconv.FormatUint(ch.Version, 10)
			if ch.From != 0 {
				version = fmt.Sprintf("%d-%d", ch.From, ch.Version)
			}
			if ch.Covers(c.Topic.Version) {
				covered = true
			}
			p("  %s\t%s\t%s", age(ch.Time, now), version, what)
		}
		if !covered {
			p("  (its change at model version %d is not in the change log: it left it, or is not recorded yet)", c.Topic.Version)
		}
	}
	return tw.Flush()
}

// printEndpoints writes a cluster's endpoints, one line each.
func printEndpoints(p func(string, ...any), raw json.RawMessage) {
	p("  GROUP\tID\tADDRESS\tPERM\tREAD\tWRITE\tWEIGHT\tSUBSETS")
	var cla endpointv3.ClusterLoadAssignment
	if err := protojson.Unmarshal(raw, &cla); err != nil {
		p("  <%v>", err)
		return
	}
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			f := lb.GetMetadata().GetFilterMetadata()[translate.FilterNamespace].GetFields()
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			var subsets []string
			for k, v := range lb.GetMetadata().GetFilterMetadata()[translate.LBNamespace].GetFields() {
				if k != translate.SubsetBrokerName && v.GetBoolValue() {
					subsets = append(subsets, k)
				}
			}
			slices.Sort(subsets)
			weight := "-"
			if w := lb.GetLoadBalancingWeight().GetValue(); w > 0 {
				weight = strconv.Itoa(int(w))
			}
			p("  %s\t%d\t%s:%d\t%s\t%d\t%d\t%s\t%s", f[translate.KeyBrokerName].GetStringValue(), int64(f[translate.KeyBrokerID].GetNumberValue()),
				sa.GetAddress(), sa.GetPortValue(), remoting.PermString(int32(f[translate.KeyPerm].GetNumberValue())),
				int(f[translate.KeyReadQueueNum].GetNumberValue()), int(f[translate.KeyWriteQueueNum].GetNumberValue()), weight,
				orNone(strings.Join(subsets, ",")))
		}
	}
}

func addrs(m routing.Member) string {
	var out []string
	for _, a := range m.Addrs {
		out = append(out, fmt.Sprintf("%d=%s", a.ID, a.Addr))
	}
	return strings.Join(out, ",")
}
