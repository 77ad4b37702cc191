package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rocketpilot/rocketpilot/xds/server"
)

// heldNames is how many names of each type describe proxy's text shows (-o json|yaml has the admin API's).
const heldNames = 3

func describeProxyAt(ctx context.Context, g *globals, node string, query url.Values) (any, func() error, error) {
	if node == "" {
		return nil, nil, fmt.Errorf("describe proxy needs a node id, not an empty one")
	}
	return describeFrom(ctx, g, "/api/v1/proxies/"+url.PathEscape(node), query, func(d *server.ProxyDetail) error {
		return describeProxy(g, d, time.Now())
	})
}

// describeProxy writes a node: its metadata and the bindings that select it, its scope, what it holds per type,
// then its sync state per stream and type with the NACKs, as proxy-status NODE shows them.
func describeProxy(g *globals, d *server.ProxyDetail, now time.Time) error {
	tw := tabwriter.NewWriter(g.out, 0, 8, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	p("Node:\t%s", d.Node)
	p("Namespace:\t%s", orNone(d.Namespace))
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(d.Labels)) {
		labels = append(labels, k+"="+d.Labels[k])
	}
	p("Labels:\t%s", orNone(strings.Join(labels, ",")))
	p("Bindings:\t%s", orNone(strings.Join(d.Bindings, ", ")))
	p("Subscribed:\t%s", counted(d.Subscribed, "route"))
	p("Scope:\t%s", counted(d.Scope, "topic"))
	if d.Scope > 0 {
		p("Scope topics:")
		listed(p, d.ScopeTopics, d.Scope)
	}
	p("Holds:")
	p("  TYPE\tCOUNT\tNAMES")
	for _, h := range d.Holds {
		p("  %s\t%d\t%s", shortType(h.TypeURL), h.Count, orNone(more(h.Names[:min(len(h.Names), heldNames)], h.Count)))
	}
	p("Sync state:")
	if err := tw.Flush(); err != nil {
		return err
	}
	return printProxyDetail(&globals{out: &indented{w: g.out, prefix: "  "}}, d.Streams, now)
}

// counted is "N things".
func counted(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// listed writes names, the first total of a list, one a line, and how many it leaves out.
func listed(p func(string, ...any), names []string, total int) {
	if total == 0 {
		p("  <none>")
	}
	for _, n := range names {
		p("  %s", n)
	}
	if total > len(names) {
		p("  … %d more (--limit 0 lists all)", total-len(names))
	}
}

// more joins names, the first total of some list, saying how many it leaves out.
func more(names []string, total int) string {
	s := strings.Join(names, ", ")
	if total > len(names) {
		s += fmt.Sprintf(", … %d more", total-len(names))
	}
	return s
}

// indented writes every line with a prefix: a table printer's output as a section of describe.
type indented struct {
	w      io.Writer
	prefix string
	mid    bool // within a line
}

func (i *indented) Write(b []byte) (int, error) {
	var out bytes.Buffer
	for _, c := range b {
		if !i.mid && c != '\n' {
			out.WriteString(i.prefix)
		}
		out.WriteByte(c)
		i.mid = c != '\n'
	}
	if _, err := i.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}
