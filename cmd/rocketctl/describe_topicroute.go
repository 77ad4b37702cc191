package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rocketpilot/rocketpilot/xds/server"
)

// describeTopicRouteAt describes a TopicRoute as the model holds it (from Kubernetes or --config files): NAME is
// NAMESPACE/NAME, or a name in -n's namespace ("default" without -n, the file source's namespace too).
func describeTopicRouteAt(ctx context.Context, g *globals, name string, query url.Values) (any, func() error, error) {
	ns, n, ok := strings.Cut(name, "/")
	if !ok {
		ns, n = g.kube.namespace, name
		if ns == "" {
			ns = "default"
		}
	}
	if ns == "" || n == "" || strings.Contains(n, "/") {
		return nil, nil, fmt.Errorf("invalid TopicRoute name %q: want NAME or NAMESPACE/NAME", name)
	}
	return describeFrom(ctx, g, "/api/v1/policies/"+url.PathEscape(ns)+"/"+url.PathEscape(n), query, func(d *server.PolicyDetail) error {
		return describeTopicRoute(g, d)
	})
}

// describeTopicRoute writes a TopicRoute: its match and rules (each backend resolved or not), its pop rule, the
// topics it governs and those it matches but lost to an older TopicRoute.
func describeTopicRoute(g *globals, d *server.PolicyDetail) error {
	tw := tabwriter.NewWriter(g.out, 0, 8, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	p("Name:\t%s", d.Name)
	if !d.Created.IsZero() {
		p("Created:\t%s", d.Created.UTC().Format(time.RFC3339))
	}
	var match []string
	for _, m := range []struct{ how, what string }{
		{"exact", strings.Join(d.Match.Exact, ", ")}, {"prefix", strings.Join(d.Match.Prefix, ", ")}, {"regex", d.Match.Regex},
	} {
		if m.what != "" {
			match = append(match, m.how+" "+m.what)
		}
	}
	p("Topics match:\t%s", orNone(strings.Join(match, "; ")))
	p("Ordered:\t%s", yesNo(d.Ordered))
	pop := "<none>"
	if d.Pop != nil {
		pop = fmt.Sprintf("%s (invisible time %s)", strings.Join(d.Pop.ConsumerGroups, ", "), d.Pop.InvisibleTime)
	}
	p("Pop mode:\t%s", pop)
	p("Unknown backends:\t%s", orNone(strings.Join(d.UnknownBackends, ", ")))
	p("Governs:\t%s", counted(d.Governs, "topic"))
	lost := counted(d.Lost, "topic")
	if len(d.OverriddenBy) > 0 {
		lost += " to " + strings.Join(d.OverriddenBy, ", ") + " (older, or first by name)"
	}
	p("Lost:\t%s", lost)
	p("Rules:")
	p("  RULE\tBACKEND\tWEIGHT\tRESOLVED")
	rules := 0
	for _, rule := range []struct {
		name     string
		backends []server.PolicyBackend
	}{{"routeQuery", d.RouteQuery}, {"send", d.Send}, {"consume", d.Consume}, {"ack", d.Ack}} {
		for _, b := range rule.backends {
			backend := "brokerCluster " + b.BrokerCluster
			if b.BrokerCluster == "" {
				backend = "brokerNames " + strings.Join(b.BrokerNames, ",")
			}
			weight := "-"
			if b.Weight != nil {
				weight = strconv.Itoa(int(*b.Weight))
			}
			p("  %s\t%s\t%s\t%s", rule.name, backend, weight, yesNo(b.Resolved))
			rules++
		}
	}
	for _, n := range d.Drain {
		p("  drain\tbrokerNames %s\t-\t%s", n, yesNo(!slices.Contains(d.UnknownBackends, "broker "+n)))
		rules++
	}
	if rules == 0 {
		p("  <none>")
	}
	p("Governed topics:")
	listed(p, d.Topics, d.Governs)
	if len(d.LostTopics) > 0 {
		p("Lost topics:")
		p("  TOPIC\tFOLLOWS")
		for _, l := range d.LostTopics {
			p("  %s\t%s", l.Topic, l.To)
		}
		if d.Lost > len(d.LostTopics) {
			p("  … %d more (--limit 0 lists all)", d.Lost-len(d.LostTopics))
		}
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
