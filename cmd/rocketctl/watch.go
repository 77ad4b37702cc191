package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Watching (-w/--watch) for get and proxy-status: the command runs again every --watch-interval and prints what
// changed since its last run, kubectl's way: the first run whole, then each row that is new or different (a
// table's rows by their first column; other outputs whole when they change), and a row that went away with
// "(deleted)" after its key. It ends without an error when the context does (Ctrl-C).

// addWatch gives the commands named -w/--watch and --watch-interval.
func addWatch(root *cobra.Command, g *globals, names ...string) {
	for _, name := range names {
		cmd, _, err := root.Find([]string{name})
		if err != nil || cmd == root {
			continue
		}
		var watch bool
		var interval time.Duration
		cmd.Flags().BoolVarP(&watch, "watch", "w", false, "after the first listing, print what changes, until interrupted")
		cmd.Flags().DurationVar(&interval, "watch-interval", time.Second, "with --watch, how often to look again")
		run := cmd.RunE
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if !watch {
				return run(c, args)
			}
			if interval <= 0 {
				return usageError{fmt.Errorf("--watch-interval %v: want a positive duration", interval)}
			}
			header := true // tables start with one unless --no-headers
			if f := c.Flags().Lookup("no-headers"); f != nil && f.Value.String() == "true" {
				header = false
			}
			return watchRuns(c.Context(), g, interval, header, func() error { return run(c, args) })
		}
	}
}

// watchRuns runs once, prints all, then runs every interval and prints what changed, until ctx ends.
func watchRuns(ctx context.Context, g *globals, interval time.Duration, header bool, run func() error) error {
	out, errOut := g.out, g.errOut
	defer func() { g.out, g.errOut = out, errOut }()
	var last, lastErr, lastFail string
	first := true
	for {
		var buf, errBuf bytes.Buffer
		g.out, g.errOut = &buf, &errBuf
		err := run()
		g.out, g.errOut = out, errOut
		if ctx.Err() != nil { // interrupted, maybe mid-request: the watch is over, not failed
			return nil
		}
		if said := errBuf.String(); said != lastErr { // "No resources found." once, not at every look
			errOut.Write(errBuf.Bytes())
			lastErr = said
		}
		switch {
		case err != nil && first:
			return err
		case err != nil:
			if msg := err.Error(); msg != lastFail { // a failed look is reported once; the watch goes on
				fmt.Fprintln(errOut, "error:", msg)
				lastFail = msg
			}
		case last == "": // the first listing, or the first after an empty one: whole, header included
			out.Write(buf.Bytes())
			last, lastFail = buf.String(), ""
		default:
			out.Write([]byte(changedRows(last, buf.String(), tabular(g.output), header)))
			last, lastFail = buf.String(), ""
		}
		first = false
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// tabular reports whether an output format prints a table: rows a watch can compare one by one.
func tabular(output string) bool {
	return output == "" || output == "table" || output == "wide" || strings.HasPrefix(output, "custom-columns=")
}

// volatile are the columns whose text changes with the clock alone: a watch does not print a row again for them.
var volatile = map[string]bool{"AGE": true, "LAST POLL": true, "LAST SUCCESS": true, "SENT": true, "LAST SYNC": true,
	"TIME": true, "CHANGED AT": true}

// changedRows is what a table printed now has that it did not before: every row whose content (its cells but the
// clock's, AGE and the like) is new, and "KEY (deleted)" for a row's first column that no row has any more; a
// header (the first line, when there is one) is never repeated. Rows are compared as a multiset of contents, not
// by a key: several rows may share their first column (a node's streams, a namespace). Lines after a blank line
// (notes under a table) are compared whole. Output that is not a table (JSON, YAML, a JSONPath) is printed whole
// when it changed.
func changedRows(before, now string, table, header bool) string {
	if before == now {
		return ""
	}
	if !table {
		return now
	}
	type row struct{ line, key, content string }
	parse := func(s string) []row {
		lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
		var starts []int // column starts, from the header
		var masked []bool
		var out []row
		notes := false
		for i, l := range lines {
			if i == 0 && header {
				for _, c := range columnStarts(l) {
					starts = append(starts, c.start)
					masked = append(masked, volatile[c.name])
				}
				continue
			}
			if strings.TrimSpace(l) == "" {
				notes = true
				continue
			}
			r := row{line: l, key: strings.Fields(l)[0], content: l}
			if !notes && len(starts) > 1 {
				var b strings.Builder
				for j, st := range starts {
					if st >= len(l) {
						break
					}
					end := len(l)
					if j+1 < len(starts) && starts[j+1] < end {
						end = starts[j+1]
					}
					if masked[j] {
						b.WriteString("\x00")
					} else {
						b.WriteString(strings.TrimSpace(l[st:end]) + "\x00")
					}
				}
				r.content = b.String()
				if masked[0] { // a row keyed by its time (the change log): its second column names it
					if f := strings.Fields(l); len(f) > 1 {
						r.key = f[1]
					}
				}
			}
			out = append(out, r)
		}
		return out
	}
	old, cur := parse(before), parse(now)
	seen := map[string]int{}
	keys := map[string]bool{}
	for _, r := range old {
		seen[r.content]++
	}
	var b strings.Builder
	for _, r := range cur {
		keys[r.key] = true
		if seen[r.content] > 0 {
			seen[r.content]--
			continue
		}
		b.WriteString(r.line + "\n")
	}
	gone := map[string]bool{}
	for _, r := range old {
		if !keys[r.key] && !gone[r.key] {
			gone[r.key] = true
			b.WriteString(r.key + " (deleted)\n")
		}
	}
	return b.String()
}

// column is a table column as its header names it.
type column struct {
	name  string
	start int
}

// columnStarts reads a header's columns: names separated by two spaces or more (a name may hold one, LAST POLL).
func columnStarts(header string) []column {
	var out []column
	i := 0
	for i < len(header) {
		for i < len(header) && header[i] == ' ' {
			i++
		}
		if i >= len(header) {
			break
		}
		start := i
		for i < len(header) && !(header[i] == ' ' && i+1 < len(header) && header[i+1] == ' ') {
			i++
		}
		out = append(out, column{name: strings.TrimSpace(header[start:i]), start: start})
	}
	return out
}
