package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rocketpilot/rocketpilot/controlplane"
	"github.com/rocketpilot/rocketpilot/internal/tlsreload"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/simbroker"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

type serveOptions struct {
	namesrv        string
	demo           bool
	demoAddr       string
	demoGroups     int
	demoQueues     int32
	demoCapacity   int
	interval       time.Duration
	brokerInterval time.Duration
	discovery      string
	peerLeader     string
	peerServe      bool
	peerServerName string
	peerAdvertise  string
	xdsBound       atomic.Value // the xDS listener's address, once it is open
	concurrency    int
	rateLimit      float64
	frameLimit     int
	requestTimeout time.Duration
	topics         []string
	logLevel       string
	logFormat      string
	xdsAddr        string
	adminAddr      string
	chartPeriod    time.Duration
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
	identityCheck  string
	strictScope    bool
	ca             caOptions
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
		Long: `serve watches RocketMQ NameServers (--namesrv) or, with --demo, an embedded simulated NameServer and
simulated brokers that register the demo topic set with it (stock RocketMQ clients can produce and consume
against them), keeps the versioned routing model, and serves it over xDS. NameServerSources,
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
	f.IntVar(&o.demoGroups, "demo-broker-groups", 2, "broker groups of the demo's simulated brokers (broker-a has a slave)")
	f.Int32Var(&o.demoQueues, "demo-queues", 0, "queues of every demo topic on each broker group; 0 keeps the demo's own counts (2 to 8)")
	f.IntVar(&o.demoCapacity, "demo-queue-capacity", 100_000, "messages each demo queue keeps; older ones are dropped")
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
	f.StringVar(&o.peerLeader, "peer-leader", "", "xDS address of the replica that alone polls the NameServers: this replica runs no NameServer watcher and takes that replica's routes over its peer service, in the same --discovery mode (docs/architecture.md, \"Replicas and the NameServers\"); empty: this replica polls")
	f.BoolVar(&o.peerServe, "peer-serve", false, "serve this replica's routes to the replicas that name it with --peer-leader (--share-polling serves them while it holds the Lease)")
	f.StringVar(&o.peerAdvertise, "peer-advertise-address", "", "where the other replicas reach this one's peer service (its xDS port) when it holds the Lease under --share-polling ($POD_IP with --xds-address's port when empty)")
	f.StringVar(&o.peerServerName, "peer-server-name", "", "the name the leader's certificate is verified against when following under TLS (the host of its address when empty; under --share-polling the leader is reached at its pod IP, so name the Service); this replica's --tls-cert is its client certificate and --tls-client-ca verifies the leader")
	f.StringVar(&o.xdsAddr, "xds-address", ":18000", "listen address of the xDS gRPC server (ADS and per-type services, delta and SotW)")
	f.StringVar(&o.adminAddr, "admin-address", "127.0.0.1:19000", "listen address of the admin HTTP API and the web dashboard (at /); empty disables it")
	f.DurationVar(&o.chartPeriod, "dashboard-chart-period", 5*time.Second, "the period of one point of the dashboard's charts (pushes, NACKs, changes); they show the last 120")
	f.StringVar(&o.identityCheck, "xds-identity-check", "on", `under mutual TLS (--tls-client-ca), refuse xDS requests whose node id or namespace the client certificate does not name (a spiffe://…/ns/NS/node/ID or …/ns/NS/sa/SA URI, or the node id as a DNS name; docs/operations.md): "on" or "off" (for Envoys whose certificates carry no such name)`)
	f.StringVar(&o.ca.addr, "ca-address", "", "listen address of the workload CA, where sidecars get their client certificates with a service account token (needs --kubernetes, --tls-cert and --ca-cert); empty disables it")
	f.StringVar(&o.ca.cert, "ca-cert", "", "PEM certificate of the CA that signs sidecars' certificates (the chart's CA Secret)")
	f.StringVar(&o.ca.key, "ca-key", "", "PEM key of --ca-cert")
	f.StringVar(&o.ca.trustDomain, "ca-trust-domain", "cluster.local", "trust domain of the SPIFFE ids of sidecars' certificates (spiffe://DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT)")
	f.DurationVar(&o.ca.ttl, "ca-workload-ttl", 24*time.Hour, "lifetime of sidecars' certificates; they renew at two thirds of it")
	f.BoolVar(&o.strictScope, "xds-strict-scope", false, "make every node's TopicBindings an access boundary (as a TopicBinding's spec.strict does for the nodes it selects): a node may subscribe only to the topics its bindings grant; another is answered as not found and never served")
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
		return nil, nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
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

// run is serve's whole life: flags → a validated configuration → the control plane, run until signalled ends.
func (o *serveOptions) run(signalled context.Context, logOut io.Writer) error {
	log, level, err := o.logger(logOut)
	if err != nil {
		return err
	}
	cfg, err := o.config(log, level)
	if err != nil {
		return err
	}
	if o.demo {
		ns := embedded.New(embedded.Options{Addr: o.demoAddr, Logger: log.With("component", "demo-namesrv")})
		if err := ns.Start(); err != nil {
			return fmt.Errorf("start the demo NameServer on %s: %w", o.demoAddr, err)
		}
		defer ns.Close()
		// The order configuration of an ordered demo topic, as an operator would put it in the NameServer's KV.
		ns.SetKV(embedded.NamespaceOrderTopicConfig, simbroker.DemoOrderedTopic, simbroker.DemoOrderConf(o.demoGroups, o.demoQueues))
		brokers, err := simbroker.StartDemo(simbroker.DemoOptions{NameServers: []string{ns.Addr()}, Groups: o.demoGroups,
			Queues: o.demoQueues, QueueCapacity: o.demoCapacity, Logger: log.With("component", "demo-broker")})
		if err != nil {
			return fmt.Errorf("start the demo brokers: %w", err)
		}
		defer brokers.Close() // before the NameServer: they unregister from it (each logged its address)
		log.Info("demo NameServer listening", "addr", ns.Addr(), "topics", ns.TopicCount())
		cfg.Sources.NameServers = append(cfg.Sources.NameServers, ns.Addr())
	}
	cp, err := controlplane.New(cfg)
	if err != nil {
		return err
	}
	o.xdsBound.Store(cp.Addr())
	if n := cfg.Sources.NameServers; len(n) > 0 {
		log.Info("watching NameServers", "addrs", n, "discovery", o.discovery, "interval", o.interval)
	}
	return cp.Run(signalled)
}
