// Package controlplane assembles rocketpilot in one place: the sources (the command line's NameServers, the
// NameServerSources, TopicRoutes and TopicBindings of the Kubernetes API or of a config directory) → the routing
// table → the serving half (server.Stack: the xDS cache and go-control-plane's gRPC server) → the admin API and
// the metrics beside it. serve, the benchmarks and the soak test all build it here.
//
// Its life: New opens every listener (a port clash fails at once) and builds the parts; Start starts the sources,
// the cache and the admin API; Sync waits for the sources' first sync; Serve serves xDS once the cache holds what
// the sync learned (a restarted control plane never serves an empty world); Drain fails readiness while streams
// are still served; Stop ends everything in order and waits. Run is that whole life, for serve.
package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/internal/tlsreload"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/peer"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// Config is what the control plane is built from. Zero values take the defaults in parentheses.
type Config struct {
	// Stack is the serving half: table, cache, gRPC server and xDS listener. With TLS set, its Server.Creds are
	// set from it.
	Stack server.StackConfig
	// Sources are what feed the table.
	Sources SourcesConfig
	// Admin is the admin API and the metrics endpoint.
	Admin AdminConfig
	// TLS, when set, secures every listener (xDS with mutual TLS when it has a client CA; the admin and metrics
	// listeners verify a client certificate when one is given). It is reloaded every TLSReload (10s).
	TLS       *tlsreload.Reloader
	TLSReload time.Duration
	// Peer shares the NameServers' polling among replicas: this replica may follow another, or serve those that
	// follow it (package peer).
	Peer PeerConfig
	// ShutdownDelay is how long Run keeps serving with readiness failing after its context ends (none).
	ShutdownDelay time.Duration
	// Logger (none).
	Logger *slog.Logger
}

// PeerConfig shares the NameServers' polling among replicas (package peer). A replica with Leader set is a
// follower: its sources are parked (no NameServer watcher runs) and its table takes the leader's source routes
// over the leader's peer service, until Lead. A replica serves the peer service with Serve or ByLease, and only
// while it leads.
type PeerConfig struct {
	// Serve: serve the peer service (to followers of a fixed leader: this replica is that leader).
	Serve bool
	// Names, under TLS, are the DNS names one of which a follower's certificate must carry (the replicas' own);
	// empty: any certificate the client CA signed, but a workload's (a SPIFFE ID).
	Names []string
	// Leader returns the leading replica's xDS address ("" while there is none); nil: this replica leads.
	Leader func() string
	// ByLease: with Kubernetes, the replica holding the leader Lease leads, and Leader names the holder; the
	// replica starts as a follower and leads from its election on (until it loses the Lease).
	ByLease bool
	// Dial are the follower's gRPC options (its transport credentials).
	Dial []grpc.DialOption
}

// SourcesConfig are the sources of the routing table.
type SourcesConfig struct {
	// Watch is every NameServer watcher's options; a NameServerSource overrides some of them. A Metrics of its
	// own is made when nil.
	Watch watcher.Options
	// NameServers, when any, are watched as the source controllers.FlagSource, with Watch.Mode and Watch.Topics.
	// The first sync waits for them without a bound: they are what the control plane was started to serve.
	NameServers []string
	// ConfigDir, when set, is a directory of NameServerSources, TopicRoutes and TopicBindings in YAML, read
	// again every ConfigPoll (2s).
	ConfigDir  string
	ConfigPoll time.Duration
	// Kubernetes, when set, runs the controllers of those custom resources.
	Kubernetes Kubernetes
	// SyncTimeout bounds the wait for the custom resources' sources in the first sync (2m).
	SyncTimeout time.Duration
}

// Kubernetes runs the custom-resource controllers (a controller manager, with leader election) into the
// sources and policies opts names.
type Kubernetes interface {
	// Start starts the controllers and returns once their caches have synced, with the reader the first sync is
	// checked against and the namespace they watch ("" for all). They run in wg until ctx ends.
	Start(ctx context.Context, wg *sync.WaitGroup, opts controllers.Options) (reader ctrlclient.Reader, namespace string, err error)
}

