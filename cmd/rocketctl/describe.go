package main

import (
	"encoding/json"
	"errors"
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
	cmd := &cobra.Command{
		Use:   "describe (topic NAME | sidecar)",
		Short: "Show a topic's whole chain, or one Go sidecar: its xDS, broker groups, routes and Pop mode counts",
		Long: `describe topic NAME shows a topic's whole chain from rocketpilot's admin API: NameServer route, policy, served
route, cluster, endpoints, proxies, changes. describe sidecar shows one Go sidecar from its own admin listener:
--server is then the sidecar's --admin-address.`,
		Example: `  rocketctl describe topic TopicTest
  rocketctl describe topic TopicTest -o yaml
  rocketctl describe sidecar --server 127.0.0.1:15000`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var v any
			var describe func() error
			switch kind := strings.ToLower(args[0]); {
			case kind == "sidecar" || kind == "sidecars":
				if len(args) != 1 {
					return fmt.Errorf("describe sidecar takes no name: it describes the sidecar whose admin address --server is")
				}
				s, err := g.sidecarStatus(cmd.Context())
				if err != nil {
					return err
				}
				v, describe = s, func() error { return describeSidecar(g.out, s) }
			case kind == "topic" || kind == "topics" || kind == "t":
				if len(args) != 2 {
					return usageError{errors.New("describe topic needs the topic's name")}
				}
				if err := routing.ValidTopic(args[1]); err != nil {
					return err
				}
				var chain server.TopicChain
				if err := g.getJSON(cmd.Context(), "/api/v1/topics/"+url.PathEscape(args[1]), nil, &chain); err != nil {
					return g.unsyncedHint(cmd.Context(), err)
				}
				v, describe = chain, func() error { return describeTopic(g.out, &chain, time.Now()) }
			default:
				return fmt.Errorf("describe knows topics and sidecars only, not %q", args[0])
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
	return cmd
}

// describeTopic writes the chain as kubectl describe does: fields, then sections.
func describeTopic(w io.Writer, c *server.TopicChain, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	p("Name:\t%s", c.Topic.Name)
	p("Cluster:\t%s", c.Topic.Cluster)
	p("Broker set:\t%s", c.Topic.BrokerSet)
	p("Model version:\t%d", c.Topic.Version)
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
		p("  AGE\tMODEL VERSION\tCHANGE")
		for _, ch := range c.Changes {
			what := fmt.Sprintf("%d topics changed", ch.Topics)
			if ch.Topics == 1 {
				what = "route changed"
			}
			p("  %s\t%d\t%s", age(ch.Time, now), ch.Version, what)
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
