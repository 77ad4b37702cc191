package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/rocketpilot/rocketpilot/analyze"
	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
)

func newAnalyzeCommand(g *globals) *cobra.Command {
	var dir, dumpFile string
	var dialTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "analyze [-f DIR [--namesrv-dump FILE]]",
		Short: "Report every problem of the routing model and its custom resources, with the field at fault and what to do",
		Long: `analyze reports, at once, every problem it finds: drains that leave topics with no writable broker, TopicRoutes
that lose topics to older ones (a topic follows the oldest matching TopicRoute, then the lowest namespace/name),
send weights that go to groups with no writable master, backends unknown to the NameServers, TopicBindings that
select no connected proxy or name unknown topics, NameServers that do not answer, and documents the file source
rejected. Each has a severity (Error, Warning, Info), the object, the field and what to do.

Without -f it asks the control plane (--server), which analyzes its live model. With -f DIR it reads the custom
resources of a directory as serve --config does, validating each, and tries a TCP connection to every address of
its NameServerSources (--dial-timeout); with --namesrv-dump (dump-namesrv writes one) it also checks the topics and
brokers of that NameServer. It exits 1 when it finds an error, 0 with warnings only.`,
		Example: `  rocketctl analyze
  rocketctl analyze -f examples/
  rocketctl analyze -f examples/ --namesrv-dump namesrv.json -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var problems []analyze.Problem
			var err error
			switch {
			case dir != "":
				problems, err = analyzeOffline(cmd.Context(), dir, dumpFile, dialTimeout)
			case dumpFile != "":
				return errors.New("--namesrv-dump goes with -f DIR")
			default:
				problems = []analyze.Problem{}
				err = g.getJSON(cmd.Context(), "/api/v1/analyze", nil, &problems)
			}
			if err != nil {
				return err
			}
			if err := printProblems(g, problems); err != nil {
				return err
			}
			if n := analyze.Errors(problems); n > 0 {
				return exitError{code: 1, err: fmt.Errorf("found %s (and %s)", analyze.Count(n, "error"), analyze.Count(len(problems)-n, "other problem"))}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "filename", "f", "", "analyze the custom resources of this directory (as serve --config reads them), not the server")
	cmd.Flags().StringVar(&dumpFile, "namesrv-dump", "", "with -f: a NameServer dump (dump-namesrv) for the topics and brokers")
	cmd.Flags().DurationVar(&dialTimeout, "dial-timeout", time.Second, "with -f: how long a NameServerSource's address has to accept a TCP connection")
	addOutput(cmd, g, "table", "wide", "json", "yaml")
	return cmd
}

// printProblems prints problems as -o asks: a table (wide adds what to do), JSON or YAML.
func printProblems(g *globals, problems []analyze.Problem) error {
	switch g.output {
	case "json":
		return printJSON(g.out, problems)
	case "yaml":
		return printYAML(g.out, problems)
	}
	if len(problems) == 0 {
		_, err := fmt.Fprintln(g.out, "No problems found.")
		return err
	}
	t := &table{headers: []string{"SEVERITY", "OBJECT", "FIELD", "MESSAGE"}}
	if g.output == "wide" {
		t.headers = append(t.headers, "FIX")
	}
	for _, p := range problems {
		row := []string{string(p.Severity), p.Object(), orNone(p.Field), p.Message}
		if g.output == "wide" {
			row = append(row, p.Fix)
		}
		t.add(row...)
	}
	return t.print(g.out)
}

// analyzeOffline builds the model serve --config would from dir (and a NameServer dump, when given) and analyzes
// it, with a TCP dial to every address of the accepted NameServerSources.
func analyzeOffline(ctx context.Context, dir, dumpFile string, dialTimeout time.Duration) ([]analyze.Problem, error) {
	table := routing.NewTable()
	if dumpFile != "" {
		if _, err := loadDump(table, dumpFile); err != nil {
			return nil, err
		}
	}
	sources := controllers.NewSources(table, watcher.Options{}, nil)
	defer sources.Close()
	fs, err := controllers.NewFileSource(dir, table, sources, controllers.NewPolicies(table), slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	fs.Offline = true
	if err := fs.Load(ctx); err != nil {
		return nil, err
	}
	var docs []analyze.Document
	accepted := map[string]bool{} // file/kind/namespace/name of the accepted NameServerSources
	for _, st := range fs.Status() {
		docs = append(docs, analyze.Document{File: st.File, Kind: st.Kind, Namespace: st.Namespace, Name: st.Name,
			Accepted: st.Accepted, Error: st.Error})
		if st.Accepted && st.Kind == "NameServerSource" {
			accepted[st.File+"/"+st.Namespace+"/"+st.Name] = true
		}
	}
	problems := analyze.Run(analyze.Input{Table: table, TopicsKnown: dumpFile != "", Documents: docs})
	endpoints, err := sourceEndpoints(dir, accepted)
	if err != nil {
		return nil, err
	}
	problems = append(problems, analyze.Dial(ctx, endpoints, dialTimeout)...)
	analyze.Sort(problems)
	return problems, nil
}

// loadDump applies a dump-namesrv file to a table, as the NameServer it was taken from, and returns the dump.
func loadDump(table *routing.Table, file string) (*namesrvDump, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var d namesrvDump
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: not a NameServer dump: %w", file, err)
	}
	source := "namesrv@" + d.NameServer
	if d.Brokers != nil {
		brokers := make([]routing.Broker, 0, len(d.Brokers.BrokerAddrTable))
		for _, bd := range d.Brokers.BrokerAddrTable {
			brokers = append(brokers, watcher.BrokerOf(bd))
		}
		table.SetBrokers(source, brokers)
	}
	updates := make([]routing.Update, 0, len(d.Topics))
	for name, rd := range d.Topics {
		updates = append(updates, routing.Update{Topic: name, Route: watcher.RouteOf(&rd)})
	}
	table.Apply(source, updates...)
	return &d, nil
}

// sourceEndpoints reads the addresses of the accepted NameServerSources of dir (keys file/namespace/name). The
// file source validated them already: this only finds their spec.addresses again.
func sourceEndpoints(dir string, accepted map[string]bool) ([]analyze.Endpoint, error) {
	if len(accepted) == 0 {
		return nil, nil
	}
	var out []analyze.Endpoint
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				break // the file source reported it
			}
			var nss struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
				Spec struct {
					Addresses []string `json:"addresses"`
				} `json:"spec"`
			}
			if yaml.Unmarshal(doc, &nss) != nil || nss.Kind != "NameServerSource" {
				continue
			}
			ns := nss.Metadata.Namespace
			if ns == "" {
				ns = "default"
			}
			if !accepted[name+"/"+ns+"/"+nss.Metadata.Name] {
				continue
			}
			delete(accepted, name+"/"+ns+"/"+nss.Metadata.Name) // a second definition is not the one used
			for i, a := range nss.Spec.Addresses {
				out = append(out, analyze.Endpoint{Namespace: ns, Name: nss.Metadata.Name, Index: i, Addr: a})
			}
		}
	}
	return out, nil
}