// ControlPlane is rocketpilot assembled.
type ControlPlane struct {
	cfg      Config
	log      *slog.Logger
	stack    *server.Stack
	sources  *controllers.Sources
	policies *controllers.Policies
	files    *controllers.FileSource // nil without a config directory
	nsStats  *watcher.Metrics
	reconc   *controllers.Metrics
	http     *httpListeners
	peer     *peer.Server
	peerStop context.CancelFunc

	followMu   sync.Mutex
	follower   *peer.Follower // while following
	followStop context.CancelFunc
	followDone chan struct{}
	roles      chan struct{} // signalled by Lead and Follow, for a first sync that waits on one role

	ctx      context.Context // set by Start
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	draining atomic.Bool
	stop     sync.Once
}

// New builds the control plane and opens its listeners. Nothing runs until Start.
func New(cfg Config) (*ControlPlane, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.TLS != nil {
		cfg.Stack.Server.Creds = credentials.NewTLS(cfg.TLS.ServerConfig(tls.RequireAndVerifyClientCert, "h2"))
	}
	if cfg.Sources.Watch.Metrics == nil {
		cfg.Sources.Watch.Metrics = watcher.NewMetrics()
	}
	if cfg.Stack.Table == nil {
		cfg.Stack.Table = routing.NewTable()
	}
	peerCtx, peerStop := context.WithCancel(context.Background())
	peerServer := peer.NewServer(peerCtx, cfg.Stack.Table, cfg.Peer.Names, log.With("component", "peer"))
	if cfg.Peer.Serve || cfg.Peer.ByLease {
		cfg.Stack.Server.Services = append(slices.Clone(cfg.Stack.Server.Services), peerServer.Register)
	}
	peerServer.SetServing(cfg.Peer.Leader == nil)
	stack, err := server.NewStack(cfg.Stack)
	if err != nil {
		peerStop()
		return nil, err
	}
	cp := &ControlPlane{cfg: cfg, log: log, stack: stack, nsStats: cfg.Sources.Watch.Metrics, reconc: controllers.NewMetrics(),
		peer: peerServer, peerStop: peerStop, roles: make(chan struct{}, 1)}
	table := stack.Table()
	cp.sources = controllers.NewSources(table, cfg.Sources.Watch, log.With("component", "sources"))
	if cfg.Peer.Leader != nil {
		cp.sources.Standby()
	}
	cp.policies = controllers.NewPolicies(table)
	if dir := cfg.Sources.ConfigDir; dir != "" {
		if cp.files, err = controllers.NewFileSource(dir, table, cp.sources, cp.policies, log.With("component", "config")); err != nil {
			stack.Stop()
			return nil, err
		}
	}
	if cp.http, err = listenHTTP(cfg.Admin, cfg.TLS); err != nil {
		stack.Stop()
		return nil, err
	}
	return cp, nil
}

// Table is the routing model the sources feed.
func (cp *ControlPlane) Table() *routing.Table { return cp.stack.Table() }

// Cache is the xDS cache.
func (cp *ControlPlane) Cache() *cache.Cache { return cp.stack.Cache() }

// Sources is the supervisor of the NameServer watchers.
func (cp *ControlPlane) Sources() *controllers.Sources { return cp.sources }

// Addr is the xDS listener's address.
func (cp *ControlPlane) Addr() string { return cp.stack.Addr() }

// AdminAddr is the admin listener's address ("" without one).
func (cp *ControlPlane) AdminAddr() string { return addrOf(cp.http.admin) }

// CertificatesAddr is the workload CA's address ("" when it is not served).
func (cp *ControlPlane) CertificatesAddr() string { return addrOf(cp.http.certificates) }

// MetricsAddr is the metrics listener's address ("" when metrics are served on the admin address).
func (cp *ControlPlane) MetricsAddr() string { return addrOf(cp.http.metrics) }

