package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/remoting"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

type serveOptions struct {
	namesrv        string
	demo           bool
	demoAddr       string
	interval       time.Duration
	brokerInterval time.Duration
	discovery      string
	concurrency    int
	rateLimit      float64
	frameLimit     int
	requestTimeout time.Duration
	topics         []string
	logLevel       string
	logFormat      string
	xdsAddr        string
	adminAddr      string
	window         time.Duration
	listenerPort   uint32
	inlineRoutes   bool
	grace          time.Duration
	removeAfter    time.Duration
	retention      time.Duration
	listTimeout    time.Duration
	compression    string
	configDir      string
	configPoll     time.Duration
	syncTimeout    time.Duration
	kube           kubeOptions
}

func newServeCommand() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Watch NameServers and serve their routes over xDS",
		Long: `serve watches RocketMQ NameServers (--namesrv) or, with --demo, an embedded simulated NameServer
loaded with a demo topic set, keeps the versioned routing model, and serves it over xDS. NameServerSources,
TopicRoutes and TopicBindings come from the Kubernetes API (--kubernetes) or from YAML files (--config DIR).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return o.run(ctx, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.namesrv, "namesrv", "", `NameServer addresses, "host:port;host:port"`)
	f.BoolVar(&o.demo, "demo", false, "start the embedded demo NameServer and watch it")
	f.StringVar(&o.demoAddr, "demo-namesrv-address", "127.0.0.1:9876", "listen address of the embedded demo NameServer")
	f.DurationVar(&o.interval, "poll-interval", 30*time.Second, "how often each topic route and the topic list are polled")
	f.DurationVar(&o.brokerInterval, "broker-poll-interval", 10*time.Second, "how often the broker table is polled; topics of a changed broker are re-queried at once")
	f.StringVar(&o.discovery, "discovery", string(watcher.ModeAllTopics), `topic discovery: "all" (every listed topic) or "in-use" (topics asked for)`)
	f.IntVar(&o.concurrency, "poll-concurrency", 16, "topic route queries in flight")
	f.Float64Var(&o.rateLimit, "poll-rate-limit", 5000, "topic route queries per second at most")
	f.IntVar(&o.frameLimit, "frame-limit", remoting.DefaultMaxFrameSize, "largest NameServer frame accepted, in bytes")
	f.DurationVar(&o.requestTimeout, "request-timeout", 3*time.Second, "timeout of one NameServer request")
	f.DurationVar(&o.removeAfter, "remove-after", 30*time.Second, "how long a NameServer must answer TOPIC_NOT_EXIST before a topic is withdrawn")
	f.DurationVar(&o.listTimeout, "list-timeout", 30*time.Second, "timeout of the topic-list requests (206, 224), slow at scale")
	f.StringSliceVar(&o.topics, "topics", nil, "topics to follow when the NameServer lists none (206 and 224 disabled)")
	f.StringVar(&o.xdsAddr, "xds-address", ":18000", "listen address of the xDS gRPC server (ADS and per-type services, delta and SotW)")
	f.StringVar(&o.adminAddr, "admin-address", "127.0.0.1:19000", "listen address of the admin HTTP API; empty disables it")
	f.StringVar(&o.compression, "xds-compression", "gzip", `compress xDS responses to clients that accept it: "gzip" or "none" (Envoy's own gRPC client accepts none and gets plain responses)`)
	f.DurationVar(&o.window, "coalesce-window", 100*time.Millisecond, "changes within this window are pushed together")
	f.Uint32Var(&o.listenerPort, "envoy-listener-port", 9876, "port of the RocketMQ listener served to Envoy sidecars")
	f.BoolVar(&o.inlineRoutes, "inline-routes", false, "put routes inline in the Envoy listener instead of serving them by ECDS (route changes then drain listeners)")
	f.DurationVar(&o.retention, "cluster-retention", 10*time.Minute, "how long a cluster no route names any more stays served (Envoy applies route changes to new connections only)")
	f.DurationVar(&o.grace, "shutdown-grace", 10*time.Second, "how long open xDS streams may take to close on shutdown")
	f.StringVar(&o.configDir, "config", "", "read NameServerSources, TopicRoutes and TopicBindings from the YAML files of this directory, and follow changes")
	f.DurationVar(&o.configPoll, "config-poll-interval", 2*time.Second, "how often the --config directory is checked for changes")
	f.DurationVar(&o.syncTimeout, "initial-sync-timeout", 2*time.Minute, "how long xDS waits for the custom resources' NameServer sources to sync before serving what is known")
	o.kube.addFlags(f)
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	return cmd
}

