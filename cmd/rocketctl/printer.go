package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/yaml"

	"github.com/rocketpilot/rocketpilot/xds/server"
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
	if len(t.headers) > 0 { // none: --no-headers
		fmt.Fprintln(tw, strings.Join(t.headers, "\t"))
	}
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

// printData sorts items by --sort-by, in place (the caller's table shows them in that order), and prints them as -o
// json, yaml, name (kind/name lines, repeated names once), jsonpath or custom-columns ask; done is false for the
// table formats, which the caller prints.
func printData[T any](g *view, items []T, kind string, name func(T) string) (done bool, err error) {
	if items == nil {
		items = []T{} // an empty list, not null
	}
	if err := sortRows(g, items); err != nil {
		return true, err
	}
	switch {
	case g.output == "json":
		return true, printJSON(g.out, items)
	case g.output == "yaml":
		return true, printYAML(g.out, items)
	case g.output == "name":
		var names []string
		for _, it := range items {
			names = append(names, name(it))
		}
		if len(names) == 0 {
			return true, noResources(g.globals)
		}
		return true, printNames(g.out, kind, slices.Compact(names))
	case strings.HasPrefix(g.output, jsonPathOutput):
		return true, printJSONPath(g, items, strings.TrimPrefix(g.output, jsonPathOutput))
	case strings.HasPrefix(g.output, customColumnsOutput):
		return true, printCustomColumns(g, items, strings.TrimPrefix(g.output, customColumnsOutput))
	}
	return false, nil
}

// noResources says on stderr that a list is empty, as kubectl does, and, when the server has not done its first
// sync, what it waits for: the list may be empty only for now.
func noResources(g *globals) error {
	w := g.errOut
	if w == nil {
		w = io.Discard
	}
	if _, err := fmt.Fprintln(w, "No resources found."); err != nil {
		return err
	}
	var v server.VersionInfo
	if g.server != "" && g.getJSON(context.Background(), "/api/v1/version", nil, &v) == nil && len(v.WaitingFor) > 0 {
		_, err := fmt.Fprintf(w, "The server has not done its first sync: it waits for %s\n", strings.Join(v.WaitingFor, "; "))
		return err
	}
	return nil
}