// Start starts everything but the controllers and xDS: the TLS reloads, the cache following the table, the
// command line's NameServers, the config directory (read once before Start returns: a directory that cannot be
// read is an error) and the admin and metrics endpoints, whose /healthz answers from now on.
func (cp *ControlPlane) Start(ctx context.Context) error {
	cp.ctx, cp.cancel = context.WithCancel(ctx)
	ctx = cp.ctx
	if cp.cfg.TLS != nil {
		every := cp.cfg.TLSReload
		if every <= 0 {
			every = 10 * time.Second
		}
		cp.wg.Go(func() { cp.cfg.TLS.Run(ctx, every) })
	}
	// The change log and the cache follow the table from the start, so that the first sync is in the log; what
	// the cache serves is gated by Serve, not what it knows.
	cp.stack.Start(ctx)
	if cp.cfg.Peer.Serve || cp.cfg.Peer.ByLease { // no follower can subscribe otherwise: nothing to keep current
		cp.wg.Go(func() { cp.peer.Run(ctx) })
	}
	if cp.cfg.Peer.Leader != nil {
		cp.startFollowing(cp.cfg.Peer.Leader)
	}
	src := cp.cfg.Sources
	if len(src.NameServers) > 0 {
		spec := controllers.SourceSpec{Addrs: src.NameServers, Mode: src.Watch.Mode, Topics: src.Watch.Topics}
		if err := cp.sources.Set(controllers.FlagSource, spec); err != nil {
			return err
		}
	}
	if cp.files != nil {
		if err := cp.files.Load(ctx); err != nil {
			return err
		}
		poll := src.ConfigPoll
		if poll <= 0 {
			poll = 2 * time.Second
		}
		cp.wg.Go(func() { cp.files.Run(ctx, poll) })
		cp.log.Info("following the config directory", "dir", src.ConfigDir)
	}
	cp.serveHTTP(ctx)
	return nil
}