func (o *serveOptions) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", o.logFormat)
}

func (o *serveOptions) run(ctx context.Context, logOut io.Writer) error {
	log, err := o.logger(logOut)
	if err != nil {
		return err
	}
	var addrs []string
	for _, a := range strings.Split(o.namesrv, ";") {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 && !o.demo && !o.kube.enabled && o.configDir == "" {
		return errors.New("nothing to watch: give --namesrv, --demo, --kubernetes or --config")
	}
	if o.kube.enabled && o.configDir != "" {
		return errors.New("--kubernetes and --config both define NameServerSources, TopicRoutes and TopicBindings: give one of them")
	}
	if !slices.Contains(server.Compressions, o.compression) {
		return fmt.Errorf("--xds-compression %q: want one of %s", o.compression, strings.Join(server.Compressions, ", "))
	}
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel, below: every goroutine started here has stopped when run returns
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Ports first, so that a clash fails at once rather than after a long initial sync.
	lis, err := net.Listen("tcp", o.xdsAddr)
	if err != nil {
		return fmt.Errorf("xDS listener: %w", err)
	}
	defer lis.Close()
	var alis net.Listener
	if o.adminAddr != "" {
		if alis, err = net.Listen("tcp", o.adminAddr); err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		defer alis.Close()
	}

	if o.demo {
		ns := embedded.New(embedded.Options{Addr: o.demoAddr, Logger: log.With("component", "demo-namesrv")})
		embedded.LoadDemo(ns)
		if err := ns.Start(); err != nil {
			return fmt.Errorf("start the demo NameServer on %s: %w", o.demoAddr, err)
		}
		defer ns.Close()
		log.Info("demo NameServer listening", "addr", ns.Addr(), "topics", ns.TopicCount())
		addrs = append(addrs, ns.Addr())
	}

	table := routing.NewTable()
	changes := &server.ChangeLog{} // from the start, so that the first sync is in it
	wg.Go(func() { changes.Follow(ctx, table) })
	wopts := watcher.Options{
		Interval:       o.interval,
		BrokerInterval: o.brokerInterval,
		Mode:           watcher.Mode(o.discovery),
		Concurrency:    o.concurrency,
		RateLimit:      o.rateLimit,
		RemoveAfter:    o.removeAfter,
		ListTimeout:    o.listTimeout,
		Client:         client.Options{MaxFrameSize: o.frameLimit, RequestTimeout: o.requestTimeout},
	}
	// NameServers named by flags have a watcher of their own; NameServerSources (files, Kubernetes) get theirs
	// from Sources, with the flags' values for what a source does not set.
	var w *watcher.Watcher
	if len(addrs) > 0 {
		fopts := wopts
		fopts.Source, fopts.Addrs, fopts.Topics, fopts.Logger = "namesrv", addrs, o.topics, log.With("component", "watcher")
		if w, err = watcher.New(table, fopts); err != nil {
			return err
		}
	}
	sources := controllers.NewSources(table, wopts, log.With("component", "sources"))
	defer sources.Close()
	policies := controllers.NewPolicies(table)
	// The cache follows the table from the start; what it serves is gated below, not what it knows.
	sub := table.Subscribe()
	defer sub.Close()
	xc, err := cache.New(table, cache.Options{
		Listener:         translate.ListenerOptions{Port: o.listenerPort},
		InlineRoutes:     o.inlineRoutes,
		ClusterRetention: o.retention,
		Logger:           log.With("component", "xds"),
	})
	if err != nil {
		return err
	}
	wg.Go(func() {
		xc.Run(ctx, sub, func(ctx context.Context) {
			select {
			case <-ctx.Done():
			case <-time.After(o.window):
			}
		})
	})
	if w != nil {
		log.Info("watching NameServers", "addrs", addrs, "discovery", o.discovery, "interval", o.interval)
		wg.Go(func() { w.Run(ctx) })
	}
	var files *controllers.FileSource
	if o.configDir != "" {
		if files, err = controllers.NewFileSource(o.configDir, table, sources, policies, log.With("component", "config")); err != nil {
			return err
		}
		if err := files.Load(ctx); err != nil {
			return err
		}
		wg.Go(func() { files.Run(ctx, o.configPoll) })
		log.Info("following the config directory", "dir", o.configDir)
	}
	var mgr interface{ GetAPIReader() ctrlclient.Reader }
	if o.kube.enabled {
		m, err := o.kube.startManager(ctx, log, controllers.Options{Table: table, Sources: sources, Policies: policies,
			Logger: log.With("component", "controllers")})
		if err != nil {
			return err
		}
		mgr = m
	}

	var ready atomic.Bool
	if alis != nil {
		admin := &server.Admin{Table: table, Cache: xc, Version: version, Ready: ready.Load, Changes: changes,
			Sources: func() any {
				out := []watcher.Status{}
				if w != nil {
					out = append(out, w.Status())
				}
				for _, k := range slices.Sorted(slices.Values(sources.Keys())) {
					if st, ok := sources.Status(k); ok {
						out = append(out, st)
					}
				}
				return out
			}}
		if files != nil {
			admin.Resources = func() any { return files.Status() }
		}
		hs := &http.Server{Handler: admin.Handler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Go(func() { hs.Serve(alis) })
		wg.Go(func() {
			<-ctx.Done()
			hs.Close()
		})
		log.Info("serving the admin API", "addr", alis.Addr().String())
	}

	// The first sync: the flags' NameServers, then (for a bounded time) the NameServerSources' watchers.
	if w != nil {
		select {
		case <-w.Synced():
		case <-ctx.Done():
			return nil
		}
	}
	syncCtx, cancelSync := context.WithTimeout(ctx, o.syncTimeout)
	if mgr != nil {
		if pending := controllers.WaitForResources(syncCtx, mgr.GetAPIReader(), sources, policies, o.kube.namespace); len(pending) > 0 {
			log.Warn("serving before these custom resources were reconciled", "resources", pending, "timeout", o.syncTimeout)
		}
	}
	if err := sources.WaitSynced(syncCtx); err != nil && ctx.Err() == nil {
		log.Warn("serving before every NameServerSource synced", "timeout", o.syncTimeout, "sources", sources.Keys())
	}
	cancelSync()
	if ctx.Err() != nil {
		return nil
	}
	logModel(log, table)
	wg.Go(func() { logChanges(ctx, log, table) })

	// xDS streams are served only after the first complete sync: a restarted control plane never serves an empty
	// world. Until then, connections wait in the listener's backlog.
	g := server.GRPC(ctx, xc, server.Options{Compression: o.compression})
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- server.Serve(ctx, g, lis, o.grace) })
	ready.Store(true)
	log.Info("serving xDS", "addr", lis.Addr().String())
	select {
	case <-ctx.Done():
		log.Info("stopping")
		return nil
	case err := <-serveErr:
		return fmt.Errorf("xDS server: %w", err)
	}
}

