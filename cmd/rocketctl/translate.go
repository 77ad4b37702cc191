package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
)

// namesrvDump is what dump-namesrv writes and x translate reads: one NameServer's broker table and every topic's
// route, as its 106, 206 and 105 answers gave them.
type namesrvDump struct {
	NameServer string                             `json:"nameServer"`
	TakenAt    time.Time                          `json:"takenAt"`
	Brokers    *remoting.ClusterInfo              `json:"brokers"`
	Topics     map[string]remoting.TopicRouteData `json:"topics"`
}

func newDumpNamesrvCommand(g *globals) *cobra.Command {
	var addr string
	var concurrency int
	cmd := &cobra.Command{
		Use:   "dump-namesrv --namesrv ADDR > FILE",
		Short: "Write a NameServer's broker table and every topic's route as JSON, for x translate",
		Long: `dump-namesrv asks a NameServer, with the read-only requests rocketpilot itself uses, for its broker table
(106), its topic list (206, or 224 per cluster when 206 is disabled) and every topic's route (105), and writes
them as one JSON document.`,
		Example: `  rocketctl dump-namesrv --namesrv 127.0.0.1:9876 > namesrv.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				return fmt.Errorf("give --namesrv host:port")
			}
			d, err := dumpNameServer(cmd.Context(), addr, concurrency, g.timeout, func(total int) *progress {
				return newProgress(g.errOut, stderrIsTerminal, "dump-namesrv "+addr, "routes", total)
			})
			if err != nil {
				return err
			}
			return printJSON(g.out, d)
		},
	}
	cmd.Flags().StringVar(&addr, "namesrv", "", "the NameServer, host:port")
	cmd.Flags().IntVar(&concurrency, "concurrency", 16, "route queries in flight")
	return cmd
}

// dumpNameServer asks a NameServer for its broker table, its topics and every topic's route. bar, when given, is
// called with the number of topics once they are listed, and the progress it returns counts the routes asked.
func dumpNameServer(ctx context.Context, addr string, concurrency int, timeout time.Duration, bar ...func(total int) *progress) (*namesrvDump, error) {
	if timeout <= 0 {
		timeout = time.Hour // --request-timeout 0: no bound of ours
	}
	c := client.New(addr, client.Options{RequestTimeout: timeout})
	defer c.Close()
	info, err := c.GetBrokerClusterInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("broker table of %s: %w", addr, err)
	}
	topics, err := c.GetAllTopicList(ctx)
	if err != nil { // listing disabled: per cluster
		topics = nil
		for cluster := range info.ClusterAddrTable {
			more, cerr := c.GetTopicsByCluster(ctx, cluster)
			if cerr != nil {
				return nil, fmt.Errorf("topic list of %s: %w (and per cluster: %w)", addr, err, cerr)
			}
			topics = append(topics, more...)
		}
	}
	slices.Sort(topics)
	topics = slices.Compact(topics)
	d := &namesrvDump{NameServer: addr, TakenAt: time.Now().UTC().Truncate(time.Second), Brokers: info,
		Topics: make(map[string]remoting.TopicRouteData, len(topics))}
	var p *progress
	if len(bar) > 0 && bar[0] != nil {
		p = bar[0](len(topics))
	}
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, max(concurrency, 1))
	var wg sync.WaitGroup
	for _, t := range topics {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			route, _, err := c.GetRouteInfo(ctx, t)
			p.add(1)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				d.Topics[t] = *route
			case errors.Is(err, client.ErrTopicNotExist):
				// listed, then gone: not in the dump
			case firstErr == nil:
				firstErr = fmt.Errorf("route of %q from %s: %w", t, addr, err)
			}
		})
	}
	wg.Wait()
	p.finish()
	return d, firstErr
}

func newExperimentalCommand(g *globals) *cobra.Command {
	x := &cobra.Command{Use: "x", Short: "Experimental commands"}
	x.AddCommand(newTranslateCommand(g))
	return x
}

func newTranslateCommand(g *globals) *cobra.Command {
	var dumpFile, configDir, nodeID, nodeNamespace, nodeLabels string
	var topics, files []string
	cmd := &cobra.Command{
		Use:   "translate --namesrv-dump FILE [-f FILE|DIR]...",
		Short: "Offline dry run: the xDS resources rocketpilot would serve for a NameServer dump and custom resources",
		Long: `translate builds rocketpilot's routing model from a NameServer dump (dump-namesrv) and the custom resources
of a directory (as serve --config reads them: TopicRoutes and TopicBindings apply, NameServerSources are
validated only), then renders, with the server's own cache, what a node would be served: the routes of every
topic (or of --topics), the clusters and endpoints they use, and the node's listener and ECDS route table (its
scope from the TopicBindings that select --node). No server is needed.`,
		Example: `  rocketctl dump-namesrv --namesrv 127.0.0.1:9876 > namesrv.json
  rocketctl x translate --namesrv-dump namesrv.json -f examples/ --node orders-1 -o yaml
  rocketctl x translate --namesrv-dump namesrv.json -f topicroute.yaml --topics TopicTest`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dumpFile == "" {
				return fmt.Errorf("give --namesrv-dump FILE (rocketctl dump-namesrv writes one)")
			}
			if configDir != "" {
				files = append(files, configDir)
			}
			dir, origin, cleanup, err := gatherConfig(files)
			if err != nil {
				return err
			}
			defer cleanup()
			out, err := translateOffline(cmd.Context(), dumpFile, dir, origin, nodeOf(nodeID, nodeNamespace, nodeLabels), topics)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(g.out, out)
			}
			return printYAML(g.out, out)
		},
	}
	cmd.Flags().StringVar(&dumpFile, "namesrv-dump", "", "a NameServer dump written by dump-namesrv")
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "custom resources (YAML): a file, or a directory as serve --config reads; repeatable")
	cmd.Flags().StringVar(&configDir, "config", "", "a directory of custom resources (YAML), as serve --config reads (the same as -f DIR)")
	cmd.Flags().StringVar(&nodeID, "node", "rocketctl-translate", "the xDS node id to render for")
	cmd.Flags().StringVar(&nodeNamespace, "node-namespace", "", "the node's pod namespace (NAMESPACE node metadata)")
	cmd.Flags().StringVar(&nodeLabels, "node-labels", "", "the node's pod labels, k=v,k=v (LABELS node metadata)")
	cmd.Flags().StringSliceVar(&topics, "topics", nil, "the topics whose routes the node subscribes to (every topic of the dump when empty)")
	addOutput(cmd, g, "yaml", "json")
	return cmd
}

// nodeOf builds the node a translation renders for, with the metadata bindings select by.
func nodeOf(id, namespace, labels string) *corev3.Node {
	n := &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{}}}
	if namespace != "" {
		n.Metadata.Fields[cache.MetadataNamespaceKey] = structpb.NewStringValue(namespace)
	}
	if labels != "" {
		l := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for _, kv := range strings.Split(labels, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				l.Fields[strings.TrimSpace(k)] = structpb.NewStringValue(strings.TrimSpace(v))
			}
		}
		n.Metadata.Fields[cache.MetadataLabelsKey] = structpb.NewStructValue(l)
	}
	return n
}

// translateOffline renders what a node would be served for a dump and a directory of custom resources.
func translateOffline(ctx context.Context, dumpFile, configDir string, origin map[string]string, node *corev3.Node, topics []string) (map[string][]cache.DumpedResource, error) {
	table := routing.NewTable()
	d, err := loadDump(table, dumpFile)
	if err != nil {
		return nil, err
	}
	if configDir != "" {
		sources := controllers.NewSources(table, watcher.Options{}, nil)
		defer sources.Close()
		fs, err := controllers.NewFileSource(configDir, table, sources, controllers.NewPolicies(table), slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, err
		}
		fs.Offline = true
		if err := fs.Load(ctx); err != nil {
			return nil, err
		}
		var rejected []string // every one, as the server reports them, not only the first
		for _, r := range fs.Status() {
			if !r.Accepted {
				file := r.File
				if o, ok := origin[file]; ok { // a copy's name: the path the user gave
					file = o
				}
				rejected = append(rejected, fmt.Sprintf("%s: %s %s: %s", file, r.Kind, r.Name, r.Error))
			}
		}
		if len(rejected) > 0 {
			return nil, fmt.Errorf("%d custom resources rejected:\n  %s", len(rejected), strings.Join(rejected, "\n  "))
		}
	}
	if len(topics) == 0 {
		for name := range d.Topics {
			topics = append(topics, name)
		}
	}
	for _, t := range topics {
		if _, ok := d.Topics[t]; !ok {
			return nil, fmt.Errorf("topic %q is not in the dump %s", t, dumpFile)
		}
	}
	c, err := cache.New(table, cache.Options{})
	if err != nil {
		return nil, err
	}
	return c.Preview(node, topics), nil
}

// gatherConfig makes one directory of the custom resources -f names, as serve --config reads one: a single
// directory is used as it is; files, or several paths, are copied into a temporary directory (a directory's own
// YAML files, not its subdirectories, as serve --config reads). origin maps each copy's name to the path it came
// from. It returns "" when there is nothing; a file named that is not YAML is an error (it would be ignored).
func gatherConfig(paths []string) (dir string, origin map[string]string, cleanup func(), err error) {
	cleanup = func() {}
	if len(paths) == 0 {
		return "", nil, cleanup, nil
	}
	if len(paths) == 1 {
		if st, err := os.Stat(paths[0]); err == nil && st.IsDir() {
			return paths[0], nil, cleanup, nil
		}
	}
	tmp, err := os.MkdirTemp("", "rocketctl-translate")
	if err != nil {
		return "", nil, cleanup, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	origin = map[string]string{}
	copyFile := func(path string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// A prefix keeps files of the same name from different directories apart.
		name := fmt.Sprintf("%03d-%s", len(origin)+1, filepath.Base(path))
		origin[name] = path
		return os.WriteFile(filepath.Join(tmp, name), b, 0o600)
	}
	isYAML := func(name string) bool { ext := filepath.Ext(name); return ext == ".yaml" || ext == ".yml" }
	fail := func(p string, err error) (string, map[string]string, func(), error) {
		cleanup()
		return "", nil, func() {}, fmt.Errorf("-f %s: %w", p, err)
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return fail(p, err)
		}
		if !st.IsDir() {
			if !isYAML(p) {
				return fail(p, errors.New("not a .yaml or .yml file: serve --config reads only those"))
			}
			if err := copyFile(p); err != nil {
				return fail(p, err)
			}
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return fail(p, err)
		}
		for _, e := range entries {
			if !e.IsDir() && isYAML(e.Name()) {
				if err := copyFile(filepath.Join(p, e.Name())); err != nil {
					return fail(p, err)
				}
			}
		}
	}
	return tmp, origin, cleanup, nil
}