// Sync starts the controllers, when configured, and waits for the first sync: the command line's NameServers
// without a bound, then, for at most SyncTimeout, the custom resources and their NameServerSources' watchers
// (what is still pending then is logged, and served later). It returns ctx's error if ctx ends first, or the
// controllers' failure to start.
func (cp *ControlPlane) Sync(ctx context.Context) error {
	var reader ctrlclient.Reader
	var namespace string
	if k := cp.cfg.Sources.Kubernetes; k != nil {
		var err error
		opts := controllers.Options{Table: cp.Table(), Sources: cp.sources,
			Policies: cp.policies, Logger: cp.log.With("component", "controllers"), Metrics: cp.reconc, Rejections: cp.Cache()}
		if cp.cfg.Peer.ByLease && cp.cfg.Peer.Leader != nil {
			opts.Leading = func(leading bool) {
				if !leading {
					cp.Follow(cp.cfg.Peer.Leader)
				} else if err := cp.Lead(); err != nil {
					cp.log.Error("leading: a NameServer source did not start", "err", err)
				}
			}
		}
		reader, namespace, err = k.Start(cp.ctx, &cp.wg, opts)
		if err != nil {
			return err
		}
	}
	// A follower serves what the leader sent: it waits for the leader's first answer as a leader waits for its
	// NameServers, without a bound. Either may change roles meanwhile (elected, or losing the Lease): then it
	// waits for what its new role serves.
	for synced := false; !synced; {
		select {
		case <-cp.roles: // a change before this wait began is taken below
		default:
		}
		var ready <-chan struct{}
		if f := cp.following(); f != nil {
			ready = f.Synced()
		} else if len(cp.cfg.Sources.NameServers) > 0 && !cp.sources.Standing() {
			ready = cp.sources.Synced(controllers.FlagSource)
		} else {
			break
		}
		select {
		case <-ready:
			synced = true
		case <-cp.roles:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	timeout := cp.cfg.Sources.SyncTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	syncCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if reader != nil {
		if pending := controllers.WaitForResources(syncCtx, reader, cp.sources, cp.policies, namespace); len(pending) > 0 {
			cp.log.Warn("serving before these custom resources were reconciled", "resources", pending, "timeout", timeout)
		}
	}
	if err := cp.sources.WaitSynced(syncCtx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		cp.log.Warn("serving before every NameServerSource synced", "timeout", timeout, "sources", cp.sources.Keys())
	}
	return nil
}

// Serve serves xDS once the cache holds what the table knows now; it returns at once (see server.Stack.Serve).
func (cp *ControlPlane) Serve() { cp.stack.Serve() }

// WaitReady waits until xDS is served, the gRPC server fails, or ctx ends.
func (cp *ControlPlane) WaitReady(ctx context.Context) error { return cp.stack.WaitReady(ctx) }

// Ready reports whether xDS is served and the control plane is not draining: what /readyz answers.
func (cp *ControlPlane) Ready() bool { return cp.stack.Serving() && !cp.draining.Load() }

// Drain fails readiness from now on, while streams are still served; it reports whether xDS was being served.
func (cp *ControlPlane) Drain() (wasServing bool) {
	cp.draining.Store(true)
	return cp.stack.Serving()
}

// Stop ends everything Start, Sync and Serve started — the xDS streams (after the stack's grace), the
// controllers (which release the leader lease), the admin endpoints, the watchers — closes the listeners and
// waits. The routes the watchers learned stay in the table.
func (cp *ControlPlane) Stop() {
	cp.stop.Do(func() {
		if cp.cancel != nil {
			cp.cancel()
		}
		cp.stopFollowing()
		cp.peerStop() // first: the gRPC server's graceful stop waits for the followers' streams to end
		cp.stack.Stop()
		cp.wg.Wait()
		cp.sources.Close()
		cp.http.close()
	})
}

// Run is the control plane's whole life, for serve: Start, Sync, Serve, then serving until signalled ends or the
// gRPC server fails. When signalled ends, readiness fails at once; when xDS was being served, streams are still
// answered for ShutdownDelay (so that load balancers take this replica out first), then everything stops: the
// streams close (GOAWAY: clients reconnect to another replica), the controllers stop and release the lease.
func (cp *ControlPlane) Run(signalled context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(signalled))
	var shutdown sync.WaitGroup
	defer cp.Stop()
	defer shutdown.Wait()
	defer cancel() // first: a failure ends the shutdown goroutine too
	shutdown.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-signalled.Done():
		}
		if cp.Drain() && cp.cfg.ShutdownDelay > 0 {
			cp.log.Info("shutting down: readiness off, still serving", "for", cp.cfg.ShutdownDelay)
			select {
			case <-ctx.Done():
			case <-time.After(cp.cfg.ShutdownDelay):
			}
		}
		cp.log.Info("shutting down: closing xDS streams and releasing leadership", "grace", cp.cfg.Stack.Grace)
		cancel()
	})
	if err := cp.Start(ctx); err != nil {
		return err
	}
	if err := cp.Sync(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // a signal during the first sync
		}
		return err
	}
	cp.Serve()
	if err := cp.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("xDS server: %w", err)
	}
	logModel(cp.log, cp.Table())
	cp.wg.Go(func() { logChanges(cp.ctx, cp.log, cp.Table()) })
	tlsOn := cp.cfg.TLS != nil
	cp.log.Info("serving xDS", "addr", cp.Addr(), "tls", tlsOn, "mutualTLS", tlsOn && cp.cfg.TLS.MutualTLS())
	select {
	case <-ctx.Done():
		cp.log.Info("stopped serving")
		return nil
	case err := <-cp.stack.Err():
		return fmt.Errorf("xDS server: %w", err)
	}
}