// logModel logs every topic learned, with the broker groups its route uses.
func logModel(log *slog.Logger, table *routing.Table) {
	snap := table.Snapshot()
	names := make([]string, 0, len(snap.Topics))
	for name := range snap.Topics {
		names = append(names, name)
	}
	slices.Sort(names)
	level := slog.LevelInfo
	if len(names) > 1000 {
		level = slog.LevelDebug // a line per topic is for demos and small deployments
	}
	for _, name := range names {
		t := snap.Topics[name]
		log.Log(context.Background(), level, "topic learned", "topic", name, "brokers", brokerNames(t.BrokerSet), "brokerSet", t.BrokerSet.Hash)
	}
	log.Info("routing model ready", "version", snap.Version, "topics", len(snap.Topics),
		"brokerSets", len(snap.BrokerSets), "brokerGroups", len(snap.Brokers))
}

func brokerNames(set *routing.BrokerSet) string {
	var parts []string
	for _, m := range set.Members {
		parts = append(parts, fmt.Sprintf("%s(%s,%s)", m.BrokerName, m.Cluster, remoting.PermString(m.Perm)))
	}
	return strings.Join(parts, " ")
}

// logChanges logs each coalesced change of the model after the initial sync.
func logChanges(ctx context.Context, log *slog.Logger, table *routing.Table) {
	sub := table.Subscribe()
	defer sub.Close()
	for {
		cs, err := sub.Next(ctx)
		if err != nil {
			return
		}
		for name := range cs.Topics {
			if t := table.Topic(name); t != nil {
				log.Debug("topic changed", "topic", name, "brokers", brokerNames(t.BrokerSet), "version", t.Version)
			} else {
				log.Debug("topic removed", "topic", name)
			}
		}
		topics, sets := table.Stats()
		log.Info("routing model changed", "version", cs.Version, "topicsChanged", len(cs.Topics),
			"brokerSetsChanged", len(cs.BrokerSets), "topics", topics, "brokerSets", sets)
	}
}
