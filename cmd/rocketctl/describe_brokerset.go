package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// describeBrokerSetAt describes a broker set by its hash (path "brokersets") or by a cluster it renders to
// ("clusters"): the admin API answers both with the same view.
func describeBrokerSetAt(path string) func(context.Context, *globals, string, url.Values) (any, func() error, error) {
	return func(ctx context.Context, g *globals, name string, query url.Values) (any, func() error, error) {
		if name == "" {
			return nil, nil, fmt.Errorf("describe needs a name, not an empty one")
		}
		return describeFrom(ctx, g, "/api/v1/"+path+"/"+url.PathEscape(name), query, func(d *server.BrokerSetDetail) error {
			return describeBrokerSet(g, d)
		})
	}
}

// describeBrokerSet writes a broker set: its members, the clusters it renders to with their endpoints, and the
// topics that use it.
func describeBrokerSet(g *globals, d *server.BrokerSetDetail) error {
	tw := tabwriter.NewWriter(g.out, 0, 8, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	p("Broker set:\t%s", d.Hash)
	var clusters []string
	for _, c := range d.Clusters {
		clusters = append(clusters, c.Name)
	}
	p("Clusters:\t%s", orNone(strings.Join(clusters, ", ")))
	p("Topics:\t%s", counted(d.Topics, "topic"))
	p("Members:")
	p("  GROUP\tBROKER CLUSTER\tPERM\tREAD\tWRITE\tWEIGHT\tBROKERS")
	for _, m := range d.Members {
		weight := "-"
		if m.Weight > 0 {
			weight = strconv.Itoa(int(m.Weight))
		}
		p("  %s\t%s\t%s\t%d\t%d\t%s\t%s", m.BrokerName, m.Cluster, remoting.PermString(m.Perm), m.ReadQueueNums, m.WriteQueueNums, weight, addrs(m))
	}
	for _, c := range d.Clusters {
		p("Endpoints (%s):", c.Name)
		printEndpoints(p, c.Endpoints)
	}
	p("Used by:")
	listed(p, d.Names, d.Topics)
	return tw.Flush()
}
