package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"k8s.io/client-go/kubernetes"

	"github.com/rocketpilot/rocketpilot/controlplane"
	"github.com/rocketpilot/rocketpilot/internal/tlsreload"
	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/workloadca"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// config turns serve's flags into the control plane's configuration (see validate). It loads the TLS files, so
// that a missing or bad one fails before anything starts.
func (o *serveOptions) config(log *slog.Logger, level *slog.LevelVar) (controlplane.Config, error) {
	addrs, err := o.validate()
	if err != nil {
		return controlplane.Config{}, err
	}
	var certs *tlsreload.Reloader
	if o.tls.Cert != "" || o.tls.Key != "" {
		if certs, err = tlsreload.New(o.tls, log.With("component", "tls")); err != nil {
			return controlplane.Config{}, err
		}
	}
	var identity *server.IdentityCheck
	if o.tls.ClientCA != "" && o.identityCheck == "on" {
		identity = server.NewIdentityCheck(log.With("component", "xds"))
	}
	cfg := controlplane.Config{
		Stack: server.StackConfig{
			Addr: o.xdsAddr,
			Cache: cache.Options{
				Listener:         translate.ListenerOptions{Port: o.listenerPort},
				InlineRoutes:     o.inlineRoutes,
				StrictScope:      o.strictScope,
				ClusterRetention: o.retention,
				MaxSubscriptions: o.maxSubs,
				NackBackoff:      o.nackBackoff,
				Logger:           log.With("component", "xds"),
				// One value for the filter: it is a field of the node's whole config, not of a topic's routes.
				TransientObjectLifeSpan: o.lifeSpan,
			},
			Server: server.Options{Compression: o.compression, Stats: server.NewWireStats(),
				Admission: server.NewAdmission(o.streamRate, o.streamBurst, o.admissionWait), Identity: identity},
			CoalesceWindow: o.window,
			Grace:          o.grace,
		},
		Sources: controlplane.SourcesConfig{
			Watch: watcher.Options{
				Interval:       o.interval,
				BrokerInterval: o.brokerInterval,
				Mode:           watcher.Mode(o.discovery),
				Topics:         o.topics,
				Concurrency:    o.concurrency,
				RateLimit:      o.rateLimit,
				RemoveAfter:    o.removeAfter,
				ListTimeout:    o.listTimeout,
				Client:         client.Options{MaxFrameSize: o.frameLimit, RequestTimeout: o.requestTimeout},
			},
			NameServers: addrs,
			ConfigDir:   o.configDir,
			ConfigPoll:  o.configPoll,
			SyncTimeout: o.syncTimeout,
		},
		Admin: controlplane.AdminConfig{
			Addr:        o.adminAddr,
			MetricsAddr: o.metricsAddr,
			ChartPeriod: o.chartPeriod,
			Operators:   o.operators,
			Handlers:    map[string]http.Handler{"/debug/log-level": logLevelHandler(level, log)},
			Version:     version,
			Collectors: []prometheus.Collector{
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rocketpilot_build_info", Help: "1, labelled with the version and Go version.",
					ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()}}, func() float64 { return 1 }),
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rocketpilot_leader",
					Help: "1 while this replica writes the custom resources' status and events (it holds the Lease, or leader election is off); 0 otherwise and without --kubernetes."},
					o.kube.leading),
			},
		},
		TLS:           certs,
		TLSReload:     o.tlsReload,
		ShutdownDelay: o.shutdownDelay,
		Logger:        log,
	}
	if o.peerServe {
		cfg.Peer.Serve = true
	}
	if o.peerServerName != "" && certs != nil {
		cfg.Peer.Names = []string{o.peerServerName}
	}
	if o.peerLeader != "" || o.kube.sharePolling {
		creds := insecure.NewCredentials()
		if certs != nil {
			// This replica's serving certificate as its client certificate, reloaded with it; the client CA
			// verifies the leader (the chart's one CA signs both).
			creds = credentials.NewTLS(certs.PeerClientConfig(o.peerServerName))
		}
		cfg.Peer.Dial = []grpc.DialOption{grpc.WithTransportCredentials(creds)}
		if leader := o.peerLeader; leader != "" {
			cfg.Peer.Leader = func() string { return leader }
		} else {
			o.kube.advertise = o.peerAdvertiseAddress
			cfg.Peer.ByLease = true
			cfg.Peer.Leader = func() string { return o.kube.leaseHolder(o.peerAdvertiseAddress()) }
		}
	}
	if o.pprof {
		h := cfg.Admin.Handlers
		h["/debug/pprof/"] = http.HandlerFunc(pprof.Index)
		h["/debug/pprof/cmdline"] = http.HandlerFunc(pprof.Cmdline)
		h["/debug/pprof/profile"] = http.HandlerFunc(pprof.Profile)
		h["/debug/pprof/symbol"] = http.HandlerFunc(pprof.Symbol)
		h["/debug/pprof/trace"] = http.HandlerFunc(pprof.Trace)
	}
	if o.kube.enabled {
		// controller-runtime's registry has the Go and process collectors already, and the controllers' metrics
		// (workqueues, API clients, leader election).
		cfg.Sources.Kubernetes = &kubeSource{o: &o.kube, log: log}
		cfg.Admin.Gatherers = prometheus.Gatherers{ctrlmetrics.Registry}
		if o.ca.addr != "" {
			if cfg.Admin.Certificates, err = o.ca.authority(&o.kube, log.With("component", "certificates")); err != nil {
				return controlplane.Config{}, err
			}
			cfg.Admin.CertificatesAddr = o.ca.addr
		}
	} else {
		cfg.Admin.Collectors = append(cfg.Admin.Collectors, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return cfg, nil
}

// peerAdvertiseAddress is where the other replicas reach this one's peer service (its xDS listener):
// --peer-advertise-address, else $POD_IP with --xds-address's port, else the xDS listener's own address.
func (o *serveOptions) peerAdvertiseAddress() string {
	if o.peerAdvertise != "" {
		return o.peerAdvertise
	}
	if ip := os.Getenv("POD_IP"); ip != "" {
		if _, port, err := net.SplitHostPort(o.xdsAddr); err == nil {
			return net.JoinHostPort(ip, port)
		}
	}
	if addr, ok := o.xdsBound.Load().(string); ok {
		return addr
	}
	return o.xdsAddr
}

// caOptions are the workload CA's flags.
type caOptions struct {
	addr, cert, key, trustDomain string
	ttl                          time.Duration
}

// authority loads the CA, which reviews sidecars' tokens with the Kubernetes API.
func (c *caOptions) authority(kube *kubeOptions, log *slog.Logger) (*workloadca.Authority, error) {
	rc, err := kube.restConfig()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return workloadca.Load(c.cert, c.key, workloadca.TokenReviewer{Client: cs}, workloadca.Options{TrustDomain: c.trustDomain, TTL: c.ttl, Logger: log})
}

// validate checks serve's flags, in one place, before anything starts: the combinations, and the values the parts
// they configure would otherwise refuse late or not at all. A bad value is an error naming its flag. It returns
// the NameServer addresses --namesrv names, trimmed and without repeats.
func (o *serveOptions) validate() ([]string, error) {
	var addrs []string
	for _, a := range strings.Split(o.namesrv, ";") {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(addrs, a) {
			if err := checkHostPort(a); err != nil {
				return nil, fmt.Errorf("--namesrv %q: %w", a, err)
			}
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 && !o.demo && !o.kube.enabled && o.configDir == "" {
		return nil, errors.New("nothing to watch: give --namesrv, --demo, --kubernetes or --config")
	}
	if o.demoGroups < 1 || o.demoQueues < 0 || o.demoCapacity < 1 {
		return nil, fmt.Errorf("--demo-broker-groups %d, --demo-queues %d, --demo-queue-capacity %d: want at least one group, "+
			"0 or more queues and a capacity of at least one message", o.demoGroups, o.demoQueues, o.demoCapacity)
	}
	if o.kube.enabled && o.configDir != "" {
		return nil, errors.New("--kubernetes and --config both define NameServerSources, TopicRoutes and TopicBindings: give one of them")
	}
	if m := watcher.Mode(o.discovery); m != watcher.ModeAllTopics && m != watcher.ModeInUse {
		return nil, fmt.Errorf("--discovery %q: want %q or %q", o.discovery, watcher.ModeAllTopics, watcher.ModeInUse)
	}
	if !slices.Contains(server.Compressions, o.compression) {
		return nil, fmt.Errorf("--xds-compression %q: want one of %s", o.compression, strings.Join(server.Compressions, ", "))
	}
	if o.streamRate <= 0 || o.streamBurst < 1 || o.admissionWait < 0 {
		return nil, fmt.Errorf("--xds-stream-rate %g, --xds-stream-burst %d, --xds-admission-wait %v: want a positive rate and burst and a wait of 0 or more", o.streamRate, o.streamBurst, o.admissionWait)
	}
	if o.maxSubs < 1 || o.nackBackoff <= 0 {
		return nil, fmt.Errorf("--xds-max-subscriptions %d, --nack-backoff %v: want positive values", o.maxSubs, o.nackBackoff)
	}
	if err := translate.CheckTransientObjectLifeSpan(o.lifeSpan); err != nil {
		return nil, fmt.Errorf("--transient-object-life-span: %w", err)
	}
	if o.chartPeriod < 100*time.Millisecond {
		return nil, fmt.Errorf("--dashboard-chart-period %v: want 100ms or more", o.chartPeriod)
	}
	if o.tlsReload <= 0 {
		return nil, fmt.Errorf("--tls-reload-interval %v: want a positive duration", o.tlsReload)
	}
	if o.tls.ClientCA != "" && o.tls.Cert == "" {
		return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first")
	}
	if o.ca.addr != "" && (!o.kube.enabled || o.tls.Cert == "" || o.ca.cert == "" || o.ca.key == "") {
		return nil, errors.New("--ca-address needs --kubernetes (tokens are reviewed by the API server), --tls-cert and --tls-key (it is served over TLS), and --ca-cert and --ca-key")
	}
	if o.peerLeader != "" {
		if err := checkHostPort(o.peerLeader); err != nil {
			return nil, fmt.Errorf("--peer-leader: %w", err)
		}
		if o.kube.sharePolling {
			return nil, errors.New("--peer-leader names a fixed leader; with --share-polling the leader is the Lease's holder")
		}
	}
	if o.kube.sharePolling && (!o.kube.enabled || !o.kube.leaderElect) {
		return nil, errors.New("--share-polling needs --kubernetes and --leader-elect: the leader is the Lease's holder")
	}
	if o.kube.sharePolling && o.peerAdvertise == "" && os.Getenv("POD_IP") == "" {
		// The listener's own address names this replica only when its host is one: with ":18000" every replica
		// would advertise the same unspecified address, and none would ever follow another.
		if host, _, err := net.SplitHostPort(o.xdsAddr); err != nil || host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
			return nil, fmt.Errorf("--share-polling: the other replicas cannot reach %q; set $POD_IP or --peer-advertise-address", o.xdsAddr)
		}
	}
	if o.peerAdvertise != "" {
		if err := checkHostPort(o.peerAdvertise); err != nil {
			return nil, fmt.Errorf("--peer-advertise-address: %w", err)
		}
	}
	if o.identityCheck != "on" && o.identityCheck != "off" {
		return nil, fmt.Errorf(`--xds-identity-check %q: want "on" or "off"`, o.identityCheck)
	}
	return addrs, nil
}

// checkHostPort accepts host:port with a port from 1 to 65535, as the NameServerSource schema does: an address a
// watcher could never dial is refused at start, not warned about on every poll.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port (%v)", err)
	}
	if host == "" {
		return errors.New("want host:port: the host is empty")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("want host:port: port %q is not a number from 1 to 65535", port)
	}
	return nil
}
