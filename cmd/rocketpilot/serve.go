package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/credentials"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/controlplane"
	"github.com/rocketpilot/rocketpilot/internal/tlsreload"
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
	streamRate     float64
	streamBurst    int
	admissionWait  time.Duration
	maxSubs        int
	nackBackoff    time.Duration
	lifeSpan       time.Duration
	listTimeout    time.Duration
	compression    string
	configDir      string
	configPoll     time.Duration
	syncTimeout    time.Duration
	kube           kubeOptions
	metricsAddr    string
	pprof          bool
	shutdownDelay  time.Duration
	tls            tlsreload.Files
	tlsReload      time.Duration
	flagsFile      string
	operators      []string
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
			if err := applyFlagSources(cmd.Flags(), "flags-file", os.Environ()); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				stop() // the first signal starts the graceful shutdown; a second one ends the process at once
			}()
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
	f.Float64Var(&o.streamRate, "xds-stream-rate", 100, "new xDS streams admitted a second on average (a reconnect storm after a restart is spread out, so that open streams keep being served)")
	f.IntVar(&o.streamBurst, "xds-stream-burst", 200, "new xDS streams admitted at once above --xds-stream-rate")
	f.DurationVar(&o.admissionWait, "xds-admission-wait", 10*time.Second, "how long a new xDS stream may wait for admission before it is refused with RESOURCE_EXHAUSTED (the client retries)")
	f.IntVar(&o.maxSubs, "xds-max-subscriptions", 100_000, "names one xDS stream may subscribe to, per type; a request beyond it ends the stream with RESOURCE_EXHAUSTED")
	f.DurationVar(&o.nackBackoff, "nack-backoff", time.Second, "after a NACK, how long before the next response of that type to that stream; doubles with each NACK in a row, up to 32 times")
	f.DurationVar(&o.lifeSpan, "transient-object-life-span", translate.DefaultTransientObjectLifeSpan, "the RocketMQ filter's transient_object_life_span in every sidecar's config: an ack of Envoy's own Pop (codes 50, 51) must reach the sidecar within it (plus up to one client heartbeat); 1s to 12h")
	f.DurationVar(&o.retention, "cluster-retention", 10*time.Minute, "how long a cluster no route names any more stays served (Envoy applies route changes to new connections only)")
	f.DurationVar(&o.grace, "shutdown-grace", 10*time.Second, "how long open xDS streams may take to close on shutdown")
	f.DurationVar(&o.shutdownDelay, "shutdown-delay", 0, "on SIGTERM, how long to keep serving with /readyz failing before closing the xDS streams (lets load balancers take the replica out first)")
	f.StringVar(&o.metricsAddr, "metrics-address", "", "listen address of the Prometheus /metrics endpoint; empty serves it on the admin address")
	f.BoolVar(&o.pprof, "pprof", false, "serve Go's profiles on the admin address under /debug/pprof/ (to clients with a verified certificate)")
	f.StringVar(&o.tls.Cert, "tls-cert", "", "PEM certificate (chain) of the xDS, admin and metrics listeners; with --tls-key, they serve TLS only")
	f.StringVar(&o.tls.Key, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&o.tls.ClientCA, "tls-client-ca", "", "PEM CAs of client certificates: xDS clients must present one (mutual TLS), and so must admin API clients except for /healthz, /readyz and /metrics")
	f.StringSliceVar(&o.operators, "admin-operators", nil, "names (certificate common name or DNS name) of the clients allowed the admin API's debug and write endpoints; any client verified by --tls-client-ca when empty")
	f.DurationVar(&o.tlsReload, "tls-reload-interval", 10*time.Second, "how often the TLS files are checked for a rotated certificate")
	f.StringVar(&o.flagsFile, "flags-file", "", "a YAML file of flag values (flag name: value); the command line, then ROCKETPILOT_* environment variables, take precedence")
	f.StringVar(&o.configDir, "config", "", "read NameServerSources, TopicRoutes and TopicBindings from the YAML files of this directory, and follow changes")
	f.DurationVar(&o.configPoll, "config-poll-interval", 2*time.Second, "how often the --config directory is checked for changes")
	f.DurationVar(&o.syncTimeout, "initial-sync-timeout", 2*time.Minute, "how long xDS waits for the custom resources' NameServer sources to sync before serving what is known")
	o.kube.addFlags(f)
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	return cmd
}

