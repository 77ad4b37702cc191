// Package controlplane assembles rocketpilot's serving half in one place: the routing table → the xDS cache
// (following the table through a subscription, with the coalescing window) → go-control-plane's gRPC server → the
// admin API, with the change log the admin API shows. serve, the benchmarks, the soak test and the tests' harness
// (controlplanetest) all build it here; the sources that feed the table (the NameServer watcher, the custom
// resources, the files) are started by the caller beside it.
//
// Its life: New opens the xDS listener and builds the table and the cache; Start has the cache follow the table;
// Serve, once the caller's sources have synced, serves xDS as soon as the cache holds everything the table knows
// (a restarted control plane never serves an empty world), and closes Ready; Stop ends everything and waits.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// Config is what the assembly is built from. Zero values take the defaults in parentheses.
type Config struct {
	// Table is the routing model the sources feed (a new, empty one).
	Table *routing.Table
	// Cache configures the xDS cache.
	Cache cache.Options
	// Server configures the gRPC server (TLS, compression, admission, wire statistics).
	Server server.Options
	// Listener is the xDS listener, opened by the caller (one on Addr).
	Listener net.Listener
	// Addr is where the xDS listener is opened when Listener is nil ("127.0.0.1:0").
	Addr string
	// CoalesceWindow: changes of the table within it are pushed together (none: each change at once).
	CoalesceWindow time.Duration
	// Grace is how long open streams may take to close when the control plane stops (at once).
	Grace time.Duration
}

// ControlPlane is the assembled serving half of rocketpilot.
type ControlPlane struct {
	cfg     Config
	table   *routing.Table
	cache   *cache.Cache
	changes *server.ChangeLog
	lis     net.Listener

	ctx     context.Context // set by Start
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
	serving bool
	ready   chan struct{}
	errc    chan error
	stop    sync.Once
}

// New builds the table, the cache and the change log, and opens the xDS listener (so that a port clash fails at
// once, not after a long initial sync). Nothing runs until Start.
func New(cfg Config) (*ControlPlane, error) {
	table := cfg.Table
	if table == nil {
		table = routing.NewTable()
	}
	c, err := cache.New(table, cfg.Cache)
	if err != nil {
		return nil, err
	}
	lis := cfg.Listener
	if lis == nil {
		addr := cfg.Addr
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		if lis, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("xDS listener: %w", err)
		}
	}
	return &ControlPlane{cfg: cfg, table: table, cache: c, changes: &server.ChangeLog{}, lis: lis,
		ready: make(chan struct{}), errc: make(chan error, 1)}, nil
}

// Table is the routing model the sources feed.
func (cp *ControlPlane) Table() *routing.Table { return cp.table }

// Cache is the xDS cache (also the controllers' feed of NACKs: it is a controllers.RejectionFeed).
func (cp *ControlPlane) Cache() *cache.Cache { return cp.cache }

// Changes is the log of the table's changes since Start, which the admin API shows.
func (cp *ControlPlane) Changes() *server.ChangeLog { return cp.changes }

// Addr is the xDS listener's address.
func (cp *ControlPlane) Addr() string { return cp.lis.Addr().String() }

// Start has the change log and the cache follow the table until ctx ends or Stop is called; it returns at once.
// What the cache serves is gated by Serve, not what it knows.
func (cp *ControlPlane) Start(ctx context.Context) {
	if cp.started {
		panic("controlplane: Start called twice")
	}
	cp.started = true
	cp.ctx, cp.cancel = context.WithCancel(ctx)
	ctx = cp.ctx
	cp.wg.Go(func() { cp.changes.Follow(ctx, cp.table) })
	sub := cp.table.Subscribe()
	var wait func(context.Context)
	if window := cp.cfg.CoalesceWindow; window > 0 {
		wait = func(ctx context.Context) {
			t := time.NewTimer(window)
			defer t.Stop()
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}
	cp.wg.Go(func() {
		cp.cache.Run(ctx, sub, wait)
	})
	cp.wg.Go(func() {
		<-ctx.Done()
		sub.Close()
	})
}

// Serve serves xDS on the listener once the cache holds the table's version of now, and until the control plane
// stops; it returns at once. Ready is closed when streams are served; Err reports the server's failure. Call it
// after Start, once the sources have synced.
func (cp *ControlPlane) Serve() {
	if !cp.started || cp.serving {
		panic("controlplane: Serve before Start, or twice")
	}
	cp.serving = true
	ctx := cp.ctx
	version := cp.table.Version()
	cp.wg.Go(func() {
		if err := cp.cache.WaitVersion(ctx, version); err != nil {
			return // stopped first
		}
		g := server.GRPC(ctx, cp.cache, cp.cfg.Server)
		close(cp.ready)
		if err := server.Serve(ctx, g, cp.lis, cp.cfg.Grace); err != nil {
			cp.errc <- err
		}
	})
}

// Ready is closed once xDS is served.
func (cp *ControlPlane) Ready() <-chan struct{} { return cp.ready }

// Err receives the gRPC server's error if it stops serving before the control plane is stopped.
func (cp *ControlPlane) Err() <-chan error { return cp.errc }

// Stop ends everything Start and Serve started, closes the listener and waits.
func (cp *ControlPlane) Stop() {
	cp.stop.Do(func() {
		if cp.cancel != nil {
			cp.cancel()
		}
		cp.wg.Wait()
		cp.lis.Close()
	})
}

// Admin is the admin API over this control plane: its table, cache and change log, ready once xDS is served.
// The caller adds what it knows besides (version, sources, resources) before serving its Handler.
func (cp *ControlPlane) Admin() *server.Admin {
	return &server.Admin{Table: cp.table, Cache: cp.cache, Changes: cp.changes, Ready: func() bool {
		select {
		case <-cp.ready:
			return true
		default:
			return false
		}
	}}
}

// ErrNotReady is returned by WaitReady when ctx ends first.
var ErrNotReady = errors.New("controlplane: not serving yet")

// WaitReady waits until xDS is served, the server fails, or ctx ends.
func (cp *ControlPlane) WaitReady(ctx context.Context) error {
	select {
	case <-cp.ready:
		return nil
	case err := <-cp.errc:
		cp.errc <- err
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
	}
}
