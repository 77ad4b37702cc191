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
	var nacks []string
	for _, s := range streams {
		row := []string{s.Node, fmt.Sprint(s.ID)}
		for _, ty := range statusTypes {
			state := "-"
			for _, ts := range s.Types {
				if ts.TypeURL == ty {
					state = ts.State
					if ts.NackError != "" {
						nacks = append(nacks, fmt.Sprintf("%s stream %d %s: %s", s.Node, s.ID, shortType(ty), ts.NackError))
					}
				}
			}
			row = append(row, state)
		}
		t.add(append(row, age(s.Opened, now))...)
	}
	if err := t.print(g.out); err != nil {
		return err
	}
	if len(nacks) > 0 {
		fmt.Fprintln(g.out, "\nNACKs:")
		for _, n := range nacks {
			fmt.Fprintln(g.out, "  "+n)
		}
	}
	return nil
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
	return t.print(g.out)
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
