package main

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotPoint places a figure on a plot: its series and its x (streams or topics). A figure with a baseline puts that
// on the plot too, as the series named baseline.
type plotPoint struct {
	plot     plotID
	series   string
	x        float64
	baseline string
}

type plotID int

const (
	plotFanout plotID = iota
	plotHeapTopics
	plotHeapStreams
	plotBytes
)

// plots are the plots drawPlots writes, by id: a file name, a title and the axes' labels.
var plots = map[plotID]struct{ file, title, x, y string }{
	plotFanout:      {"fanout.svg", "One route change until every subscribed stream has it", "subscribed streams", "ms"},
	plotHeapTopics:  {"heap-topics.svg", "Control-plane heap per topic", "topics", "bytes per topic"},
	plotHeapStreams: {"heap-streams.svg", "Control-plane heap per open stream (10 topics each)", "open streams", "KiB per stream"},
	plotBytes:       {"bytes.svg", "Bytes per route change per subscribed stream", "open streams", "bytes (log scale)"},
}

func ifSet(s, suffix string) string {
	if s == "" {
		return ""
	}
	return s + suffix
}

// drawPlots writes the figures placed on plots as SVG files in dir: a line per series over x on a logarithmic
// axis (the runs' sizes go by tens). A plot with fewer than one point is not written.
func drawPlots(dir string, figs []Figure) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	type point struct{ x, y float64 }
	series := map[plotID]map[string][]point{}
	add := func(id plotID, name string, x, y float64) {
		if series[id] == nil {
			series[id] = map[string][]point{}
		}
		series[id][name] = append(series[id][name], point{x, y})
	}
	for _, f := range figs {
		if f.at == nil {
			continue
		}
		add(f.at.plot, f.at.series, f.at.x, f.Value)
		if f.at.baseline != "" && f.Baseline != nil {
			add(f.at.plot, f.at.baseline, f.at.x, *f.Baseline)
		}
	}
	for id, byName := range series {
		spec := plots[id]
		p := plot.New()
		p.Title.Text, p.X.Label.Text, p.Y.Label.Text = spec.title, spec.x, spec.y
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		if id == plotBytes {
			p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		}
		p.Legend.Top = true
		var lines []any
		for _, n := range slices.Sorted(maps.Keys(byName)) {
			pts := byName[n]
			slices.SortFunc(pts, func(a, b point) int { return cmp.Compare(a.x, b.x) })
			xys := make(plotter.XYs, len(pts))
			for i, pt := range pts {
				xys[i].X, xys[i].Y = pt.x, pt.y
			}
			lines = append(lines, n, xys)
		}
		if err := plotutil.AddLinePoints(p, lines...); err != nil {
			return fmt.Errorf("plot %s: %w", spec.file, err)
		}
		if err := p.Save(7*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, spec.file)); err != nil {
			return fmt.Errorf("plot %s: %w", spec.file, err)
		}
	}
	return nil
}
