package main

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

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
	if err := t.print(g.out); err != nil {
		return err
	}
	printProxyNotes(g, streams)
	return nil
}

var configKinds = map[string]string{
	"listeners": translate.ListenerType, "ecds": translate.ExtensionType, "routes": translate.RouteType,
	"clusters": translate.ClusterType, "endpoints": translate.EndpointType,
}

func newProxyConfigCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy-config NODE [listeners|ecds|routes|clusters|endpoints|all]",
		Short: "What a connected node is served, by resource type",
		Example: `  rocketctl proxy-config orders-7f9c ecds
  rocketctl proxy-config orders-7f9c all -o json`,
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"listeners", "ecds", "routes", "clusters", "endpoints", "all"},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := "all"
			if len(args) == 2 {
				kind = args[1]
			}
			typeURL, ok := configKinds[kind]
			if !ok && kind != "all" {
				return fmt.Errorf("unknown config kind %q: want listeners, ecds, routes, clusters, endpoints or all", kind)
			}
			var dump map[string][]cache.DumpedResource
			if err := g.getJSON(cmd.Context(), "/api/v1/config_dump", url.Values{"node": {args[0]}}, &dump); err != nil {
				return err
			}
			var out any = dump
			if kind != "all" {
				resources := dump[typeURL]
				if resources == nil {
					resources = []cache.DumpedResource{}
				}
				out = resources
			}
			if g.output == "json" {
				return printJSON(g.out, out)
			}
			return printYAML(g.out, out)
		},
	}
	addOutput(cmd, g, "yaml", "json")
	return cmd
}
