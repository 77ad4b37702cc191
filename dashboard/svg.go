package dashboard

import (
	"fmt"
	"html"
	"html/template"
	"net/url"
	"strings"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// The pictures are SVG drawn here, inline in the pages: they need no script and no asset, and text in them is
// escaped like any other text of a page.

// chart is one sparkline of the recorder's samples.
type chart struct {
	Name string
	// Total and Max are over the samples shown; Per is the period of one sample.
	Total, Max uint64
	Per        time.Duration
	Span       time.Duration
	SVG        template.HTML
}

func (d *Dashboard) charts() []chart {
	samples := d.recorder.snapshot()
	series := []struct {
		name string
		of   func(sample) uint64
	}{
		{"xDS pushes", func(s sample) uint64 { return s.Pushes }},
		{"NACKs", func(s sample) uint64 { return s.NACKs }},
		{"model changes", func(s sample) uint64 { return s.Changes }},
	}
	var out []chart
	for _, s := range series {
		c := chart{Name: s.name, Per: d.cfg.SampleEvery, Span: time.Duration(d.cfg.Samples) * d.cfg.SampleEvery}
		values := make([]uint64, len(samples))
		for i, smp := range samples {
			values[i] = s.of(smp)
			c.Total += values[i]
			c.Max = max(c.Max, values[i])
		}
		label := fmt.Sprintf("%s per %v over the last %v: %d in all, at most %d in one period", s.name, c.Per, c.Span, c.Total, c.Max)
		c.SVG = sparkline(values, d.cfg.Samples, label)
		out = append(out, c)
	}
	return out
}

// sparkline draws values (oldest first) in a box of slots samples, newest at the right edge.
func sparkline(values []uint64, slots int, label string) template.HTML {
	const w, h = 240.0, 40.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" viewBox="0 0 %g %g" preserveAspectRatio="none" role="img" aria-label="%s"><title>%s</title>`,
		w, h, html.EscapeString(label), html.EscapeString(label))
	var top uint64 = 1
	for _, v := range values {
		top = max(top, v)
	}
	step := w / float64(max(slots-1, 1))
	x0 := w - step*float64(len(values)-1)
	var pts []string
	for i, v := range values {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x0+step*float64(i), h-2-(h-4)*float64(v)/float64(top)))
	}
	fmt.Fprintf(&b, `<line class="base" x1="0" y1="%g" x2="%g" y2="%g"/>`, h-1, w, h-1)
	if len(pts) > 0 {
		fmt.Fprintf(&b, `<polygon class="area" points="%.1f,%g %s %g,%g"/>`, x0, h-1, strings.Join(pts, " "), w, h-1)
		fmt.Fprintf(&b, `<polyline class="line" points="%s"/>`, strings.Join(pts, " "))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// box is one node of the chain diagram.
type box struct {
	Text, Sub, Title, Href, Class string
	x, y                          float64
}

// chainDiagram draws a topic's chain the way its traffic flows: the proxies holding it → the requests its routes
// take, by kind → the clusters they go to → the broker groups behind them, with perm and queues.
// total is how many proxies hold it (proxies may be the first of them).
func chainDiagram(chain server.TopicChain, rules []ruleRow, proxies []proxyRow, total int) template.HTML {
	const bw, bh, gap, colGap, top = 210.0, 40.0, 10.0, 70.0, 30.0
	col := func(i int) float64 { return float64(i) * (bw + colGap) }
	var cols [4][]*box
	add := func(c int, b *box) *box {
		b.x, b.y = col(c), top+float64(len(cols[c]))*(bh+gap)
		cols[c] = append(cols[c], b)
		return b
	}
	const maxProxies = 8
	for i, p := range proxies {
		if i == maxProxies {
			add(0, &box{Text: fmt.Sprintf("and %d more", total-maxProxies), Class: "proxy more", Href: "/proxies"})
			break
		}
		add(0, &box{Text: shorten(p.Node, 30), Sub: p.State, Title: "proxy " + p.Node + ": " + p.State,
			Href: "/proxies/" + url.PathEscape(p.Node), Class: "proxy " + strings.ToLower(p.State)})
	}
	brokers := map[string]*box{}
	for i := range chain.Members {
		m := &chain.Members[i]
		perm := remoting.PermString(m.Perm)
		brokers[m.BrokerName] = add(3, &box{Text: m.BrokerName, Class: "broker",
			Sub:   fmt.Sprintf("%s  read %d  write %d", perm, m.ReadQueueNums, m.WriteQueueNums),
			Title: fmt.Sprintf("broker group %s of cluster %s: perm %s, %d read and %d write queues", m.BrokerName, m.Cluster, perm, m.ReadQueueNums, m.WriteQueueNums)})
	}
	type edge struct {
		from, to *box
		label    string
	}
	var edges []edge
	clusters := map[string]*box{}
	linked := map[[2]*box]bool{}
	for _, r := range rules {
		text := r.Kind
		if r.Kind == "other" {
			text = "route queries, other"
		}
		not := ""
		if r.Inverted {
			not = "every code but "
		}
		req := add(1, &box{Text: text, Sub: r.Detail, Class: "req " + r.Kind, Title: fmt.Sprintf("%s: codes %s%s", text, not, r.Codes)})
		c := clusters[r.Cluster]
		if c == nil {
			c = add(2, &box{Text: shorten(r.Cluster, 30), Sub: "cluster", Title: "cluster " + r.Cluster, Class: "cluster"})
			clusters[r.Cluster] = c
		}
		edges = append(edges, edge{req, c, r.Subset})
		for _, name := range r.Brokers {
			if bb := brokers[name]; bb != nil && !linked[[2]*box{c, bb}] {
				linked[[2]*box{c, bb}] = true
				edges = append(edges, edge{c, bb, ""})
			}
		}
	}
	rows := 1
	for _, c := range cols {
		rows = max(rows, len(c))
	}
	w, h := col(3)+bw+2, top+float64(rows)*(bh+gap)
	var b strings.Builder
	// A group, not an image: its boxes that are links must stay links for assistive technology, each named by
	// its title.
	fmt.Fprintf(&b, `<svg class="chain" viewBox="-1 0 %g %g" role="group" aria-labelledby="chain-title"><title id="chain-title">%s</title>`,
		w, h, html.EscapeString("The chain of topic "+chain.Topic.Name+": the proxies holding it, its requests by kind, the clusters they are routed to and the broker groups behind them"))
	for i, head := range []string{"proxies", "requests", "clusters", "broker groups"} {
		fmt.Fprintf(&b, `<text class="head" x="%g" y="16">%s</text>`, col(i), head)
	}
	// Every proxy sends every kind of request: one bus between the two columns rather than proxies × kinds lines.
	if len(cols[0]) > 0 && len(cols[1]) > 0 {
		bus := col(1) - colGap/2
		last := max(cols[0][len(cols[0])-1].y, cols[1][len(cols[1])-1].y) + bh/2
		fmt.Fprintf(&b, `<path class="edge" d="M%g,%g V%g"/>`, bus, top+bh/2, last)
		for _, x := range cols[0] {
			fmt.Fprintf(&b, `<path class="edge" d="M%g,%g H%g"/>`, x.x+bw, x.y+bh/2, bus)
		}
		for _, x := range cols[1] {
			fmt.Fprintf(&b, `<path class="edge" d="M%g,%g H%g"/>`, bus, x.y+bh/2, x.x)
		}
	}
	for _, e := range edges {
		x1, y1, x2, y2 := e.from.x+bw, e.from.y+bh/2, e.to.x, e.to.y+bh/2
		mx := (x1 + x2) / 2
		fmt.Fprintf(&b, `<path class="edge" d="M%g,%g C%g,%g %g,%g %g,%g"/>`, x1, y1, mx, y1, mx, y2, x2, y2)
		if e.label != "" {
			fmt.Fprintf(&b, `<text class="edge-label" x="%g" y="%g">%s</text>`, x1+4, y1-4, html.EscapeString(e.label))
		}
	}
	for _, c := range cols {
		for _, x := range c {
			drawBox(&b, x, bw, bh)
		}
	}
	if len(proxies) == 0 {
		fmt.Fprintf(&b, `<text class="empty" x="0" y="%g">no proxy holds it</text>`, top+bh/2)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func drawBox(b *strings.Builder, x *box, bw, bh float64) {
	title := html.EscapeString(cmpOr(x.Title, x.Text))
	if x.Href != "" { // the title first in the link: its accessible name
		fmt.Fprintf(b, `<a href="%s"><title>%s</title><g class="box %s">`, html.EscapeString(x.Href), title, html.EscapeString(x.Class))
	} else {
		fmt.Fprintf(b, `<g class="box %s" role="img" aria-label="%s"><title>%s</title>`, html.EscapeString(x.Class), title, title)
	}
	fmt.Fprintf(b, `<rect x="%g" y="%g" width="%g" height="%g" rx="6"/>`, x.x, x.y, bw, bh)
	fmt.Fprintf(b, `<text x="%g" y="%g" aria-hidden="true">%s</text>`, x.x+10, x.y+17, html.EscapeString(x.Text))
	if x.Sub != "" {
		fmt.Fprintf(b, `<text class="sub" x="%g" y="%g" aria-hidden="true">%s</text>`, x.x+10, x.y+32, html.EscapeString(shorten(x.Sub, 34)))
	}
	b.WriteString(`</g>`)
	if x.Href != "" {
		b.WriteString(`</a>`)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// shorten cuts s to n runes with an ellipsis in the middle, so that both ends of a long name stay readable.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	half := (n - 1) / 2
	return string(r[:half]) + "…" + string(r[len(r)-(n-1-half):])
}