// startFollowing parks the sources and follows the leader leader names, into the table.
func (cp *ControlPlane) startFollowing(leader func() string) {
	cp.followMu.Lock()
	defer cp.followMu.Unlock()
	if cp.follower != nil {
		return
	}
	cp.sources.Standby()
	f := peer.NewFollower(cp.Table(), peer.FollowerOptions{Leader: leader, Dial: cp.cfg.Peer.Dial,
		All: cp.cfg.Sources.Watch.Mode != watcher.ModeInUse, Logger: cp.log.With("component", "follower")})
	ctx, cancel := context.WithCancel(cp.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	cp.follower, cp.followStop, cp.followDone = f, cancel, done
}

// stopFollowing ends the follower, if any, and waits for it: the table keeps what it received.
func (cp *ControlPlane) stopFollowing() {
	cp.followMu.Lock()
	defer cp.followMu.Unlock()
	if cp.follower == nil {
		return
	}
	cp.followStop()
	<-cp.followDone
	cp.follower = nil
}

// following is the follower while this replica follows, else nil.
func (cp *ControlPlane) following() *peer.Follower {
	cp.followMu.Lock()
	defer cp.followMu.Unlock()
	return cp.follower
}

// Lead makes a follower the leader: it stops following (keeping what the leader sent) and starts its NameServer
// watchers, whose routes replace the leader's as each syncs. A leader's Lead does nothing.
func (cp *ControlPlane) Lead() error {
	if cp.following() == nil {
		return nil
	}
	cp.stopFollowing()
	cp.log.Info("leading: polling the NameServers")
	err := cp.sources.Activate()
	cp.peer.SetServing(true)
	cp.roleChanged()
	return err
}

// Follow makes this replica a follower of the leader leader names: it stops serving followers of its own (they
// look for the leader again), its watchers stop (their routes stay) and the leader's answers keep the table
// current. A follower's Follow does nothing.
func (cp *ControlPlane) Follow(leader func() string) {
	if cp.following() != nil {
		return
	}
	cp.peer.SetServing(false)
	cp.startFollowing(leader)
	cp.log.Info("following: another replica polls the NameServers")
	cp.roleChanged()
}

func (cp *ControlPlane) roleChanged() {
	select {
	case cp.roles <- struct{}{}:
	default:
	}
}

// Follower reports the follower's status; ok is false while this replica leads.
func (cp *ControlPlane) Follower() (st peer.FollowerStatus, ok bool) {
	if f := cp.following(); f != nil {
		return f.Status(), true
	}
	return peer.FollowerStatus{}, false
}

// statuses is every source's watcher status, as the admin API and the metrics show them.
func (cp *ControlPlane) statuses() []watcher.Status { return cp.sources.Statuses() }

// collectors are the control plane's own metrics.
func (cp *ControlPlane) collectors() []prometheus.Collector {
	cs := []prometheus.Collector{cp.Cache(), cp.nsStats, watcher.StatusCollector(cp.statuses), cp.reconc,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rocketpilot_peer_followers",
			Help: "Replicas following this one (streams on its peer service): it polls the NameServers for them."},
			func() float64 { return float64(cp.peer.Followers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rocketpilot_peer_following",
			Help: "1 while this replica follows another (it polls no NameServer), 0 while it polls them itself."},
			func() float64 {
				if _, ok := cp.Follower(); ok {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rocketpilot_peer_leader_connected",
			Help: "1 while this replica follows another and is connected to it; 0 otherwise (a follower that is not serves the last routes the leader sent)."},
			func() float64 {
				if st, ok := cp.Follower(); ok && st.Connected {
					return 1
				}
				return 0
			})}
	if s := cp.cfg.Stack.Server.Stats; s != nil {
		cs = append(cs, s)
	}
	if a := cp.cfg.Stack.Server.Admission; a != nil {
		cs = append(cs, a)
	}
	if id := cp.cfg.Stack.Server.Identity; id != nil {
		cs = append(cs, id)
	}
	if a := cp.cfg.Admin.Certificates; a != nil {
		cs = append(cs, a)
	}
	if cp.files != nil {
		cs = append(cs, controllers.FileStatusCollector(cp.files))
	}
	return cs
}

// admin is the admin API over the control plane.
func (cp *ControlPlane) admin() *server.Admin {
	a := cp.stack.Admin()
	a.Version, a.Ready, a.Sources = cp.cfg.Admin.Version, cp.Ready, func() any { return cp.statuses() }
	a.XDSAddress = cp.Addr()
	a.Waiting = func() []string {
		if cp.draining.Load() {
			return []string{server.Draining}
		}
		return cp.sources.Waiting()
	}
	if cp.files != nil {
		a.Resources = func() any { return cp.files.Status() }
	}
	return a
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}
