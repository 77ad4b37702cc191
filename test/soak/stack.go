package soak

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rocketpilot/rocketpilot/controlplane"
	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// coalesceWindow is serve's default --coalesce-window.
const coalesceWindow = 100 * time.Millisecond

// controlPlane is rocketpilot in process, assembled as cmd/rocketpilot's serve assembles it (package
// controlplane: the NameServer's watcher → table → cache, with the coalescing window → gRPC server, with the change
// log), and the metrics.
type controlPlane struct {
	xds      *controlplane.ControlPlane
	table    *routing.Table
	cache    *cache.Cache
	registry *prometheus.Registry
	addr     string
	scrapes  int

	cancel context.CancelFunc // everything
	wg     sync.WaitGroup
}

// startControlPlane syncs from the NameServer and serves xDS on a loopback port. It returns once the first sync
// is in the cache and the server accepts streams.
func startControlPlane(parent context.Context, cfg Config, ns *embedded.NameServer) (*controlPlane, error) {
	wire := server.NewWireStats()
	metrics := watcher.NewMetrics()
	xds, err := controlplane.New(controlplane.Config{
		Stack: server.StackConfig{
			Cache:          cache.Options{ClusterRetention: cfg.ClusterRetention},
			Server:         server.Options{Stats: wire},
			CoalesceWindow: coalesceWindow,
			Grace:          2 * time.Second,
		},
		Sources: controlplane.SourcesConfig{
			NameServers: []string{ns.Addr()},
			Watch: watcher.Options{
				Interval:       cfg.PollInterval,
				BrokerInterval: cfg.PollInterval / 2,
				RemoveAfter:    cfg.RemoveAfter,
				Concurrency:    32,
				RateLimit:      1e6,
				Client: client.Options{DialTimeout: time.Second, RequestTimeout: 2 * time.Second,
					MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
				Metrics: metrics,
			},
		},
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(parent)
	cp := &controlPlane{xds: xds, table: xds.Table(), cache: xds.Cache(), cancel: cancel, registry: prometheus.NewRegistry(),
		addr: xds.Addr()}
	fail := func(err error) (*controlPlane, error) {
		cp.stop()
		return nil, err
	}
	if err := xds.Start(ctx); err != nil {
		return fail(err)
	}
	syncCtx, cancelSync := context.WithTimeout(ctx, 60*time.Second)
	defer cancelSync()
	if err := xds.Sync(syncCtx); err != nil {
		return fail(fmt.Errorf("soak: the watcher did not sync within a minute: %w", err))
	}
	xds.Serve()
	if err := xds.WaitReady(syncCtx); err != nil {
		return fail(fmt.Errorf("soak: the cache did not apply the first sync: %w", err))
	}
	for _, c := range []prometheus.Collector{cp.cache, wire, metrics} {
		if err := cp.registry.Register(c); err != nil {
			return fail(err)
		}
	}
	return cp, nil
}

// stallWatcher stops the watcher: the table keeps the routes it learned and never hears of a change again.
func (cp *controlPlane) stallWatcher() { cp.xds.Sources().Close() }

// scrapeLoop gathers the metrics every few seconds, as Prometheus would: a collector that grows with churn shows
// in the heap.
func (cp *controlPlane) scrapeLoop(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := cp.registry.Gather(); err == nil {
				cp.scrapes++
			}
		}
	}
}

// stop ends everything the control plane runs and waits for it.
func (cp *controlPlane) stop() {
	cp.cancel()
	cp.wg.Wait()
	cp.xds.Stop()
}