// logger returns the process's logger and its level, which the admin API can change at run time.
func (o *serveOptions) logger(w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	level := &slog.LevelVar{}
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), level, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), level, nil
	}
	return nil, nil, fmt.Errorf("--log-format %q: want text or json", o.logFormat)
}

func (o *serveOptions) run(signalled context.Context, logOut io.Writer) error {
	log, level, err := o.logger(logOut)
	if err != nil {
		return err
	}
	addrs, err := o.validate()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel, below: every goroutine started here has stopped when run returns
	// ctx outlives the signal by --shutdown-delay once xDS is served: readiness fails first, while streams are
	// still answered, so that load balancers take this replica out before its streams close (see shutdown).
	ctx, cancel := context.WithCancel(context.WithoutCancel(signalled))
	defer cancel()
	var ready atomic.Bool
	wg.Go(func() { o.shutdown(signalled, ctx, cancel, &ready, log) })

	var certs *tlsreload.Reloader
	if o.tls.Cert != "" || o.tls.Key != "" {
		if certs, err = tlsreload.New(o.tls, log.With("component", "tls")); err != nil {
			return err
		}
		wg.Go(func() { certs.Run(ctx, o.tlsReload) })
	}

	// The serving half (table → cache → gRPC server), its port first, so that a clash fails at once rather than
	// after a long initial sync. xDS streams are served only after the first complete sync: a restarted control
	// plane never serves an empty world. Until then, connections wait in the listener's backlog.
	wire := server.NewWireStats()
	admission := server.NewAdmission(o.streamRate, o.streamBurst, o.admissionWait)
	sopts := server.Options{Compression: o.compression, Stats: wire, Admission: admission}
	if certs != nil {
		sopts.Creds = credentials.NewTLS(certs.ServerConfig(tls.RequireAndVerifyClientCert, "h2"))
	}
	cp, err := controlplane.New(controlplane.Config{
		Addr: o.xdsAddr,
		Cache: cache.Options{
			Listener:         translate.ListenerOptions{Port: o.listenerPort},
			InlineRoutes:     o.inlineRoutes,
			ClusterRetention: o.retention,
			MaxSubscriptions: o.maxSubs,
			NackBackoff:      o.nackBackoff,
			Logger:           log.With("component", "xds"),
			// One value for the filter: it is a field of the node's whole config, not of a topic's routes.
			TransientObjectLifeSpan: o.lifeSpan,
		},
		Server:         sopts,
		CoalesceWindow: o.window,
		Grace:          o.grace,
	})
	if err != nil {
		return err
	}
	defer cp.Stop() // after cancel, below
	alis, err := listen(o.adminAddr, "admin", certs)
	if err != nil {
		return err
	}
	if alis != nil {
		defer alis.Close()
	}
	mlis, err := listen(o.metricsAddr, "metrics", certs)
	if err != nil {
		return err
	}
	if mlis != nil {
		defer mlis.Close()
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

	table, xc := cp.Table(), cp.Cache()
	// The change log and the cache follow the table from the start, so that the first sync is in the log; what
	// the cache serves is gated below, not what it knows.
	cp.Start(ctx)
	nsMetrics := watcher.NewMetrics()
	wopts := watcher.Options{
		Interval:       o.interval,
		BrokerInterval: o.brokerInterval,
		Mode:           watcher.Mode(o.discovery),
		Concurrency:    o.concurrency,
		RateLimit:      o.rateLimit,
		RemoveAfter:    o.removeAfter,
		ListTimeout:    o.listTimeout,
		Client:         client.Options{MaxFrameSize: o.frameLimit, RequestTimeout: o.requestTimeout},
		Metrics:        nsMetrics,
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
	statuses := func() []watcher.Status {
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
	}
	policies := controllers.NewPolicies(table)
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
	reconcileMetrics := controllers.NewMetrics()

	metrics := o.metricsHandler(log.With("component", "metrics"), xc, wire, admission, nsMetrics, statuses, reconcileMetrics, files)
	if alis != nil {
		admin := cp.Admin()
		admin.Version, admin.Ready, admin.Sources = version, ready.Load, func() any { return statuses() }
		if files != nil {
			admin.Resources = func() any { return files.Status() }
		}
		mux := http.NewServeMux()
		mux.Handle("/", admin.Handler())
		mux.Handle("/debug/log-level", logLevelHandler(level, log))
		if o.pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		if mlis == nil {
			mux.Handle("GET /metrics", metrics)
		}
		serveHTTP(ctx, &wg, log.With("component", "admin"), alis, server.AdminGuard(mux, certs != nil && certs.MutualTLS(), o.operators))
		log.Info("serving the admin API", "addr", alis.Addr().String(), "tls", certs != nil, "pprof", o.pprof)
	}
	if mlis != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		serveHTTP(ctx, &wg, log.With("component", "metrics"), mlis, mux)
		log.Info("serving metrics", "addr", mlis.Addr().String())
	}

	// The controllers start after the admin API, whose /healthz answers meanwhile: their caches' first sync can
	// take minutes.
	var mgr interface{ GetAPIReader() ctrlclient.Reader }
	if o.kube.enabled {
		m, err := o.kube.startManager(ctx, &wg, log, controllers.Options{Table: table, Sources: sources, Policies: policies,
			Logger: log.With("component", "controllers"), Metrics: reconcileMetrics, Rejections: xc})
		if ctx.Err() != nil {
			return nil // a signal during the caches' first sync
		}
		if err != nil {
			return err
		}
		mgr = m
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
	// What the sync learned must be in the cache before the first stream is served: Serve waits for it.
	cp.Serve()
	if err := cp.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("xDS server: %w", err)
	}
	logModel(log, table)
	wg.Go(func() { logChanges(ctx, log, table) })
	ready.Store(true)
	if signalled.Err() != nil {
		ready.Store(false) // the signal came meanwhile: shutdown may have looked at readiness before it was set
	}
	log.Info("serving xDS", "addr", cp.Addr(), "tls", certs != nil, "mutualTLS", certs != nil && certs.MutualTLS())
	select {
	case <-ctx.Done():
		log.Info("stopped serving")
		return nil
	case err := <-cp.Err():
		return fmt.Errorf("xDS server: %w", err)
	}
}

// shutdown turns a signal into the end of ctx: readiness fails at once; when xDS is being served, streams are
// still answered for --shutdown-delay, then ctx ends, which closes them (GOAWAY, then the streams end so that
// clients reconnect to another replica), stops the controllers and releases the leader lease.
func (o *serveOptions) shutdown(signalled, ctx context.Context, cancel context.CancelFunc, ready *atomic.Bool, log *slog.Logger) {
	select {
	case <-ctx.Done():
		return
	case <-signalled.Done():
	}
	serving := ready.Swap(false)
	if serving && o.shutdownDelay > 0 {
		log.Info("shutting down: readiness off, still serving", "for", o.shutdownDelay)
		select {
		case <-ctx.Done():
		case <-time.After(o.shutdownDelay):
		}
	}
	log.Info("shutting down: closing xDS streams and releasing leadership", "grace", o.grace)
	cancel()
}

// listen opens an HTTP listener (none for an empty address), TLS when certs are configured: once they are, no
// port serves plaintext.
func listen(addr, what string, certs *tlsreload.Reloader) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", what, err)
	}
	if certs != nil {
		// Client certificates are verified when given; AdminGuard decides which paths need one.
		lis = tls.NewListener(lis, certs.ServerConfig(tls.VerifyClientCertIfGiven, "http/1.1"))
	}
	return lis, nil
}

func serveHTTP(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger, lis net.Listener, h http.Handler) {
	// Its errors (failed TLS handshakes: a client without a certificate, a plaintext request) are the clients'.
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	wg.Go(func() { hs.Serve(lis) })
	wg.Go(func() {
		<-ctx.Done()
		hs.Close()
	})
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
	_ = table.Follow(ctx, func(cs routing.ChangeSet) { // ends with ctx
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
	})
}
