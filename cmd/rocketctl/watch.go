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
	var last, lastErr string
	first := true
	for {
		var buf, errBuf bytes.Buffer
		g.out, g.errOut = &buf, &errBuf
		err := run()
		g.out, g.errOut = out, errOut
		if said := errBuf.String(); said != lastErr { // "No resources found." once, not at every look
			errOut.Write(errBuf.Bytes())
			lastErr = said
		}
		switch {
		case err != nil && first:
			return err
		case err != nil:
			fmt.Fprintln(g.errOut, "error:", err) // a failed look is reported; the watch goes on
		case first:
			out.Write(buf.Bytes())
			last = buf.String()
		default:
			out.Write([]byte(changedRows(last, buf.String(), tabular(g.output), header)))
			last = buf.String()
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

// changedRows is what a table printed now has that it did not before: its rows that are new or different (by
// their first column), and a line "KEY (deleted)" for each row gone; a header (the first line, when there is one)
// is never repeated. Output that is not a table (JSON, YAML, a JSONPath) is printed whole when it changed.
func changedRows(before, now string, table, header bool) string {
	if before == now {
		return ""
	}
	if !table {
		return now
	}
	rows := func(s string) (keys []string, byKey map[string]string) {
		byKey = map[string]string{}
		lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
		for i, l := range lines {
			if (i == 0 && header) || strings.TrimSpace(l) == "" {
				continue
			}
			k := strings.Fields(l)[0]
			if _, dup := byKey[k]; !dup {
				keys = append(keys, k)
			}
			byKey[k] = l
		}
		return keys, byKey
	}
	oldKeys, old := rows(before)
	newKeys, cur := rows(now)
	var b strings.Builder
	for _, k := range newKeys {
		if old[k] != cur[k] {
			b.WriteString(cur[k] + "\n")
		}
	}
	for _, k := range oldKeys {
		if _, ok := cur[k]; !ok {
			b.WriteString(k + " (deleted)\n")
		}
	}
	return b.String()
}