// printNames writes kind/name lines, as kubectl -o name (name lines when kind is empty: names that carry their
// kind).
func printNames(w io.Writer, kind string, names []string) error {
	for _, n := range names {
		if kind != "" {
			n = kind + "/" + n
		}
		if _, err := fmt.Fprintln(w, n); err != nil {
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

// view is how get prints: the global flags, and get's kubectl output options.
type view struct {
	*globals
	sortBy    string // --sort-by: a JSONPath of a row's JSON form (.name or {.name})
	noHeaders bool   // --no-headers: tables without their header line
}

// jsonPathOutput and customColumnsOutput are the -o values that carry their template.
const (
	jsonPathOutput      = "jsonpath="
	customColumnsOutput = "custom-columns="
)

// printTable prints a table as the view asks.
func (g *view) printTable(t *table) error {
	if len(t.rows) == 0 { // as kubectl: on stderr, exit 0
		return noResources(g.globals)
	}
	if g.noHeaders {
		t = &table{headers: nil, rows: t.rows}
	}
	return t.print(g.out)
}

// relaxedJSONPath accepts what kubectl does: {.a.b}, .a.b or a.b.
func relaxedJSONPath(expr string) string {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "{") && strings.HasSuffix(expr, "}") {
		return expr
	}
	return "{." + strings.TrimPrefix(expr, ".") + "}"
}

// parseJSONPath parses a template of -o jsonpath, --sort-by or a custom column; missing keys give nothing.
func parseJSONPath(name, expr string) (*jsonpath.JSONPath, error) {
	jp := jsonpath.New(name).AllowMissingKeys(true)
	if err := jp.Parse(expr); err != nil {
		return nil, fmt.Errorf("%s %q: %w", name, expr, err)
	}
	return jp, nil
}

// jsonForms are items as -o json writes them, decoded to maps and slices: what JSONPath reads.
func jsonForms[T any](items []T) ([]any, error) {
	b, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	var out []any
	return out, json.Unmarshal(b, &out)
}

// sortRows sorts items in place by --sort-by: numbers by value, other values by their text; items without the
// field first. A path no item has is an error, as kubectl's.
func sortRows[T any](g *view, items []T) error {
	if g.sortBy == "" || len(items) == 0 {
		return nil
	}
	jp, err := parseJSONPath("--sort-by", relaxedJSONPath(g.sortBy))
	if err != nil {
		return err
	}
	forms, err := jsonForms(items)
	if err != nil {
		return err
	}
	type keyed struct {
		item T
		num  *float64
		text string
	}
	rows := make([]keyed, len(items))
	found := false
	for i, f := range forms {
		rows[i].item = items[i]
		res, err := jp.FindResults(f)
		if err != nil {
			return fmt.Errorf("--sort-by %q: %w", g.sortBy, err)
		}
		if len(res) == 0 || len(res[0]) == 0 {
			continue
		}
		found = true
		switch v := res[0][0].Interface().(type) {
		case float64:
			rows[i].num = &v
		case string:
			rows[i].text = v
		default:
			b, _ := json.Marshal(v)
			rows[i].text = string(b)
		}
	}
	if !found {
		return fmt.Errorf("--sort-by %q: no item has this field (see -o json)", g.sortBy)
	}
	slices.SortStableFunc(rows, func(a, b keyed) int {
		if a.num != nil && b.num != nil {
			return cmp.Compare(*a.num, *b.num)
		}
		return cmp.Compare(a.text, b.text)
	})
	for i := range rows {
		items[i] = rows[i].item
	}
	return nil
}

// printJSONPath prints -o jsonpath=TEMPLATE over the list as kubectl's: {.items[*].name}.
func printJSONPath[T any](g *view, items []T, template string) error {
	jp, err := parseJSONPath("-o jsonpath", template)
	if err != nil {
		return err
	}
	forms, err := jsonForms(items)
	if err != nil {
		return err
	}
	if forms == nil {
		forms = []any{}
	}
	if err := jp.Execute(g.out, map[string]any{"kind": "List", "items": forms}); err != nil {
		return fmt.Errorf("-o jsonpath: %w", err)
	}
	return nil
}

// printCustomColumns prints -o custom-columns=HEADER:PATH,… as kubectl's: a table, a JSONPath per column over each
// item, several results joined by commas, <none> for none.
func printCustomColumns[T any](g *view, items []T, spec string) error {
	t := &table{}
	var paths []*jsonpath.JSONPath
	for _, col := range strings.Split(spec, ",") {
		header, expr, ok := strings.Cut(col, ":")
		if !ok || header == "" || expr == "" {
			return fmt.Errorf("-o custom-columns: %q: want HEADER:PATH (as NAME:.name), comma-separated", col)
		}
		jp, err := parseJSONPath("-o custom-columns", relaxedJSONPath(expr))
		if err != nil {
			return err
		}
		t.headers = append(t.headers, header)
		paths = append(paths, jp)
	}
	forms, err := jsonForms(items)
	if err != nil {
		return err
	}
	for _, f := range forms {
		var row []string
		for _, jp := range paths {
			res, err := jp.FindResults(f)
			if err != nil {
				return fmt.Errorf("-o custom-columns: %w", err)
			}
			var cells []string
			for _, r := range res {
				for _, v := range r {
					if s, ok := v.Interface().(string); ok {
						cells = append(cells, s)
						continue
					}
					b, _ := json.Marshal(v.Interface())
					cells = append(cells, string(b))
				}
			}
			row = append(row, orNone(strings.Join(cells, ",")))
		}
		t.add(row...)
	}
	return g.printTable(t)
}
