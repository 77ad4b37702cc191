package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"
)

// table is rows under upper-case headers, aligned like kubectl's: columns padded to their widest cell and
// separated by three spaces.
type table struct {
	headers []string
	rows    [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print(w io.Writer) error {
	if len(t.rows) == 0 {
		_, err := fmt.Fprintln(w, "No resources found.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.headers, "\t"))
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// printJSON writes v as indented JSON: stable for scripts (struct fields in order, map keys sorted).
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printYAML writes v as YAML, through its JSON form (the field names of -o json).
func printYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(b)
	if err != nil {
		return err
	}
	_, err = w.Write(y)
	return err
}

// printData prints items as -o json, yaml or name ask (kind/name lines, repeated names once); done is false for
// the table formats, which the caller prints.
func printData[T any](g *globals, items []T, kind string, name func(T) string) (done bool, err error) {
	if items == nil {
		items = []T{} // an empty list, not null
	}
	switch g.output {
	case "json":
		return true, printJSON(g.out, items)
	case "yaml":
		return true, printYAML(g.out, items)
	case "name":
		var names []string
		for _, it := range items {
			names = append(names, name(it))
		}
		return true, printNames(g.out, kind, slices.Compact(names))
	}
	return false, nil
}

// printNames writes kind/name lines, as kubectl -o name.
func printNames(w io.Writer, kind string, names []string) error {
	for _, n := range names {
		if _, err := fmt.Fprintf(w, "%s/%s\n", kind, n); err != nil {
			return err
		}
	}
	return nil
}

// age renders a duration as kubectl does: 45s, 12m, 3h, 2d.
func age(since time.Time, now time.Time) string {
	if since.IsZero() {
		return "<unknown>"
	}
	d := now.Sub(since)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
